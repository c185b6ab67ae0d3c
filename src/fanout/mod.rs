//! Fan-out: from the ingest thread to every worker, and inside a worker from a symbol to its subscribers.
//!
//! ```text
//!  ingest (one thread per process)                     worker (one per core)
//!  Redis message ─► Tick ─► PreparedFrame (built once) ─► FeedSender ─► SymbolMap ─► each subscriber's outbox
//! ```
//!
//! A `PreparedFrame` is the complete WebSocket frame (header + payload) of one tick, in one refcounted
//! buffer: every worker writes those same bytes to each of its subscribed sockets, never re-encoding.

use std::sync::Arc;
use std::sync::mpsc;

use crate::protocol::{OpCode, frame};

pub mod command;
pub mod symbols;

/// A ticker symbol, e.g. `EFERT`. Shared, cheap to clone.
pub type Symbol = Arc<str>;

/// One server frame, built once, shared by every worker and connection that sends it.
pub type PreparedFrame = Arc<[u8]>;

/// Build the text frame carrying `payload` (a tick exactly as published, or a control message).
pub fn prepare_text(payload: &[u8]) -> PreparedFrame {
    let mut out = Vec::with_capacity(payload.len() + frame::MAX_SERVER_HEADER);
    frame::encode_frame(OpCode::Text, payload, &mut out);
    out.into()
}

/// What the ingest thread hands to each worker, in publish order.
#[derive(Debug, Clone)]
pub enum FeedEvent {
    /// A live tick of `symbol`; `ts_us`: its publish time (the tick's `ts`, µs since the epoch), if it
    /// carries one (for the publish→send histogram).
    Tick {
        symbol: Symbol,
        frame: PreparedFrame,
        ts_us: Option<u64>,
    },
    /// The latest tick of every symbol in Redis: at start-up (warm-up) and after a Redis reconnect. A
    /// worker stores each and sends its subscribers the ones that differ from what they last got, so every
    /// client converges to the current state after an outage.
    Snapshot(Arc<Vec<(Symbol, PreparedFrame)>>),
    /// The feed went down or came back: `frame` (`{"type":"feed","status":"down"|"up"}`) goes to every
    /// open connection.
    Status { up: bool, frame: PreparedFrame },
    /// `symbol` was retired: `frame` (`{"type":"retired","symbol":…}`) goes to its subscribers, then the
    /// worker forgets the symbol.
    Retire {
        symbol: Symbol,
        frame: PreparedFrame,
    },
    /// A message for one authenticated user (published on `<prefix>user:<id>`), to that user's connections.
    User {
        user: Arc<str>,
        frame: PreparedFrame,
    },
    /// The answer to this worker's [`FetchRequest`]: the stored latest tick of `symbol` (HMGET), or `None`
    /// if Redis has none (or could not be asked). Sent to the asking worker only.
    Latest {
        symbol: Symbol,
        frame: Option<PreparedFrame>,
    },
}

/// A worker asks ingest for the stored latest tick of a symbol it may have evicted (`--max-symbols`) and a
/// client has just subscribed to; the answer comes back as [`FeedEvent::Latest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// Index of the worker (its position in the list of `FeedSender`s given to ingest).
    pub worker: usize,
    pub symbol: Symbol,
}

/// Wakes the consumer of a queue when events are queued (a worker's eventfd, in `runtime::wake`).
pub trait Notify: Send + Sync {
    /// Called after each queued event; cheap when a wake-up is already pending.
    fn notify(&self);
}

/// The ingest side of one worker's queue (lock-free: `std::sync::mpsc`), plus the wake-up.
#[derive(Clone)]
pub struct FeedSender {
    tx: mpsc::Sender<FeedEvent>,
    wake: Arc<dyn Notify>,
}

/// The worker side of its queue.
pub type FeedReceiver = mpsc::Receiver<FeedEvent>;

/// A queue to one worker.
pub fn channel(wake: Arc<dyn Notify>) -> (FeedSender, FeedReceiver) {
    let (tx, rx) = mpsc::channel();
    (FeedSender { tx, wake }, rx)
}

impl FeedSender {
    /// Queue `event` and wake the worker if it is not already woken. Never blocks.
    pub fn send(&self, event: FeedEvent) {
        if self.tx.send(event).is_ok() {
            self.wake.notify();
        }
    }
}
