//! `GET /metrics`: Prometheus text. Per-worker counters are written by their worker only and summed
//! here, on scrape, so the hot path pays nothing for them. The server builds one [`Metrics`] over the
//! stats it hands each worker and ingest, and gives it to the workers as an `http::Exposition` (the
//! worker's core routes `/metrics` without knowing what is rendered). In a `--processes` group a scrape
//! answers every process's latest snapshot, labelled `process` (`group.rs`).

use std::fmt::Write;
use std::sync::Arc;

use std::sync::atomic::Ordering::Relaxed;

use crate::admission::refusals;
use crate::http::Exposition;
use crate::ingest::IngestStats;
use crate::ingest::tick::BadReason;
use crate::ingest::user::UserRefusal;
use crate::runtime::histogram;
use crate::runtime::stats::WorkerStats;
use crate::server::group::Group;

/// Everything `/metrics` reports on.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Each worker's counters (written by that worker only).
    pub workers: Vec<Arc<WorkerStats>>,
    /// The feed (absent in the echo profile).
    pub ingest: Option<Arc<IngestStats>>,
    /// This process's group under `--processes`: scrapes answer the whole group's snapshots.
    pub group: Option<Group>,
}

/// A counter read from one worker's stats.
type WorkerCounter = fn(&WorkerStats) -> u64;

impl Exposition for Metrics {
    fn feed_up(&self) -> Option<bool> {
        self.ingest.as_ref().map(|i| i.serving())
    }

    /// The exposition text: this process's, or in a group every process's latest snapshot.
    fn render(&self) -> String {
        match &self.group {
            Some(group) => group.render(),
            None => self.render_local(),
        }
    }
}

impl Metrics {
    /// This process's exposition text.
    pub fn render_local(&self) -> String {
        let mut s = String::with_capacity(4096);
        let per_worker: [(&str, &str, &str, WorkerCounter); 6] = [
            (
                "ringcast_symbols",
                "gauge",
                "Symbols in each worker's map (at most --max-symbols, plus subscribed ones past it).",
                |w| WorkerStats::get(&w.symbols),
            ),
            (
                "ringcast_connections_open",
                "gauge",
                "Open connections (the figure to autoscale on).",
                |w| WorkerStats::get(&w.open),
            ),
            (
                "ringcast_connections_accepted_total",
                "counter",
                "Connections accepted.",
                |w| WorkerStats::get(&w.accepted),
            ),
            (
                "ringcast_connections_closed_total",
                "counter",
                "Connections closed.",
                |w| WorkerStats::get(&w.closed),
            ),
            (
                "ringcast_worker_busy_nanoseconds_total",
                "counter",
                "Time each worker spent working rather than waiting (loop busy time; rate() / 1e9 = load).",
                |w| WorkerStats::get(&w.busy_ns),
            ),
            (
                "ringcast_deliveries_total",
                "counter",
                "Frames queued to subscribers.",
                |w| WorkerStats::get(&w.deliveries),
            ),
        ];
        for (name, kind, help, get) in per_worker {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (i, w) in self.workers.iter().enumerate() {
                let _ = writeln!(s, "{name}{{worker=\"{i}\"}} {}", get(w));
            }
        }
        let totals: [(&str, &str, WorkerCounter); 20] = [
            (
                "ringcast_symbols_evicted_total",
                "Symbols without subscribers evicted from a worker's map to make room (--max-symbols).",
                |w| WorkerStats::get(&w.symbols_evicted),
            ),
            (
                "ringcast_symbol_ticks_refused_total",
                "Ticks of new symbols refused: the worker's map was full of subscribed symbols (--max-symbols).",
                |w| WorkerStats::get(&w.symbol_ticks_refused),
            ),
            (
                "ringcast_symbol_fetches_total",
                "Latest ticks asked of Redis for subscribers of a symbol a worker may have evicted.",
                |w| WorkerStats::get(&w.symbol_fetches),
            ),
            (
                "ringcast_handshakes_failed_total",
                "Upgrade requests refused: with an HTTP error, or (a missing or invalid token, `--auth-refusal close`) with a 101 and a close.",
                |w| WorkerStats::get(&w.handshake_failed),
            ),
            (
                "ringcast_handshake_timeouts_total",
                "Connections closed for not finishing the upgrade in time.",
                |w| WorkerStats::get(&w.handshake_timeouts),
            ),
            (
                "ringcast_protocol_errors_total",
                "Connections failed for breaking RFC 6455 or a limit.",
                |w| WorkerStats::get(&w.protocol_errors),
            ),
            (
                "ringcast_close_timeouts_total",
                "Close handshakes the peer did not finish in time.",
                |w| WorkerStats::get(&w.close_timeouts),
            ),
            (
                "ringcast_accept_errors_total",
                "Failed accepts (including a full connection table).",
                |w| WorkerStats::get(&w.accept_errors),
            ),
            (
                "ringcast_slow_consumers_total",
                "Connections closed with 1013 for falling behind.",
                |w| WorkerStats::get(&w.slow_consumers),
            ),
            (
                "ringcast_conflated_frames_total",
                "Ticks that replaced a waiting tick of the same symbol.",
                |w| WorkerStats::get(&w.conflated),
            ),
            (
                "ringcast_dropped_frames_total",
                "Ticks dropped for slow clients (--slow-policy drop).",
                |w| WorkerStats::get(&w.dropped),
            ),
            (
                "ringcast_pings_total",
                "Heartbeat pings sent to silent connections.",
                |w| WorkerStats::get(&w.pings),
            ),
            (
                "ringcast_idle_timeouts_total",
                "Connections closed for silence past the idle timeout.",
                |w| WorkerStats::get(&w.idle_timeouts),
            ),
            (
                "ringcast_tls_handshakes_total",
                "TLS handshakes completed.",
                |w| WorkerStats::get(&w.tls_handshakes),
            ),
            (
                "ringcast_tls_resumed_total",
                "TLS handshakes that resumed a session.",
                |w| WorkerStats::get(&w.tls_resumed),
            ),
            (
                "ringcast_tls_failures_total",
                "TLS failures (bad handshakes, plaintext on the TLS port, old versions).",
                |w| WorkerStats::get(&w.tls_failures),
            ),
            (
                "ringcast_admission_refused_total",
                "Upgrades refused by an admission limit (503).",
                |w| WorkerStats::get(&w.admission_refused),
            ),
            (
                "ringcast_token_expired_total",
                "Connections closed with 4001 at token expiry.",
                |w| WorkerStats::get(&w.token_expired),
            ),
            (
                "ringcast_rate_limited_total",
                "Connections closed with 1008 for sending too fast.",
                |w| WorkerStats::get(&w.rate_limited),
            ),
            (
                "ringcast_bad_client_messages_total",
                "Client messages answered with an error.",
                |w| WorkerStats::get(&w.bad_commands),
            ),
        ];
        for (name, help, get) in totals {
            let total: u64 = self.workers.iter().map(|w| get(w)).sum();
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {total}"
            );
        }
        let name = "ringcast_refusals_total";
        let _ = writeln!(
            s,
            "# HELP {name} Refusals by code, each also logged at info (`refused code=… reason=…`): 401, 403, 503 upgrades refused over HTTP; 4001, 4003 a token refused with a close; 1008 message rate; 1013 slow consumer.\n# TYPE {name} counter"
        );
        for (i, code) in refusals::CODES.iter().enumerate() {
            let total: u64 = self.workers.iter().map(|w| w.refusals.get(i)).sum();
            let _ = writeln!(s, "{name}{{code=\"{code}\"}} {total}");
        }
        let backlog: u64 = self
            .workers
            .iter()
            .map(|w| WorkerStats::get(&w.backlog_bytes))
            .sum();
        let _ = writeln!(
            s,
            "# HELP ringcast_backlog_bytes Bytes waiting in send queues.\n# TYPE ringcast_backlog_bytes gauge\nringcast_backlog_bytes {backlog}"
        );
        let shutting_down = u8::from(
            self.workers
                .iter()
                .any(|w| WorkerStats::get(&w.shutting_down) > 0),
        );
        let _ = writeln!(
            s,
            "# HELP ringcast_draining 1 while draining after SIGTERM.\n# TYPE ringcast_draining gauge\nringcast_draining {shutting_down}"
        );
        histogram::render(
            "ringcast_publish_to_send_seconds",
            "Delay from a tick's `ts` (set by its publisher) to its frame being queued to this worker's subscribers (sent at the end of that loop iteration): one observation per tick per worker with subscribers to it.",
            self.workers.iter().map(|w| &w.publish_to_send),
            &mut s,
        );
        histogram::render(
            "ringcast_connection_backlog_bytes",
            "Bytes waiting in an open connection's send queues, sampled for each open connection by the heartbeat sweep, at least once per --ping-interval.",
            self.workers.iter().map(|w| &w.conn_backlog),
            &mut s,
        );
        if let Some(ingest) = &self.ingest {
            render_ingest(ingest, &mut s);
        }
        s
    }
}

fn render_ingest(ingest: &IngestStats, s: &mut String) {
    let counters = [
        (
            "ringcast_feed_messages_total",
            "Messages received on the ticks channel.",
            &ingest.messages,
        ),
        (
            "ringcast_feed_ticks_total",
            "Valid live ticks handed to the workers.",
            &ingest.ticks,
        ),
        (
            "ringcast_feed_frames_built_total",
            "Tick frames built (once per tick per process).",
            &ingest.frames_built,
        ),
        (
            "ringcast_feed_snapshots_total",
            "Snapshots of the Redis hash sent to workers.",
            &ingest.snapshots,
        ),
        (
            "ringcast_feed_snapshot_failures_total",
            "Snapshot reads Redis refused (e.g. the hash key holds another type); retried while live ticks flow.",
            &ingest.snapshot_failures,
        ),
        (
            "ringcast_feed_reconnects_total",
            "Reconnections to Redis.",
            &ingest.reconnects,
        ),
        (
            "ringcast_feed_latest_fetches_total",
            "Latest ticks read (HMGET) for workers that may have evicted a newly subscribed symbol.",
            &ingest.fetches,
        ),
        (
            "ringcast_feed_retired_total",
            "Symbols retired.",
            &ingest.retired,
        ),
    ];
    for (name, help, counter) in counters {
        let _ = writeln!(
            s,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            counter.load(Relaxed)
        );
    }
    let name = "ringcast_feed_bad_ticks_total";
    let _ = writeln!(
        s,
        "# HELP {name} Ticks refused, by reason.\n# TYPE {name} counter"
    );
    for reason in BadReason::ALL {
        let _ = writeln!(
            s,
            "{name}{{reason=\"{}\"}} {}",
            reason.name(),
            ingest.bad(reason)
        );
    }
    let name = "ringcast_feed_user_messages_total";
    let _ = writeln!(
        s,
        "# HELP {name} Per-user messages forwarded to the workers.\n# TYPE {name} counter\n{name} {}",
        ingest.user_messages.load(Relaxed)
    );
    let name = "ringcast_feed_bad_user_messages_total";
    let _ = writeln!(
        s,
        "# HELP {name} Per-user messages dropped (not UTF-8, or over --max-tick-bytes), by reason.\n# TYPE {name} counter"
    );
    for (reason, counter) in UserRefusal::NAMES.iter().zip(&ingest.bad_user_messages) {
        let _ = writeln!(s, "{name}{{reason=\"{reason}\"}} {}", counter.load(Relaxed));
    }
    let up = u8::from(ingest.redis_up.load(Relaxed));
    let _ = writeln!(
        s,
        "# HELP ringcast_feed_up Whether the Redis subscription is up.\n# TYPE ringcast_feed_up gauge\nringcast_feed_up {up}"
    );
    let down = ingest.shards_down.load(Relaxed);
    let _ = writeln!(
        s,
        "# HELP ringcast_feed_shards_down Redis Cluster shards without a streaming subscription (0 for a single Redis).\n# TYPE ringcast_feed_shards_down gauge\nringcast_feed_shards_down {down}"
    );
    let lag = ingest.last_lag_us.load(Relaxed) as f64 / 1e6;
    let _ = writeln!(
        s,
        "# HELP ringcast_feed_ingest_lag_seconds Publish-to-enqueue lag of the last tick carrying a ts.\n# TYPE ringcast_feed_ingest_lag_seconds gauge\nringcast_feed_ingest_lag_seconds {lag}"
    );
}
