//! One worker per core: its own ring, listener, accept loop and connections. A connection lives and dies
//! on the worker that accepted it; nothing on the delivery path is shared or locked (the per-process
//! admission limits take one short lock when an upgrade is admitted and when it closes).
//!
//! Each loop iteration: submit and wait → handle completions (accepts, received bytes, finished sends)
//! → hand receive buffers back → fire due timers → flush every connection with queued bytes (one send
//! per socket per iteration, however many frames it carries).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod accept;
mod admit;
mod feed;
mod input;
mod output;
mod upkeep;

pub use admit::table_size;
use input::Inbound;

use crate::admission::{MessageLimit, SharedAcceptRate, SharedPerIp};
use crate::config::{ServeConfig, SlowPolicy};
use crate::fanout::symbols::SymbolMap;
use crate::fanout::{FeedReceiver, FetchRequest};
use crate::http::Gate;
use crate::http::metrics::Metrics;
use crate::protocol::Limits;
use crate::protocol::handshake::HeadLimits;
use crate::runtime::conn::{Conn, Outbox, Phase};
use crate::runtime::stats::WorkerStats;
use crate::runtime::uring::{self, AcceptAddr, BufRing, Ring};
use crate::tls::{TlsReloader, WorkerTls};

/// Accepts kept in flight per worker (each with its own peer-address slot).
const ACCEPTS: usize = 16;
/// Connection slots reserved when a worker starts (~10 MB of address space at 152 B each).
const CONN_TABLE_RESERVE: usize = 65_536;
/// Longest the loop sleeps without a timer due (also the retry delay of a paused accept).
const MAX_SLEEP: Duration = Duration::from_millis(500);

/// What a completion was for; packed into its `user_data` with the connection's slot and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Op {
    Accept = 1,
    Recv,
    Send,
    Cancel,
    Shutdown,
    Close,
    Wake,
}

/// The connection a completion belongs to, unless it is stale (slot reused or freed since).
fn live(conns: &mut [Conn], slot: u32, generation: u16) -> Option<&mut Conn> {
    conns
        .get_mut(slot as usize)
        .filter(|c| c.generation == generation && !matches!(c.phase, Phase::Free))
}

fn user_data(op: Op, generation: u16, slot: u32) -> u64 {
    (op as u64) << 56 | (generation as u64) << 32 | slot as u64
}

fn unpack(user_data: u64) -> (u8, u16, u32) {
    (
        (user_data >> 56) as u8,
        (user_data >> 32) as u16,
        user_data as u32,
    )
}

/// What the server does with client messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
    /// Conformance profile: echo data messages back.
    Echo,
    /// The ticker (subscriptions arrive with the market-data layer).
    Ticker,
}

/// Settings every worker shares (read-only).
#[derive(Debug)]
pub struct WorkerSettings {
    pub app: App,
    pub limits: Limits,
    pub head_limits: HeadLimits,
    pub handshake_timeout_ms: u64,
    pub max_conns: u32,
    pub recv_buffers: u16,
    pub recv_buffer_size: usize,
    pub max_symbols_per_conn: usize,
    /// Most symbols the worker keeps for ticks (`--max-symbols`).
    pub max_symbols: usize,
    /// Where to ask ingest for the stored latest tick of a symbol the worker may have evicted.
    pub fetch: Option<std::sync::mpsc::Sender<FetchRequest>>,
    pub slow_policy: SlowPolicy,
    pub slow_grace_ms: u64,
    pub ping_interval_s: u32,
    pub idle_timeout_s: u32,
    pub drain_window_ms: u64,
    /// Bytes a connection may have waiting to be sent before it is closed as a slow consumer (1013).
    pub max_backlog: usize,
    pub metrics: Arc<Metrics>,
    /// Origin, token and metrics-access checks of the upgrade.
    pub gate: Gate,
    pub max_conns_per_ip: u32,
    /// Open connections per client address, over every worker of the process.
    pub per_ip: SharedPerIp,
    /// Upgrades per second over every worker of the process (`--handshake-rate`), when limited.
    pub accept_rate: Option<SharedAcceptRate>,
    /// The time origin of `accept_rate` (one for all workers).
    pub admission_epoch: Instant,
    pub message_limit: Option<MessageLimit>,
    /// Per-socket coalescing delay, µs (0: flush every loop iteration).
    pub coalesce_us: u64,
}

impl WorkerSettings {
    pub fn from_config(cfg: &ServeConfig, metrics: Arc<Metrics>) -> WorkerSettings {
        WorkerSettings {
            app: if cfg.echo { App::Echo } else { App::Ticker },
            limits: cfg.limits(),
            head_limits: cfg.head_limits(),
            handshake_timeout_ms: cfg.handshake_timeout.as_millis() as u64,
            max_conns: cfg.max_conns_per_worker,
            recv_buffers: cfg.recv_buffers,
            recv_buffer_size: cfg.recv_buffer_size as usize,
            max_symbols_per_conn: cfg.max_symbols_per_conn,
            max_symbols: cfg.max_symbols as usize,
            fetch: None,
            slow_policy: cfg.slow_policy,
            slow_grace_ms: cfg.slow_grace.as_millis() as u64,
            ping_interval_s: cfg.ping_interval.as_secs().max(1) as u32,
            idle_timeout_s: cfg.idle_timeout.as_secs().max(2) as u32,
            drain_window_ms: cfg.drain_window.as_millis() as u64,
            max_backlog: cfg.max_backlog,
            metrics,
            gate: cfg.gate(),
            max_conns_per_ip: cfg.max_conns_per_ip,
            per_ip: SharedPerIp::default(),
            accept_rate: (cfg.handshake_rate > 0)
                .then(|| SharedAcceptRate::new(cfg.handshake_rate, 0)),
            admission_epoch: Instant::now(),
            coalesce_us: cfg.coalesce_delay.as_micros() as u64,
            message_limit: (cfg.max_msgs_per_s > 0 && !cfg.echo)
                .then(|| MessageLimit::per_second(cfg.max_msgs_per_s)),
        }
    }
}

/// State shared between a worker and the threads that steer it.
#[derive(Debug)]
pub struct Control {
    pub stop: AtomicBool,
    draining: AtomicBool,
    /// Set while a wake-up is pending, so a burst of events costs one eventfd write.
    notified: AtomicBool,
    pub wake: OwnedFd,
    pub stats: WorkerStats,
}

impl Control {
    pub fn new() -> std::io::Result<Arc<Control>> {
        Ok(Arc::new(Control {
            stop: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            notified: AtomicBool::new(false),
            wake: uring::eventfd()?,
            stats: WorkerStats::default(),
        }))
    }

    /// Wake the worker (new feed events are queued), unless a wake-up is already pending.
    pub fn notify(&self) {
        if !self.notified.swap(true, Ordering::AcqRel) {
            uring::eventfd_signal(self.wake.as_raw_fd());
        }
    }

    /// Begin a graceful drain (SIGTERM): the worker closes its clients over the drain window, then stops.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        uring::eventfd_signal(self.wake.as_raw_fd());
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Called by the worker when it wakes, before draining its queue.
    fn woken(&self) {
        self.notified.store(false, Ordering::Release);
    }
    /// Ask the worker to stop; it returns from `run` at its next iteration.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        uring::eventfd_signal(self.wake.as_raw_fd());
    }
}

/// Fields are dropped in order: the ring goes first, before the memory it may still point into.
pub struct Worker {
    ring: Ring,
    bufs: BufRing,
    state: State,
}

/// Everything but the I/O objects, so handlers can borrow a receive buffer and the state at once.
struct State {
    id: usize,
    settings: Arc<WorkerSettings>,
    control: Arc<Control>,
    listener: socket2::Socket,
    conns: Vec<Conn>,
    accept_addrs: Box<[AcceptAddr]>,
    accept_armed: [bool; ACCEPTS],
    /// Accepts failed (no free slot, or an error); retried when a connection closes or at this time (ms).
    accept_paused: bool,
    accept_retry_at: u64,
    /// Min-heap of (deadline ms, slot, generation): close deadlines, token expiry and slow-grace ends.
    timers: BinaryHeap<Reverse<(u64, u32, u16)>>,
    /// Slots accepted and possibly still in their HTTP handshake; upkeep closes the ones past their
    /// deadline and forgets the rest (no per-connection timer entry outlives its handshake by long).
    handshaking: Vec<u32>,
    dirty: Vec<u32>,
    /// Bytes produced while handling input (101, pongs, echoes, closes), moved into an outbox after.
    scratch: Vec<u8>,
    wake_buf: Box<u64>,
    start: Instant,
    /// Ticks and feed status from the ingest thread (none in the echo profile).
    feed: Option<FeedReceiver>,
    symbols: SymbolMap,
    /// Rate-limits the log line about ticks refused for a full symbol map.
    symbols_full_log: crate::ingest::throttle::Throttle,
    /// Bytes waiting in this worker's outboxes (published to `stats.backlog_bytes` by `upkeep`).
    backlog: i64,
    /// Next connection slot the heartbeat sweep looks at, and when the next upkeep is due.
    sweep_cursor: usize,
    next_upkeep_ms: u64,
    /// Set once a drain (SIGTERM) has begun.
    drain: Option<upkeep::Drain>,
    /// Direct-descriptor slots (`max_conns` plus the HTTP reserve, capped by RLIMIT_NOFILE), and the most
    /// WebSocket connections this worker holds.
    table_slots: u32,
    ws_cap: u32,
    /// WebSocket connections open (upgraded and not yet closed).
    upgraded: u32,
    /// Authenticated users' connections on this worker (per-user messages).
    users: HashMap<Box<str>, Vec<u32>>,
    /// When the coalesced flush is due (µs since start), while bytes wait.
    flush_at_us: Option<u64>,
    /// TLS (wss://) on this listener, and a scratch buffer for decrypted bytes.
    tls: Option<WorkerTls>,
    tls_plain: Vec<u8>,
    /// Client commands and pings decoded while handling one connection's input, acted on right after.
    inbox: Vec<Inbound>,
}

impl Worker {
    pub fn new(
        id: usize,
        listener: socket2::Socket,
        settings: Arc<WorkerSettings>,
        control: Arc<Control>,
        feed: Option<FeedReceiver>,
        tls: Option<Arc<TlsReloader>>,
    ) -> std::io::Result<Worker> {
        let (files, ws_cap) = table_size(settings.max_conns, uring::nofile_limit());
        let ring = Ring::new(4096, files)?;
        let bufs = BufRing::new(settings.recv_buffers, settings.recv_buffer_size)?;
        let max_symbols = settings.max_symbols;
        let mut worker = Worker {
            ring,
            bufs,
            state: State {
                id,
                settings,
                control,
                listener,
                // Reserved (address space, not memory) up front, so the table does not pause to copy
                // itself while a connect wave grows it; capped so a strict-overcommit host is not asked
                // to commit a million slots at start (past the cap it grows by doubling).
                conns: Vec::with_capacity((files as usize).min(CONN_TABLE_RESERVE)),
                accept_addrs: (0..ACCEPTS).map(|_| AcceptAddr::default()).collect(),
                accept_armed: [false; ACCEPTS],
                accept_paused: false,
                accept_retry_at: 0,
                timers: BinaryHeap::new(),
                handshaking: Vec::new(),
                dirty: Vec::new(),
                scratch: Vec::new(),
                wake_buf: Box::new(0),
                start: Instant::now(),
                feed,
                symbols: SymbolMap::with_limit(max_symbols),
                symbols_full_log: crate::ingest::throttle::Throttle::new(Duration::from_secs(1)),
                backlog: 0,
                table_slots: files,
                ws_cap,
                upgraded: 0,
                users: HashMap::new(),
                tls: tls.map(WorkerTls::new),
                tls_plain: Vec::new(),
                flush_at_us: None,
                sweep_cursor: 0,
                next_upkeep_ms: 0,
                drain: None,
                inbox: Vec::new(),
            },
        };
        worker.ring.register_buf_ring(&worker.bufs)?;
        tracing::debug!(
            worker = id,
            slots = files,
            websocket = ws_cap,
            "worker ready"
        );
        Ok(worker)
    }

    /// The event loop; returns when `Control::stop` is called.
    pub fn run(mut self) -> std::io::Result<()> {
        let st = &mut self.state;
        for i in 0..ACCEPTS {
            st.arm_accept(&mut self.ring, i);
        }
        st.arm_wake(&mut self.ring);
        let mut completions = Vec::with_capacity(1024);
        let mut busy_since = Instant::now();
        while !st.control.stop.load(Ordering::Acquire) {
            let sleep = st.next_sleep();
            WorkerStats::add(
                &st.control.stats.busy_ns,
                busy_since.elapsed().as_nanos() as u64,
            );
            self.ring.submit_and_wait(sleep)?;
            busy_since = Instant::now();
            self.ring.reap(&mut completions);
            for (ud, res, flags) in completions.drain(..) {
                let (op, generation, slot) = unpack(ud);
                match op {
                    x if x == Op::Accept as u8 => st.on_accept(&mut self.ring, slot as usize, res),
                    x if x == Op::Recv as u8 => {
                        st.on_recv(&mut self.ring, &mut self.bufs, slot, generation, res, flags)
                    }
                    x if x == Op::Send as u8 => st.on_send(&mut self.ring, slot, generation, res),
                    x if x == Op::Close as u8 => st.on_closed(&mut self.ring, slot, generation),
                    x if x == Op::Wake as u8 => {
                        st.control.woken();
                        st.arm_wake(&mut self.ring);
                        st.drain_feed();
                    }
                    // Their results need no action, but the slot may only close once they are done.
                    x if x == Op::Cancel as u8 || x == Op::Shutdown as u8 => {
                        st.on_aux_done(&mut self.ring, slot, generation)
                    }
                    _ => {}
                }
            }
            self.bufs.publish();
            st.fire_timers(&mut self.ring);
            if st.accept_paused && st.now_ms() >= st.accept_retry_at {
                st.resume_accepts(&mut self.ring);
            }
            let drained = st.upkeep(&mut self.ring);
            if st.flush_due() || drained {
                st.flush(&mut self.ring);
            }
            if drained {
                // Submit the last closes before leaving.
                self.ring.submit_and_wait(Duration::ZERO)?;
                break;
            }
        }
        tracing::debug!(worker = st.id, "worker stopped");
        Ok(())
    }
}

impl State {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn next_sleep(&self) -> Duration {
        let now = self.now_ms();
        let upkeep = Duration::from_millis(self.upkeep_due_ms().saturating_sub(now));
        let sleep = match self.timers.peek() {
            Some(Reverse((due, _, _))) => Duration::from_millis(due.saturating_sub(now))
                .min(MAX_SLEEP)
                .min(upkeep),
            None => MAX_SLEEP.min(upkeep),
        };
        match self.flush_at_us {
            Some(at) => sleep.min(Duration::from_micros(at.saturating_sub(self.now_us()))),
            None => sleep,
        }
    }

    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Per-socket coalescing (`--coalesce-delay`): bytes queued to a socket wait at most this long, so a
    /// burst of ticks goes out in one send per socket instead of one per tick. With no delay, every loop
    /// iteration flushes (one send per socket per iteration, however many frames it has).
    fn flush_due(&mut self) -> bool {
        if self.dirty.is_empty() {
            return false;
        }
        let delay = self.settings.coalesce_us;
        if delay == 0 {
            return true;
        }
        let now = self.now_us();
        let at = *self.flush_at_us.get_or_insert(now + delay);
        if now >= at {
            self.flush_at_us = None;
            return true;
        }
        false
    }

    fn arm_wake(&mut self, ring: &mut Ring) {
        ring.read_eventfd(
            self.control.wake.as_raw_fd(),
            &mut self.wake_buf,
            user_data(Op::Wake, 0, 0),
        );
    }

    /// The connection a completion belongs to, unless it is stale (slot reused or freed since).
    fn on_recv(
        &mut self,
        ring: &mut Ring,
        bufs: &mut BufRing,
        slot: u32,
        generation: u16,
        res: i32,
        flags: u32,
    ) {
        let now_s = (self.start.elapsed().as_millis() / 1000) as u32;
        let bid = uring::buffer_id(flags);
        let Some(conn) = live(&mut self.conns, slot, generation) else {
            if let Some(bid) = bid {
                bufs.give_back(bid);
            }
            return;
        };
        conn.last_seen_s = now_s;
        let rearm = !uring::more(flags);
        if rearm {
            conn.recv_armed = false;
        }
        match (res, bid) {
            (n, Some(bid)) if n > 0 => {
                let data = bufs.get(bid, n as usize);
                if self.conns[slot as usize].tls.is_some() {
                    self.on_tls_bytes(ring, slot, data);
                } else {
                    self.on_bytes(ring, slot, data);
                }
                bufs.give_back(bid);
            }
            (n, bid) => {
                if let Some(bid) = bid {
                    bufs.give_back(bid);
                }
                if n == -libc::ENOBUFS {
                    // All receive buffers were in use this iteration: simply arm again.
                } else {
                    // EOF (0) or a reset: the peer is gone (or, when lingering, done).
                    if n < 0 && n != -libc::ECANCELED {
                        tracing::debug!(worker = self.id, slot, error = %std::io::Error::from_raw_os_error(-n), "recv failed");
                    }
                    self.close_now(ring, slot);
                    self.finish_close(ring, slot);
                    return;
                }
            }
        }
        let conn = &mut self.conns[slot as usize];
        if rearm && !conn.recv_armed && !matches!(conn.phase, Phase::Closing) {
            conn.recv_armed = true;
            ring.recv_multishot(slot, user_data(Op::Recv, generation, slot));
        }
        if matches!(conn.phase, Phase::Closing) {
            self.finish_close(ring, slot);
        }
    }

    fn fire_timers(&mut self, ring: &mut Ring) {
        let now = self.now_ms();
        while let Some(&Reverse((due, slot, generation))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            let Some(conn) = live(&mut self.conns, slot, generation) else {
                continue;
            };
            let expired = match &mut conn.phase {
                Phase::Handshake { .. } => false,
                Phase::Open { session, .. } => session.on_timeout(now),
                Phase::Finishing | Phase::Lingering => true,
                Phase::Closing | Phase::Free => false,
            };
            if !expired {
                if matches!(conn.phase, Phase::Open { .. }) {
                    let authenticated = conn.auth.is_some();
                    if self.slow_timer(slot, now) && authenticated {
                        self.auth_timer(slot, now);
                    }
                }
                continue;
            }
            WorkerStats::add(&self.control.stats.close_timeouts, 1);
            tracing::debug!(worker = self.id, slot, "close timeout");
            self.close_now(ring, slot);
        }
    }
}

/// Keep `Outbox` referenced so its size shows up next to `Conn` in docs.
#[allow(dead_code)]
const _OUTBOX: usize = size_of::<Outbox>();
