//! Per-worker counters: written by their worker only (relaxed, no contention), summed on scrape.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::admission::refusals::RefusalCounts;
use crate::runtime::histogram::{ConnBacklog, Histogram, PublishToSend};

#[derive(Debug, Default)]
pub struct WorkerStats {
    pub accepted: AtomicU64,
    pub open: AtomicU64,
    pub closed: AtomicU64,
    pub handshake_failed: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub close_timeouts: AtomicU64,
    pub accept_errors: AtomicU64,
    pub deliveries: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub bad_commands: AtomicU64,
    pub conflated: AtomicU64,
    pub dropped: AtomicU64,
    pub pings: AtomicU64,
    pub idle_timeouts: AtomicU64,
    pub admission_refused: AtomicU64,
    /// Time the worker spent working (not waiting in the ring), ns.
    pub busy_ns: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub tls_resumed: AtomicU64,
    pub tls_failures: AtomicU64,
    pub token_expired: AtomicU64,
    pub rate_limited: AtomicU64,
    /// Refusals by code (counted by `admission::refusals::refused`).
    pub refusals: RefusalCounts,
    /// Symbols in the worker's map (a gauge, updated by upkeep).
    pub symbols: AtomicU64,
    /// Symbols evicted from the map to make room (`--max-symbols`; copied from the map by upkeep).
    pub symbols_evicted: AtomicU64,
    /// Ticks of new symbols refused because the map was full of subscribed symbols.
    pub symbol_ticks_refused: AtomicU64,
    /// Latest values asked of ingest for symbols the map may have evicted.
    pub symbol_fetches: AtomicU64,
    /// Bytes waiting in outboxes (a gauge, published by upkeep).
    pub backlog_bytes: AtomicU64,
    /// 1 once the worker has begun a graceful shutdown (SIGTERM).
    pub shutting_down: AtomicU64,
    /// Publish→send delay (µs) of live ticks carrying a `ts`, once per tick this worker sends to at least
    /// one subscriber (not per delivery).
    pub publish_to_send: Histogram<PublishToSend>,
    /// Bytes waiting in each open connection's queues, sampled by the heartbeat sweep (each connection
    /// at least once per `--ping-interval`).
    pub conn_backlog: Histogram<ConnBacklog>,
}

impl WorkerStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed) + n, Relaxed);
    }
    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).saturating_sub(n), Relaxed);
    }
    pub fn set(counter: &AtomicU64, n: u64) {
        counter.store(n, Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}
