//! The ring driver of one worker: it owns the io_uring, the receive buffers, the listener, the accept
//! address slots and the wake-up eventfd; it turns the core's intents into submissions and completions
//! into the core's events, and does nothing else (every decision is the core's, `runtime::core`).
//!
//! Each loop iteration: submit and wait (until a completion or the core's next deadline) → tell the
//! core the time → hand it every completion → hand receive buffers back → `Core::poll` (timers, upkeep,
//! one send per socket with queued bytes) → submit its intents → hand its fetches to ingest.

use std::mem::ManuallyDrop;
use std::os::fd::AsRawFd;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::fanout::{FeedReceiver, FetchRequest};
use crate::runtime::core::outbox::SendOp;
use crate::runtime::core::{ConnId, Core, Epochs, Intent, MAX_ACCEPTS, RecvEnd, WorkerSettings};
use crate::runtime::stats::WorkerStats;
use crate::runtime::uring::{self, BufRing, Ring};
use crate::runtime::wake::Control;
use crate::tls::{TlsReloader, WorkerTls};

/// What a completion was for; packed into its `user_data` with the connection's slot and generation
/// (for an accept: the index of its address slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Op {
    Accept = 1,
    Recv,
    Send,
    Cancel,
    ShutWrite,
    Close,
    Wake,
}

const OPS: [Op; 7] = [
    Op::Accept,
    Op::Recv,
    Op::Send,
    Op::Cancel,
    Op::ShutWrite,
    Op::Close,
    Op::Wake,
];

fn user_data(op: Op, id: ConnId) -> u64 {
    (op as u64) << 56 | (id.generation as u64) << 32 | id.slot as u64
}

fn unpack(user_data: u64) -> (Option<Op>, ConnId) {
    let op = OPS
        .iter()
        .copied()
        .find(|&op| op as u8 == (user_data >> 56) as u8);
    let id = ConnId {
        slot: user_data as u32,
        generation: (user_data >> 32) as u16,
    };
    (op, id)
}

/// Longest a draining worker keeps accepting its queued connections before it stops listening
/// (without `tcp_migrate_req`, see [`Worker::hand_over`]).
const QUEUE_DRAIN: Duration = Duration::from_millis(200);

/// A worker's end of the feed (none in the echo profile).
pub struct Feed {
    /// Ticks and feed status from the ingest thread.
    pub events: FeedReceiver,
    /// Where the core's fetches go: the stored latest tick of a symbol it may have evicted.
    pub fetch: mpsc::Sender<FetchRequest>,
}

/// One worker. Teardown (`Drop` below): the ring cancels and reaps every operation in flight before any
/// field is dropped, so no memory an operation points into (receive buffers, the core's outboxes) is
/// freed under the kernel; the ring owns the accept addresses and the wake-up buffer itself.
pub struct Worker {
    ring: Ring,
    bufs: BufRing,
    /// Dropped by hand in `Drop`, only once the ring has reaped every operation in flight.
    core: ManuallyDrop<Core>,
    /// None once closed: a draining worker stops listening (see [`Worker::hand_over`]).
    listener: Option<socket2::Socket>,
    /// When the drain began, while the listener's queue is still being accepted.
    draining_since: Option<Instant>,
    control: Arc<Control>,
    feed: Option<Feed>,
    /// Indexes of the ring's accept address slots not in use by an armed accept.
    accept_free: Vec<usize>,
    start: Instant,
}

impl Worker {
    pub fn new(
        id: usize,
        listener: socket2::Socket,
        settings: Arc<WorkerSettings>,
        control: Arc<Control>,
        feed: Option<Feed>,
        tls: Option<Arc<TlsReloader>>,
        admission_epoch: Instant,
    ) -> std::io::Result<Worker> {
        let table = crate::runtime::core::table_size(settings.max_conns, uring::nofile_limit());
        let mut ring = Ring::new(4096, table.0, MAX_ACCEPTS)?;
        let bufs = BufRing::new(settings.recv_buffers, settings.recv_buffer_size)?;
        ring.register_buf_ring(&bufs)?;
        let start = Instant::now();
        let epochs = Epochs {
            unix_s: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            admission_ms: start.duration_since(admission_epoch).as_millis() as u64,
        };
        let stats = control.stats.clone();
        let core = Core::new(id, settings, stats, table, tls.map(WorkerTls::new), epochs);
        tracing::debug!(
            worker = id,
            slots = table.0,
            websocket = table.1,
            "worker ready"
        );
        Ok(Worker {
            ring,
            bufs,
            core: ManuallyDrop::new(core),
            listener: Some(listener),
            draining_since: None,
            control,
            feed,
            accept_free: (0..MAX_ACCEPTS).rev().collect(),
            start,
        })
    }

    /// The event loop; returns when `Control::stop` is called, or once a graceful shutdown is done.
    pub fn run(mut self) -> std::io::Result<()> {
        self.core.start();
        self.arm_wake();
        self.submit_intents();
        let mut completions = Vec::with_capacity(1024);
        let mut busy_since = Instant::now();
        while !self.control.stopped() {
            let now_us = self.now_us();
            let sleep = Duration::from_micros(self.core.next_deadline().saturating_sub(now_us));
            WorkerStats::add(
                &self.control.stats.busy_ns,
                busy_since.elapsed().as_nanos() as u64,
            );
            self.ring.submit_and_wait(sleep)?;
            busy_since = Instant::now();
            let now_us = self.now_us();
            self.core.set_now(now_us);
            if self.control.shutting_down() {
                self.core.begin_shutdown();
            }
            self.ring.reap(&mut completions);
            for (ud, res, flags) in completions.drain(..) {
                self.complete(ud, res, flags);
            }
            if self.core.shutting_down() && self.listener.is_some() {
                self.hand_over();
            }
            self.bufs.publish();
            let done = self.core.poll();
            self.submit_intents();
            if done {
                // Submit the last closes before leaving.
                self.ring.submit_and_wait(Duration::ZERO)?;
                break;
            }
        }
        tracing::debug!(worker = self.core.id(), "worker stopped");
        Ok(())
    }

    /// Draining: stop listening, so that new connections go to the other listeners of the port (a
    /// replacement started with `--join`), or are refused when there is none. With
    /// `net.ipv4.tcp_migrate_req = 1` the kernel moves the connections queued on this listener to
    /// another listener of the group, so it closes at once; otherwise it would reset them, so the queue
    /// is accepted first (those upgrades get 503, as any upgrade reaching a draining worker) for at most
    /// [`QUEUE_DRAIN`]. `shutdown(SHUT_RD)` takes the socket out of the group at once, although the
    /// armed accepts still hold the file (they complete with an error the core expects).
    fn hand_over(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        let since = *self.draining_since.get_or_insert_with(Instant::now);
        let migrates = crate::runtime::listener::migrates_requests();
        let queued = uring::accept_queue_len(listener.as_raw_fd()).unwrap_or(0);
        if !migrates && queued > 0 && since.elapsed() < QUEUE_DRAIN {
            return;
        }
        if let Err(e) = listener.shutdown(std::net::Shutdown::Read) {
            tracing::warn!(worker = self.core.id(), error = %e, "cannot stop listening");
        }
        tracing::debug!(
            worker = self.core.id(),
            migrates,
            left_in_queue = if migrates { 0 } else { queued },
            "draining: stopped listening"
        );
        self.core.stop_listening();
        self.listener = None;
    }

    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// One completion, as an event for the core.
    fn complete(&mut self, ud: u64, res: i32, flags: u32) {
        let (op, id) = unpack(ud);
        match op {
            Some(Op::Accept) => {
                let i = id.slot as usize;
                // Read the peer address before accept `i` can be armed again.
                let peer = (res >= 0).then(|| self.ring.accept_peer(i)).flatten();
                self.accept_free.push(i);
                if res < 0 {
                    self.core.on_accept_failed(-res);
                } else {
                    self.core.on_accepted(res as u32, peer);
                }
            }
            Some(Op::Recv) => {
                let armed = uring::more(flags);
                let bid = self.bufs.take(flags);
                let data = match (res, bid) {
                    (n, Some(bid)) if n > 0 => Ok(self.bufs.get(bid, n as usize)),
                    (n, _) if n == -libc::ENOBUFS => Err(RecvEnd::NoBuffers),
                    (0, _) => Err(RecvEnd::Eof),
                    (n, _) => Err(RecvEnd::Error(-n)),
                };
                self.core.on_receive(id, data, armed);
                if let Some(bid) = bid {
                    self.bufs.give_back(bid);
                }
            }
            Some(Op::Send) => self.core.on_sent(id, res),
            // Their results need no action, but the slot may only close once they are done.
            Some(Op::Cancel | Op::ShutWrite) => self.core.on_aux_done(id),
            Some(Op::Close) => self.core.on_closed(id),
            Some(Op::Wake) => {
                self.control.woken();
                self.arm_wake();
                // Every queued feed event in one go: a burst costs one wake-up and one flush.
                if let Some(feed) = &self.feed {
                    for event in feed.events.try_iter() {
                        self.core.on_feed(event);
                    }
                }
            }
            None => {}
        }
    }

    /// The core's intents, as submissions (in order), then its fetches, to ingest.
    fn submit_intents(&mut self) {
        let mut not_armed = 0;
        for intent in self.core.intents() {
            match intent {
                Intent::Accept => {
                    let i = self
                        .accept_free
                        .pop()
                        .expect("the core arms at most MAX_ACCEPTS accepts");
                    let ud = user_data(
                        Op::Accept,
                        ConnId {
                            slot: i as u32,
                            generation: 0,
                        },
                    );
                    let Some(listener) = &self.listener else {
                        // Closed (draining) after the core asked: the accept ends as cancelled.
                        self.accept_free.push(i);
                        not_armed += 1;
                        continue;
                    };
                    self.ring.accept(listener.as_raw_fd(), i, ud);
                }
                Intent::Receive(id) => self.ring.recv_multishot(id.slot, user_data(Op::Recv, id)),
                Intent::Send(id, op) => {
                    let ud = user_data(Op::Send, id);
                    // SAFETY: the op points into the connection's boxed outbox, which the core keeps
                    // unchanged and alive until `on_sent` reports this send's completion (`Core::flush`).
                    unsafe {
                        match op {
                            SendOp::Bytes(ptr, len) => self.ring.send(id.slot, ptr, len, ud),
                            SendOp::Msg(msg) => self.ring.send_msg(id.slot, msg, ud),
                        }
                    }
                }
                Intent::ShutWrite(id) => self.ring.shutdown(id.slot, user_data(Op::ShutWrite, id)),
                Intent::Cancel(id) => self.ring.cancel_all(id.slot, user_data(Op::Cancel, id)),
                Intent::Close(id) => self.ring.close(id.slot, user_data(Op::Close, id)),
            }
        }
        for _ in 0..not_armed {
            self.core.on_accept_failed(libc::ECANCELED);
        }
        while let Some(symbol) = self.core.next_fetch() {
            let request = FetchRequest {
                worker: self.core.id(),
                symbol: symbol.clone(),
            };
            let sent = self
                .feed
                .as_ref()
                .is_some_and(|feed| feed.fetch.send(request).is_ok());
            self.core.on_fetch_sent(&symbol, sent);
        }
    }

    fn arm_wake(&mut self) {
        let ud = user_data(
            Op::Wake,
            ConnId {
                slot: 0,
                generation: 0,
            },
        );
        self.ring.read_eventfd(self.control.wake.as_raw_fd(), ud);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if !self.ring.teardown(uring::TEARDOWN_BOUND) {
            // A send may still read its outbox: leak the core (and its outboxes) rather than free them.
            return;
        }
        // SAFETY: dropped once, here, and `self.core` is not used after (this is `drop`).
        unsafe { ManuallyDrop::drop(&mut self.core) }
    }
}
