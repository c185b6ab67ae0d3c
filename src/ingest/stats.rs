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
    /// Whether the pub/sub connection is currently up (Redis Cluster: every shard subscribed).
    pub redis_up: AtomicBool,
    /// Redis Cluster: the feed's shards (0 for a single node).
    pub shards: AtomicU64,
    /// Redis Cluster: shards without a streaming subscription right now (a master failing over).
    pub shards_down: AtomicU64,
    /// Publish→enqueue lag of the last tick that carried a `ts`, in µs (0 if none yet).
    pub last_lag_us: AtomicU64,
}

impl IngestStats {
    /// Whether the feed gives clients ticks at all, for `/readyz`: the subscription is up, or (Redis
    /// Cluster) some shard streams while others resubscribe. One master failing over must not take every
    /// edge out of a balancer's rotation: every edge reads the same cluster, so none would be better.
    pub fn serving(&self) -> bool {
        let shards = self.shards.load(Ordering::Relaxed);
        self.redis_up.load(Ordering::Relaxed)
            || (shards > 0 && self.shards_down.load(Ordering::Relaxed) < shards)
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_while_the_feed_is_up_or_some_cluster_shard_streams() {
        let single = IngestStats::default();
        assert!(!single.serving(), "a single Redis not yet subscribed");
        single.redis_up.store(true, Ordering::Relaxed);
        assert!(single.serving());

        let cluster = IngestStats::default();
        cluster.shards.store(16, Ordering::Relaxed);
        cluster.shards_down.store(16, Ordering::Relaxed);
        assert!(!cluster.serving(), "no shard streams");
        cluster.shards_down.store(5, Ordering::Relaxed);
        assert!(
            cluster.serving(),
            "one master failing over, the others stream"
        );
        cluster.shards_down.store(0, Ordering::Relaxed);
        cluster.redis_up.store(true, Ordering::Relaxed);
        assert!(cluster.serving());
    }
}
