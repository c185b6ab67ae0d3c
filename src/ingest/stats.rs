//! Counters of the ingest thread, readable from any thread (relaxed atomics).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::tick::BadReason;
use super::user::UserRefusal;

/// What the ingest thread has done since start-up.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Pub/sub messages received on the ticks channel.
    pub messages: AtomicU64,
    /// Valid live ticks handed to the workers.
    pub ticks: AtomicU64,
    /// Refused ticks, by `BadReason::index`.
    pub bad: [AtomicU64; BadReason::ALL.len()],
    /// Tick frames built (live and snapshot): once per tick per process, never once per worker.
    pub frames_built: AtomicU64,
    /// Snapshots sent (one per successful connection to Redis).
    pub snapshots: AtomicU64,
    /// Snapshot reads Redis refused (e.g. WRONGTYPE: the hash key holds another type); retried with back-off.
    pub snapshot_failures: AtomicU64,
    /// Successful reconnections after the first connection.
    pub reconnects: AtomicU64,
    /// Per-user messages forwarded to the workers.
    pub user_messages: AtomicU64,
    /// Per-user messages dropped, by `UserRefusal::index`.
    pub bad_user_messages: [AtomicU64; UserRefusal::NAMES.len()],
    /// Latest ticks read (HMGET, per distinct symbol) for workers that may have evicted a newly subscribed symbol.
    pub fetches: AtomicU64,
    /// Symbols retired through the control channel.
    pub retired: AtomicU64,
    /// Whether the pub/sub connection is currently up.
    pub redis_up: AtomicBool,
    /// Publish→enqueue lag of the last tick that carried a `ts`, in µs (0 if none yet).
    pub last_lag_us: AtomicU64,
}

impl IngestStats {
    /// Refused ticks for one reason.
    pub fn bad(&self, reason: BadReason) -> u64 {
        self.bad[reason.index()].load(Ordering::Relaxed)
    }

    /// Refused ticks, all reasons.
    pub fn bad_total(&self) -> u64 {
        self.bad.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
