//! The ingest thread's loop: connect, subscribe, snapshot, stream; on failure announce the outage once
//! and reconnect with back-off.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::RedisError;

use super::backoff::Backoff;
use super::control::{self, ControlOp};
use super::rng::XorShift;
use super::stats::IngestStats;
use super::throttle::Throttle;
use super::tick::{self, BadTick};
use super::user;
use super::{IngestConfig, Keys};
use crate::fanout::{FeedEvent, FeedSender, FetchRequest, PreparedFrame, Symbol, prepare_text};
use crate::secret::{Redacted, scrub};

/// TCP connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Read/write timeout while subscribing, fetching the snapshot and pinging.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Read timeout while streaming: how quickly `stop` is noticed.
const POLL: Duration = Duration::from_millis(200);
/// After this long without a message, PING the pub/sub connection to detect a dead peer.
const IDLE_PING: Duration = Duration::from_secs(15);
/// A snapshot that Redis refused (e.g. WRONGTYPE) is retried after this long, doubling up to
/// `SNAPSHOT_RETRY_MAX`, while live ticks keep flowing.
const SNAPSHOT_RETRY: Duration = Duration::from_secs(1);
const SNAPSHOT_RETRY_MAX: Duration = Duration::from_secs(30);

/// Most symbols read by one HMGET when answering workers' fetch requests.
const FETCH_BATCH: usize = 512;

/// Whether a Redis error means the connection is unusable (reconnect), rather than a refused command
/// (e.g. WRONGTYPE: the key holds the wrong kind of value), after which the connection still works.
fn connection_trouble(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

/// A read cut short by a signal (EINTR). After the process is stopped and continued (SIGSTOP/SIGCONT:
/// a debugger, `kill -STOP`, a freezer), Linux fails a socket read that has a timeout with EINTR even
/// though no handler ran (signal(7)); the connection is fine, so the stream goes on as after a timeout
/// (the parser keeps what it had read). Treated as an error, it cost a reconnect, a `feed down` to every
/// client and the ticks published meanwhile.
fn interrupted(e: &RedisError) -> bool {
    use std::error::Error;
    // RedisError keeps an io::Error behind an `Arc<dyn Error>`, which its `source()` returns.
    e.is_io_error()
        && e.source()
            .and_then(|s| s.downcast_ref::<Arc<dyn Error + Send + Sync>>())
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| io.kind() == std::io::ErrorKind::Interrupted)
}

/// A connection for commands (snapshot, fetches), with the connect and command timeouts.
fn command_connection(client: &redis::Client) -> Result<redis::Connection, RedisError> {
    let con = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    con.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    con.set_write_timeout(Some(COMMAND_TIMEOUT))?;
    Ok(con)
}

/// A snapshot to read again later.
struct SnapshotRetry {
    at: Instant,
    backoff: Backoff,
}

impl SnapshotRetry {
    fn new() -> SnapshotRetry {
        SnapshotRetry {
            at: Instant::now(),
            backoff: Backoff::with_range(
                SNAPSHOT_RETRY,
                SNAPSHOT_RETRY_MAX,
                XorShift::from_clock(),
            ),
        }
    }

    /// After a refused read: when to try again (back-off); returns the delay.
    fn postpone(&mut self) -> Duration {
        let delay = self.backoff.next_delay();
        self.at = Instant::now() + delay;
        delay
    }
}

/// How a session with Redis ended.
enum Ended {
    /// `stop` was set.
    Stopped,
    /// The connection failed (or could not be made); the message says why.
    Failed(String),
}

impl From<RedisError> for Ended {
    fn from(e: RedisError) -> Ended {
        Ended::Failed(super::explain(&e))
    }
}

pub(super) struct Ingest {
    pub(super) cfg: IngestConfig,
    client: redis::Client,
    keys: Keys,
    workers: Vec<FeedSender>,
    /// Workers' requests for the stored latest tick of a symbol, and the connection that answers them
    /// (opened on the first request, dropped on an error).
    fetches: Option<Receiver<FetchRequest>>,
    fetch_con: Option<redis::Connection>,
    fetch_log: Throttle,
    pub(super) stats: Arc<IngestStats>,
    stop: Arc<AtomicBool>,
    /// `Status{up:false}` was sent and not yet followed by `Status{up:true}`.
    pub(super) down_announced: bool,
    /// A first connection succeeded (later ones count as reconnects).
    pub(super) connected_once: bool,
    bad_log: Throttle,
    control_log: Throttle,
    user_log: Throttle,
}

impl Ingest {
    pub(super) fn new(
        cfg: IngestConfig,
        client: redis::Client,
        workers: Vec<FeedSender>,
        fetches: Option<Receiver<FetchRequest>>,
        stats: Arc<IngestStats>,
        stop: Arc<AtomicBool>,
    ) -> Ingest {
        Ingest {
            keys: Keys::new(&cfg.prefix),
            cfg,
            client,
            workers,
            fetches,
            fetch_con: None,
            fetch_log: Throttle::new(Duration::from_secs(1)),
            stats,
            stop,
            down_announced: false,
            connected_once: false,
            bad_log: Throttle::new(Duration::from_secs(1)),
            control_log: Throttle::new(Duration::from_secs(1)),
            user_log: Throttle::new(Duration::from_secs(1)),
        }
    }

    /// The thread body: sessions until `stop`.
    pub(super) fn run(mut self) {
        let mut backoff = Backoff::new(XorShift::from_clock());
        while !self.stopping() {
            match self.session(&mut backoff) {
                Ended::Stopped => break,
                Ended::Failed(why) => {
                    // The redis crate's messages may quote the URL, password included.
                    let why = scrub(&why, &self.cfg.redis_url);
                    self.stats.redis_up.store(false, Ordering::Relaxed);
                    if !self.down_announced {
                        tracing::warn!(redis = %Redacted(&self.cfg.redis_url), error = %why, "Redis feed down; reconnecting");
                        self.broadcast_status(false);
                    } else {
                        tracing::debug!(error = %why, "Redis reconnect failed");
                    }
                    self.sleep(backoff.next_delay());
                }
            }
        }
        self.stats.redis_up.store(false, Ordering::Relaxed);
        tracing::debug!("ingest thread stopped");
    }

    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleep `total`, waking early on `stop`.
    pub(super) fn sleep(&self, total: Duration) {
        let until = Instant::now() + total;
        while !self.stopping() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    /// One connection: subscribe, snapshot, stream until failure or `stop`.
    fn session(&mut self, backoff: &mut Backoff) -> Ended {
        let mut con = match self.client.get_connection_with_timeout(CONNECT_TIMEOUT) {
            Ok(con) => con,
            Err(e) => return e.into(),
        };
        if let Err(e) = con
            .set_read_timeout(Some(COMMAND_TIMEOUT))
            .and_then(|()| con.set_write_timeout(Some(COMMAND_TIMEOUT)))
        {
            return e.into();
        }
        let mut pubsub = con.as_pubsub();
        // Subscribe first, then read the hash: a tick published in between is in both, never in neither.
        if let Err(e) = pubsub.subscribe(&[&self.keys.ticks, &self.keys.control]) {
            return e.into();
        }
        if let Err(e) = pubsub.psubscribe(format!("{}*", self.keys.user_prefix)) {
            return e.into();
        }
        // A snapshot Redis refuses (the key is not a hash, …) does not stop the live stream: it is retried
        // with back-off while ticks flow. Only a broken connection ends the session.
        let mut retry = None;
        let snapshot = match self.fetch_snapshot() {
            Ok(s) => Some(s),
            Err(e) if connection_trouble(&e) => return e.into(),
            Err(e) => {
                let mut r = SnapshotRetry::new();
                self.snapshot_failed(&e, r.postpone());
                retry = Some(r);
                None
            }
        };
        let symbols = snapshot.as_ref().map_or(0, Vec::len);
        if self.connected_once {
            IngestStats::add(&self.stats.reconnects, 1);
        }
        self.connected_once = true;
        backoff.reset();
        self.stats.redis_up.store(true, Ordering::Relaxed);
        if self.down_announced {
            tracing::info!(redis = %Redacted(&self.cfg.redis_url), symbols, "Redis feed up again");
            self.broadcast_status(true);
        } else {
            tracing::info!(redis = %Redacted(&self.cfg.redis_url), channel = %self.keys.ticks, symbols, "subscribed to the tick feed");
        }
        if let Some(snapshot) = snapshot {
            self.send_snapshot(snapshot);
        }

        if let Err(e) = pubsub.set_read_timeout(Some(POLL)) {
            return e.into();
        }
        let mut last_message = Instant::now();
        loop {
            if self.stopping() {
                return Ended::Stopped;
            }
            self.answer_fetches();
            if let Some(r) = &mut retry
                && Instant::now() >= r.at
            {
                match self.fetch_snapshot() {
                    Ok(snapshot) => {
                        tracing::info!(key = %self.keys.ticks, symbols = snapshot.len(), "snapshot read after all");
                        self.send_snapshot(snapshot);
                        retry = None;
                    }
                    Err(e) if connection_trouble(&e) => return e.into(),
                    Err(e) => {
                        let delay = r.postpone();
                        self.snapshot_failed(&e, delay);
                    }
                }
            }
            match pubsub.get_message() {
                Ok(msg) => {
                    last_message = Instant::now();
                    let channel = msg.get_channel_name();
                    if channel == self.keys.ticks {
                        self.on_ticks(msg.get_payload_bytes());
                    } else if channel == self.keys.control {
                        self.on_control(msg.get_payload_bytes());
                    } else if let Some(user) = channel.strip_prefix(self.keys.user_prefix.as_str())
                    {
                        self.on_user(user, msg.get_payload_bytes());
                    }
                }
                Err(e) if e.is_timeout() || interrupted(&e) => {
                    if last_message.elapsed() >= IDLE_PING {
                        // A longer timeout for the reply: a timed-out command would make the library skip
                        // the next reply, which could be a tick.
                        let alive = pubsub
                            .set_read_timeout(Some(COMMAND_TIMEOUT))
                            .and_then(|()| pubsub.ping::<redis::Value>())
                            .and_then(|_| pubsub.set_read_timeout(Some(POLL)));
                        if let Err(e) = alive {
                            return Ended::Failed(format!("no answer to PING: {e}"));
                        }
                        last_message = Instant::now();
                    }
                }
                Err(e) => return e.into(),
            }
        }
    }

    /// Answer every queued fetch request: one HMGET per batch of distinct symbols (so a burst of
    /// subscribes costs one round trip, not one per symbol), each stored tick validated and its frame built
    /// once, sent to the asking workers only. A Redis error answers `None` (the symbol then waits for its
    /// next live tick) and is logged at most once a second.
    fn answer_fetches(&mut self) {
        let Some((requests, symbols)) = self.pending_fetches() else {
            return;
        };
        let mut values = Vec::with_capacity(symbols.len());
        for batch in symbols.chunks(FETCH_BATCH) {
            match self.hmget(batch) {
                Ok(v) => values.extend(v),
                Err(e) => {
                    self.fetch_con = None;
                    let key = self.keys.ticks.clone();
                    let error = scrub(&e.to_string(), &self.cfg.redis_url);
                    self.fetch_failed(&key, batch.len(), &error);
                    values.extend(batch.iter().map(|_| None));
                }
            }
        }
        self.answer_fetched(requests, symbols, values);
    }

    /// The queued fetch requests (sorted by symbol) and their distinct symbols, if any.
    pub(super) fn pending_fetches(&self) -> Option<(Vec<FetchRequest>, Vec<Symbol>)> {
        let fetches = self.fetches.as_ref()?;
        let mut requests: Vec<FetchRequest> = fetches.try_iter().collect();
        if requests.is_empty() {
            return None;
        }
        requests.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        let mut symbols: Vec<Symbol> = requests.iter().map(|r| r.symbol.clone()).collect();
        symbols.dedup();
        Some((requests, symbols))
    }

    /// A read of the stored ticks for new subscribers failed (logged at most once a second).
    pub(super) fn fetch_failed(&mut self, key: &str, symbols: usize, error: &str) {
        if let Some(suppressed) = self.fetch_log.allow(Instant::now()) {
            tracing::warn!(
                key,
                symbols,
                error,
                suppressed,
                "cannot read latest ticks for new subscribers"
            );
        }
    }

    /// Answer `requests` with `values` (one per symbol of `symbols`, `None` = no stored tick).
    pub(super) fn answer_fetched(
        &mut self,
        requests: Vec<FetchRequest>,
        symbols: Vec<Symbol>,
        values: Vec<Option<Vec<u8>>>,
    ) {
        let frames: Vec<Option<PreparedFrame>> = symbols
            .iter()
            .zip(values)
            .map(|(symbol, value)| {
                value.and_then(|v| self.stored_tick(symbol.as_bytes(), &v).map(|(_, f)| f))
            })
            .collect();
        IngestStats::add(&self.stats.fetches, symbols.len() as u64);
        let mut at = 0;
        for FetchRequest { worker, symbol } in requests {
            while symbols[at] != symbol {
                at += 1;
            }
            if let Some(w) = self.workers.get(worker) {
                w.send(FeedEvent::Latest {
                    symbol,
                    frame: frames.get(at).cloned().flatten(),
                });
            }
        }
    }

    /// HMGET `{prefix}ticks` on the fetch connection (opened when needed).
    fn hmget(&mut self, symbols: &[Symbol]) -> Result<Vec<Option<Vec<u8>>>, RedisError> {
        let con = match &mut self.fetch_con {
            Some(con) => con,
            None => self.fetch_con.insert(command_connection(&self.client)?),
        };
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&self.keys.ticks);
        for s in symbols {
            cmd.arg(s.as_bytes());
        }
        cmd.query(con)
    }

    /// A stored value checked (one valid tick whose symbol is its field), with its frame built; bad ones
    /// are counted and logged.
    pub(super) fn stored_tick(
        &mut self,
        field: &[u8],
        value: &[u8],
    ) -> Option<(Symbol, PreparedFrame)> {
        let (good, bad) = tick::parse_message(value, self.cfg.max_tick_bytes);
        self.count_bad(&bad, "stored tick");
        match good.as_slice() {
            [t] if t.symbol.as_bytes() == field => {
                IngestStats::add(&self.stats.frames_built, 1);
                Some((t.symbol.clone(), prepare_text(t.raw)))
            }
            [t] => {
                self.count_bad(
                    &[BadTick {
                        index: 0,
                        reason: tick::BadReason::BadSymbol,
                        detail: format!(
                            "stored under field {:?} but its symbol is {:?}",
                            String::from_utf8_lossy(field),
                            t.symbol
                        ),
                    }],
                    "stored tick",
                );
                None
            }
            _ => None,
        }
    }

    /// Hand a snapshot to every worker (counted first, so whoever sees the event also sees it counted).
    pub(super) fn send_snapshot(&mut self, snapshot: Vec<(Symbol, PreparedFrame)>) {
        IngestStats::add(&self.stats.snapshots, 1);
        self.broadcast(FeedEvent::Snapshot(Arc::new(snapshot)));
    }

    /// Redis refused the snapshot read: count and say why (one line per attempt; attempts are spaced
    /// by the retry back-off, so at most one line per `SNAPSHOT_RETRY_MAX` in the long run).
    fn snapshot_failed(&mut self, e: &RedisError, retry_in: Duration) {
        IngestStats::add(&self.stats.snapshot_failures, 1);
        tracing::warn!(
            key = %self.keys.ticks,
            error = %scrub(&e.to_string(), &self.cfg.redis_url),
            retry_in = ?retry_in,
            "cannot read the latest-value hash (snapshot); live ticks still flow, retrying"
        );
    }

    /// HGETALL `{prefix}ticks` on a second, short-lived connection: every stored tick, validated, each
    /// frame built once. Sorted by symbol.
    fn fetch_snapshot(&mut self) -> Result<Vec<(Symbol, PreparedFrame)>, RedisError> {
        let mut con = command_connection(&self.client)?;
        let entries: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(&self.keys.ticks)
            .query(&mut con)?;
        let mut out = Vec::with_capacity(entries.len());
        for (field, value) in &entries {
            out.extend(self.stored_tick(field, value));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// A message on the ticks channel: parse once, build each frame once, hand the same frame to every
    /// worker, ticks in order.
    pub(super) fn on_ticks(&mut self, payload: &[u8]) {
        IngestStats::add(&self.stats.messages, 1);
        let (good, bad) = tick::parse_message(payload, self.cfg.max_tick_bytes);
        self.count_bad(&bad, "published tick");
        if good.is_empty() {
            return;
        }
        IngestStats::add(&self.stats.frames_built, good.len() as u64);
        IngestStats::add(&self.stats.ticks, good.len() as u64);
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        for t in &good {
            let frame = prepare_text(t.raw);
            for worker in &self.workers {
                worker.send(FeedEvent::Tick {
                    symbol: t.symbol.clone(),
                    frame: frame.clone(),
                    ts_us: t.ts_us,
                });
            }
            if let Some(ts) = t.ts_us {
                self.stats
                    .last_lag_us
                    .store(now_us.saturating_sub(ts), Ordering::Relaxed);
            }
        }
    }

    /// A per-user message: forwarded as published (one frame, built once) if it can be a text frame
    /// within `--max-tick-bytes`; otherwise counted and logged (at most one line per second).
    pub(super) fn on_user(&mut self, user: &str, payload: &[u8]) {
        match user::check_user_message(payload, self.cfg.max_tick_bytes) {
            Ok(()) => {
                IngestStats::add(&self.stats.user_messages, 1);
                let frame = prepare_text(payload);
                self.broadcast(FeedEvent::User {
                    user: user.into(),
                    frame,
                });
            }
            Err(why) => {
                IngestStats::add(&self.stats.bad_user_messages[why.index()], 1);
                if let Some(suppressed) = self.user_log.allow(Instant::now()) {
                    tracing::warn!(
                        channel = %format_args!("{}{user}", self.keys.user_prefix),
                        reason = why.name(),
                        suppressed,
                        "per-user message dropped: {why}"
                    );
                }
            }
        }
    }

    /// A message on the control channel.
    pub(super) fn on_control(&mut self, payload: &[u8]) {
        match control::parse_control(payload) {
            Ok(ControlOp::Retire(symbol)) => {
                tracing::info!(%symbol, "symbol retired");
                let frame = prepare_text(control::retired_payload(&symbol).as_bytes());
                let symbol: Symbol = symbol.into();
                IngestStats::add(&self.stats.retired, 1);
                self.broadcast(FeedEvent::Retire { symbol, frame });
            }
            Err(e) => {
                if let Some(suppressed) = self.control_log.allow(Instant::now()) {
                    tracing::warn!(channel = %self.keys.control, suppressed, "ignored: {e}");
                }
            }
        }
    }

    /// Count refused ticks per reason and log (at most one line per second).
    fn count_bad(&mut self, bad: &[BadTick], what: &str) {
        for b in bad {
            IngestStats::add(&self.stats.bad[b.reason.index()], 1);
        }
        if let Some(first) = bad.first()
            && let Some(suppressed) = self.bad_log.allow(Instant::now())
        {
            tracing::warn!(
                reason = first.reason.name(),
                in_message = bad.len(),
                suppressed,
                "bad {what} dropped: {first}"
            );
        }
    }

    pub(super) fn broadcast_status(&mut self, up: bool) {
        let frame = prepare_text(control::feed_status_payload(up).as_bytes());
        self.broadcast(FeedEvent::Status { up, frame });
        self.down_announced = !up;
    }

    fn broadcast(&self, event: FeedEvent) {
        if let Some((last, rest)) = self.workers.split_last() {
            for worker in rest {
                worker.send(event.clone());
            }
            last.send(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_interrupted_by_a_signal_is_not_connection_trouble_to_reconnect_for() {
        let eintr = RedisError::from(std::io::Error::from(std::io::ErrorKind::Interrupted));
        assert!(interrupted(&eintr));
        let from_errno = RedisError::from(std::io::Error::from_raw_os_error(libc::EINTR));
        assert!(interrupted(&from_errno));
        for other in [
            std::io::ErrorKind::WouldBlock,
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::UnexpectedEof,
        ] {
            assert!(!interrupted(&RedisError::from(std::io::Error::from(other))));
        }
    }
}
