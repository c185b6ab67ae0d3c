//! The worker's connection engine, without I/O: connections (slots and generations), the symbol map,
//! outboxes, timers, heartbeats, graceful shutdown, the slow-consumer policy, auth expiry, per-address
//! admission, TLS sessions and the HTTP routes. It never touches a socket, a ring or the clock.
//!
//! ```text
//!            events (what happened)                          intents (what to do)
//!  driver ─► on_accepted / on_receive / on_sent / ... ─► Core ─► Intent::{Accept, Receive, Send, ...} ─► driver
//!            on_feed (ticks), set_now (time)                     next_deadline() (when to wake it)
//!            on_fetch_sent                                       next_fetch() (ask ingest for a value)
//! ```
//!
//! The driver (`runtime::driver`, or the in-memory `Sim` of the tests) feeds it events, calls
//! [`Core::poll`] once per loop iteration (timers, upkeep, the batched flush), then takes the intents
//! and carries them out in order. Time is a number: µs since the worker started ([`Core::set_now`]).
//!
//! A send intent points into the connection's boxed outbox; the core does not touch the chunks of a
//! send in flight (nor drop the outbox) until [`Core::on_sent`] reports its completion.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

mod accept;
mod admit;
mod close;
pub mod conn;
mod feed;
mod input;
pub mod outbox;
mod upkeep;

#[cfg(test)]
mod tests;

pub use admit::table_size;
use input::Inbound;

use crate::admission::trusted::TrustedProxies;
use crate::admission::{MessageLimit, SharedAcceptRate, SharedPerIp};
use crate::fanout::symbols::SymbolMap;
use crate::fanout::{FeedEvent, Symbol};
use crate::http::{Exposition, Gate};
use crate::protocol::Limits;
use crate::protocol::handshake::HeadLimits;
use crate::runtime::stats::WorkerStats;
use crate::tls::WorkerTls;
use conn::{Conn, Stage};
use outbox::{Backlog, SendOp};

/// What the server does with client messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
    /// Conformance profile: echo data messages back.
    Echo,
    /// The ticker (subscriptions arrive with the market-data layer).
    Ticker,
}

/// What a worker does with a connection past `max_backlog` (the server maps `--slow-policy` to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowPolicy {
    /// Replace the waiting tick of the same symbol: only the latest value of each symbol waits.
    Conflate,
    /// Drop new ticks.
    Drop,
    /// Close at once with 1013.
    Close,
}

/// Settings every worker shares (read-only; built from the configuration by `server`).
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
    /// Ingest answers fetches (the ticker with a feed): ask it for the stored latest tick of a symbol
    /// the worker may have evicted ([`Core::next_fetch`]).
    pub fetch_latest: bool,
    pub slow_policy: SlowPolicy,
    pub slow_grace_ms: u64,
    pub ping_interval_s: u32,
    pub idle_timeout_s: u32,
    /// Over how long a graceful shutdown spreads its 1012 closes (`--drain-window`).
    pub shutdown_window_ms: u64,
    /// Bytes a connection may have waiting to be sent before it is closed as a slow consumer (1013).
    pub max_backlog: usize,
    /// What `/metrics` answers (the server's renderer over every worker's stats).
    pub metrics: Arc<dyn Exposition>,
    /// Origin, token and metrics-access checks of the upgrade.
    pub gate: Gate,
    pub max_conns_per_ip: u32,
    /// Every connection starts with a PROXY protocol header (`--proxy-protocol`), and only trusted
    /// proxies may connect.
    pub proxy_protocol: bool,
    /// Peers whose PROXY header and `X-Forwarded-For` name the client (`--trusted-proxies`).
    pub trusted_proxies: TrustedProxies,
    /// Open connections per client address, over every worker of the process.
    pub per_ip: SharedPerIp,
    /// Upgrades per second over every worker of the process (`--handshake-rate`), when limited.
    pub accept_rate: Option<SharedAcceptRate>,
    pub message_limit: Option<MessageLimit>,
    /// Per-socket coalescing delay, µs (0: flush every loop iteration).
    pub coalesce_us: u64,
}

/// Where a core's clock stands against the clocks it shares with others (given by its driver).
#[derive(Clone, Copy, Debug, Default)]
pub struct Epochs {
    /// Seconds since the Unix epoch when the worker started (token times are absolute).
    pub unix_s: u64,
    /// ms from the process-wide admission epoch (of `accept_rate`) to the worker's start.
    pub admission_ms: u64,
}

/// One connection, as completions name it: its slot and the slot's generation when it was submitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub slot: u32,
    pub generation: u16,
}

/// What the core asks its driver to do, in order. Small and `Copy`; reused queue (no allocation).
#[derive(Clone, Copy, Debug)]
pub enum Intent {
    /// Arm one accept (its result comes back as `on_accepted` or `on_accept_failed`). The core keeps at
    /// most [`MAX_ACCEPTS`] armed.
    Accept,
    /// Arm a multishot receive on the connection.
    Receive(ConnId),
    /// Send what `op` points to: the connection's outbox, unchanged until `on_sent`.
    Send(ConnId, SendOp),
    /// Shut down the write side (our last bytes are sent); complete with `on_aux_done`.
    ShutWrite(ConnId),
    /// Cancel every operation in flight on the slot; complete with `on_aux_done`.
    Cancel(ConnId),
    /// Close the descriptor (nothing is in flight on it any more); complete with `on_closed`.
    Close(ConnId),
}

/// How a receive completion ended, when it carries no bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvEnd {
    /// Every receive buffer was in use: arm again.
    NoBuffers,
    /// The peer closed (EOF).
    Eof,
    /// The receive failed (`errno`; `ECANCELED` after our own cancel).
    Error(i32),
}

/// Accepts kept in flight per worker (the driver holds one peer-address slot for each).
pub const MAX_ACCEPTS: usize = 16;
/// Connection slots reserved when a worker starts (~10 MB of address space at 152 B each).
const CONN_TABLE_RESERVE: usize = 65_536;
/// Longest the driver sleeps without a deadline due (also the retry delay of a paused accept), µs.
pub const MAX_SLEEP_US: u64 = 500_000;

/// The I/O-free worker: see the module doc.
pub struct Core {
    id: usize,
    settings: Arc<WorkerSettings>,
    stats: Arc<WorkerStats>,
    epochs: Epochs,
    /// µs since the worker started (set by the driver), and the same in ms.
    now_us: u64,
    now_ms: u64,
    intents: Vec<Intent>,
    conns: Vec<Conn>,
    /// Slots holding a connection (accepted and not yet closed).
    open: u32,
    accepts_armed: u32,
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
    symbols: SymbolMap,
    /// When the log line about ticks refused for a full symbol map was last written (ms), and how many
    /// were suppressed since.
    symbols_full_log: (Option<u64>, u64),
    /// Bytes waiting in this worker's outboxes: the sum of every connection's `pending_bytes`.
    backlog: Backlog,
    /// Next connection slot the heartbeat sweep looks at, and when the next upkeep is due.
    sweep_cursor: usize,
    next_upkeep_ms: u64,
    /// Set once a graceful shutdown (SIGTERM) has begun.
    shutdown: Option<upkeep::Shutdown>,
    shutdown_requested: bool,
    /// False once the driver has closed the listener (draining): no accept is armed again.
    listening: bool,
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
    /// Symbols to ask ingest for (their stored latest tick), in order; taken by the driver.
    fetches: VecDeque<Symbol>,
    /// The `{"type":"feed","status":"down"}` frame while the feed is down (sent to each new client).
    feed_down: Option<crate::fanout::symbols::LocalFrame>,
}

impl Core {
    /// A core for worker `id` with a table of `table_slots` descriptor slots, `ws_cap` of them for
    /// WebSocket connections (see [`table_size`]).
    pub fn new(
        id: usize,
        settings: Arc<WorkerSettings>,
        stats: Arc<WorkerStats>,
        (table_slots, ws_cap): (u32, u32),
        tls: Option<WorkerTls>,
        epochs: Epochs,
    ) -> Core {
        // Reserved (address space, not memory) up front, so the connection table and the symbol map's
        // per-slot table do not pause to copy themselves while a connect wave grows them; capped so a
        // strict-overcommit host is not asked to commit a million slots at start (past the cap they
        // grow by doubling).
        let reserve = (table_slots as usize).min(CONN_TABLE_RESERVE);
        let mut symbols = SymbolMap::with_limit(settings.max_symbols);
        symbols.reserve_slots(reserve);
        Core {
            id,
            settings,
            stats,
            epochs,
            now_us: 0,
            now_ms: 0,
            intents: Vec::with_capacity(1024),
            conns: Vec::with_capacity(reserve),
            open: 0,
            accepts_armed: 0,
            accept_paused: false,
            accept_retry_at: 0,
            timers: BinaryHeap::new(),
            handshaking: Vec::new(),
            dirty: Vec::new(),
            scratch: Vec::new(),
            symbols,
            symbols_full_log: (None, 0),
            backlog: Backlog::default(),
            sweep_cursor: 0,
            next_upkeep_ms: 0,
            shutdown: None,
            shutdown_requested: false,
            listening: true,
            table_slots,
            ws_cap,
            upgraded: 0,
            users: HashMap::new(),
            flush_at_us: None,
            tls,
            tls_plain: Vec::new(),
            inbox: Vec::new(),
            fetches: VecDeque::new(),
            feed_down: None,
        }
    }

    pub fn id(&self) -> usize {
        self.id
    }

    /// Arm the first accepts.
    pub fn start(&mut self) {
        self.arm_accepts();
    }

    /// Time moves on: `now_us` is µs since the worker started (never goes back).
    pub fn set_now(&mut self, now_us: u64) {
        self.now_us = self.now_us.max(now_us);
        self.now_ms = self.now_us / 1000;
    }

    /// The intents produced since the last call, in order (the queue is reused).
    pub fn intents(&mut self) -> std::vec::Drain<'_, Intent> {
        self.intents.drain(..)
    }

    /// The next symbol to ask ingest for (a `fanout::FetchRequest`: its stored latest tick, answered
    /// with `FeedEvent::Latest`). The driver takes them after the intents and reports each with
    /// [`Core::on_fetch_sent`]. At most one is pending per symbol.
    pub fn next_fetch(&mut self) -> Option<Symbol> {
        self.fetches.pop_front()
    }

    /// A fetch was handed to ingest (`sent`), or could not be (ingest's end of the channel is gone):
    /// then nothing is pending for the symbol and the next subscriber may ask again.
    pub fn on_fetch_sent(&mut self, symbol: &str, sent: bool) {
        if sent {
            WorkerStats::add(&self.stats.symbol_fetches, 1);
        } else if let Some(id) = self.symbols.get(symbol) {
            self.symbols.entry_mut(id).fetch_pending = false;
        }
    }

    /// A feed event from ingest (ticks, snapshots, status, per-user messages).
    pub fn on_feed(&mut self, event: FeedEvent) {
        self.on_feed_event(event);
    }

    /// Begin a graceful shutdown (SIGTERM): health checks report it, new upgrades get 503, open clients
    /// are closed with 1012 spread over the shutdown window at the next upkeeps.
    pub fn begin_shutdown(&mut self) {
        if !self.shutdown_requested {
            self.shutdown_requested = true;
            WorkerStats::set(&self.stats.shutting_down, 1);
            self.next_upkeep_ms = self.now_ms;
        }
    }

    pub fn shutting_down(&self) -> bool {
        self.shutdown_requested
    }

    /// The driver has closed the listener (draining): arm no accept again; the armed ones complete
    /// with an error, which is expected now.
    pub fn stop_listening(&mut self) {
        self.listening = false;
        self.accept_paused = false;
    }

    /// Once per loop iteration, after the completions: fire due timers, retry paused accepts, run
    /// upkeep, and flush the connections with queued bytes (one send each). True once a graceful
    /// shutdown is complete (the driver submits the last intents and stops).
    pub fn poll(&mut self) -> bool {
        self.fire_timers();
        if self.accept_paused && self.now_ms >= self.accept_retry_at {
            self.resume_accepts();
        }
        let done = self.upkeep();
        if self.flush_due() || done {
            self.flush();
        }
        done
    }

    /// When the driver must call [`Core::poll`] next, in µs since start (it may wake earlier).
    pub fn next_deadline(&self) -> u64 {
        let mut at_ms = self.next_upkeep_ms;
        if let Some(Reverse((due, _, _))) = self.timers.peek() {
            at_ms = at_ms.min(*due);
        }
        if self.accept_paused {
            at_ms = at_ms.min(self.accept_retry_at);
        }
        let mut at = at_ms
            .saturating_mul(1000)
            .min(self.now_us.saturating_add(MAX_SLEEP_US));
        if let Some(flush) = self.flush_at_us {
            at = at.min(flush);
        } else if !self.dirty.is_empty() {
            at = at.min(self.now_us + self.settings.coalesce_us);
        }
        at
    }

    /// Bytes waiting in this worker's outboxes (exact: each outbox reports its changes).
    pub fn backlog(&self) -> usize {
        self.backlog.bytes()
    }

    /// The connection a completion belongs to, unless it is stale (slot reused or freed since).
    fn live(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns
            .get_mut(id.slot as usize)
            .filter(|c| c.generation == id.generation && !matches!(c.stage, Stage::Free))
    }

    fn conn_id(&self, slot: u32) -> ConnId {
        ConnId {
            slot,
            generation: self.conns[slot as usize].generation,
        }
    }

    fn push_timer(&mut self, due_ms: u64, slot: u32) {
        let generation = self.conns[slot as usize].generation;
        self.timers.push(Reverse((due_ms, slot, generation)));
    }

    fn mark_dirty(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(slot);
        }
    }

    /// Seconds since the Unix epoch, by the worker's clock.
    fn unix_s(&self) -> u64 {
        self.epochs.unix_s + self.now_ms / 1000
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
        let now = self.now_us;
        let at = *self.flush_at_us.get_or_insert(now + delay);
        if now >= at {
            self.flush_at_us = None;
            return true;
        }
        false
    }

    /// Received bytes, or the end of a receive. `armed`: the multishot receive stays armed after this
    /// completion (else the core arms it again, unless the connection is ending).
    pub fn on_receive(&mut self, id: ConnId, data: Result<&mut [u8], RecvEnd>, armed: bool) {
        let now_s = (self.now_ms / 1000) as u32;
        let Some(conn) = self.live(id) else {
            return;
        };
        let slot = id.slot;
        conn.last_seen_s = now_s;
        conn.pinged = false;
        if !armed {
            conn.recv_armed = false;
        }
        match data {
            Ok(data) => {
                if conn.proxy_pending {
                    self.on_proxy_bytes(slot, data);
                } else {
                    self.on_wire_bytes(slot, data);
                }
            }
            // All receive buffers were in use this iteration: simply arm again.
            Err(RecvEnd::NoBuffers) => {}
            Err(end) => {
                // EOF or a reset: the peer is gone (or, when lingering, done).
                if let RecvEnd::Error(errno) = end
                    && errno != libc::ECANCELED
                {
                    tracing::debug!(worker = self.id, slot, error = %std::io::Error::from_raw_os_error(errno), "recv failed");
                }
                self.abort(slot);
                self.release(slot);
                return;
            }
        }
        let conn = &mut self.conns[slot as usize];
        if !armed && !conn.recv_armed && !matches!(conn.stage, Stage::Releasing) {
            conn.recv_armed = true;
            self.intents.push(Intent::Receive(id));
        }
        if matches!(conn.stage, Stage::Releasing) {
            self.release(slot);
        }
    }

    fn fire_timers(&mut self) {
        let now = self.now_ms;
        while let Some(&Reverse((due, slot, generation))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            let Some(conn) = self.live(ConnId { slot, generation }) else {
                continue;
            };
            let expired = match &mut conn.stage {
                Stage::Handshake { .. } => false,
                Stage::Open { session, .. } => session.on_timeout(now),
                Stage::Flushing | Stage::Lingering => true,
                Stage::Releasing | Stage::Free => false,
            };
            if !expired {
                if matches!(conn.stage, Stage::Open { .. }) {
                    let authenticated = conn.auth.is_some();
                    if self.slow_timer(slot, now) && authenticated {
                        self.auth_timer(slot, now);
                    }
                }
                continue;
            }
            WorkerStats::add(&self.stats.close_timeouts, 1);
            tracing::debug!(worker = self.id, slot, "close timeout");
            self.abort(slot);
        }
    }
}

/// A worker that stops may leave bytes queued (a shutdown ends when no WebSocket session is left, or at
/// its deadline, not when every last close frame has gone out): they are discarded with the core, through
/// the one path that keeps the backlog gauge exact (an outbox dropped any other way is a bug).
impl Drop for Core {
    fn drop(&mut self) {
        for conn in &mut self.conns {
            conn.discard_queues(&mut self.backlog);
        }
    }
}

/// A connection's peer address, as given on accept.
pub type Peer = Option<IpAddr>;
