//! Ingest: the one thread per process that reads ticks from Redis and hands them to every worker.
//!
//! ```text
//!  Redis ── SUBSCRIBE {prefix}ticks, {prefix}control ──► parse once ──► prepare_text once ──► FeedSender × workers
//!        ── HGETALL {prefix}ticks (on every (re)connect) ──► FeedEvent::Snapshot
//! ```
//!
//! Exactly one pub/sub connection per process (never one per client), plus a short-lived plain
//! connection for the snapshot. On (re)connect the order is: SUBSCRIBE first, then HGETALL, so no tick
//! published in between is lost (a live tick arriving after the snapshot simply supersedes it). When the
//! connection drops: `Status{up:false}` once, reconnect with jittered exponential back-off (100 ms to
//! 5 s), then `Status{up:true}` and a fresh snapshot. A snapshot Redis refuses while the connection works
//! (WRONGTYPE) is retried with back-off (1 s to 30 s) while live ticks keep flowing.
//!
//! With `--redis-cluster` the feed is sharded over a Redis Cluster instead: [`cluster`] (one subscriber
//! connection per shard-owning master, each failing and recovering on its own, same tick handling, same
//! snapshot-on-reconnect). `rediss://` URLs reach Redis over TLS in both modes ([`redis_tls`],
//! `--redis-ca`).
//!
//! The data contract is in `docs/protocol.md`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

use std::sync::mpsc::Receiver;

use crate::fanout::{FeedSender, FetchRequest};
use crate::secret::{Redacted, scrub};

pub mod backoff;
pub mod cluster;
pub mod control;
pub mod redis_tls;
pub mod rng;
pub mod stats;
mod subscriber;
pub mod throttle;
pub mod tick;
pub mod user;

pub use stats::IngestStats;
pub use tick::{BadReason, BadTick, ParsedTick, parse_message, valid_symbol};

/// Default Redis URL.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default key prefix (the seed's ioredis `keyPrefix`).
pub const DEFAULT_PREFIX: &str = "psx:";

/// Where the feed comes from. `Debug` masks the Redis password.
#[derive(Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// e.g. `redis://127.0.0.1:6379` (`redis://:password@host:port/db` works too).
    pub redis_url: String,
    /// Key prefix: the hash and channel are `{prefix}ticks`, the control channel `{prefix}control`.
    pub prefix: String,
    /// Largest tick accepted, in bytes.
    pub max_tick_bytes: usize,
    /// `--redis-cluster`: a Redis Cluster with the feed in sharded channels (then `redis_url` is unused).
    pub cluster: Option<cluster::ClusterConfig>,
    /// `--redis-ca`: the CA certificates (PEM file) a `rediss://` server's certificate must chain to,
    /// instead of the system's roots.
    pub redis_ca: Option<std::path::PathBuf>,
}

/// A Redis error as an operator reads it: the library's message, and when the other end answered nothing
/// or not in the Redis protocol (a wrong port: an HTTP server, this very server), a line saying so.
/// The URL's password is not in it when the caller scrubs the library's message as usual.
pub fn explain(e: &redis::RedisError) -> String {
    let text = e.to_string();
    let hint = if redis_tls::is_untrusted(&text) {
        Some(redis_tls::UNTRUSTED_HINT)
    } else if e.is_timeout() {
        Some(
            "no answer in time: is a Redis server listening there? (check --redis / RINGCAST_REDIS)",
        )
    } else if matches!(
        e.kind(),
        redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType
    ) || text.contains("response was")
    {
        Some(
            "the other end does not speak the Redis protocol: is this a Redis server's address? (check --redis / RINGCAST_REDIS)",
        )
    } else {
        None
    };
    match hint {
        Some(hint) => format!("{hint} [{e}]"),
        None => text,
    }
}

impl Default for IngestConfig {
    fn default() -> IngestConfig {
        IngestConfig {
            redis_url: DEFAULT_REDIS_URL.into(),
            prefix: DEFAULT_PREFIX.into(),
            max_tick_bytes: tick::DEFAULT_MAX_TICK_BYTES,
            cluster: None,
            redis_ca: None,
        }
    }
}

impl fmt::Debug for IngestConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestConfig")
            .field("redis_url", &Redacted(&self.redis_url))
            .field("prefix", &self.prefix)
            .field("max_tick_bytes", &self.max_tick_bytes)
            .field("cluster", &self.cluster)
            .field("redis_ca", &self.redis_ca)
            .finish()
    }
}

/// The Redis names derived from a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The hash of latest ticks (field = symbol) and the channel new ticks are published on.
    pub ticks: String,
    /// The channel of control operations (`{"op":"retire","symbol":"X"}`).
    pub control: String,
    /// Per-user channels (`{prefix}user:<id>`): a message reaches only that user's connections.
    pub user_prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            ticks: format!("{prefix}ticks"),
            control: format!("{prefix}control"),
            user_prefix: format!("{prefix}user:"),
        }
    }
}

/// Why the ingest thread could not start.
#[derive(Debug)]
pub enum StartError {
    /// The Redis URL does not parse (`url` already redacted, `error` scrubbed).
    BadUrl { url: String, error: String },
    /// A `--redis-cluster` seed does not parse (the message is redacted).
    BadCluster(String),
    /// `--redis-ca` cannot be read or holds no certificate.
    BadCa(String),
    /// The thread could not be spawned.
    Spawn(std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::BadUrl { url, error } => {
                write!(
                    f,
                    "--redis (RINGCAST_REDIS): `{url}` is not a Redis URL: {error}"
                )
            }
            StartError::BadCluster(e) | StartError::BadCa(e) => f.write_str(e),
            StartError::Spawn(e) => write!(f, "cannot start the ingest thread: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Start the ingest thread. It runs until `stop` is set (noticed within ~200 ms), then returns. An
/// unreachable Redis is not an error here: the thread keeps retrying, and the workers get
/// `Status{up:false}` meanwhile.
pub fn start(
    cfg: IngestConfig,
    workers: Vec<FeedSender>,
    stats: Arc<IngestStats>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, StartError> {
    start_with_fetches(cfg, workers, None, stats, stop)
}

/// [`start`], also answering the workers' [`FetchRequest`]s (the stored latest tick of a symbol a worker
/// may have evicted) with one HMGET per batch, as `FeedEvent::Latest` to each asking worker.
pub fn start_with_fetches(
    cfg: IngestConfig,
    workers: Vec<FeedSender>,
    fetches: Option<Receiver<FetchRequest>>,
    stats: Arc<IngestStats>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, StartError> {
    let ca = match &cfg.redis_ca {
        Some(path) => Some(redis_tls::load_ca(path).map_err(StartError::BadCa)?),
        None => None,
    };
    if let Some(cluster) = cfg.cluster.clone() {
        return cluster::start(cfg, cluster, ca, workers, fetches, stats, stop);
    }
    let client =
        redis_tls::client(&cfg.redis_url, ca.as_deref()).map_err(|e| StartError::BadUrl {
            url: Redacted(&cfg.redis_url).to_string(),
            error: scrub(&e.to_string(), &cfg.redis_url),
        })?;
    let ingest = subscriber::Ingest::new(cfg, client, workers, fetches, stats, stop);
    std::thread::Builder::new()
        .name("ringcast-ingest".into())
        .spawn(move || ingest.run())
        .map_err(StartError::Spawn)
}
