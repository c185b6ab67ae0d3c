//! The feed-side subcommands, one file each: the seed's Ticker API (`publish` = `ticker.set`, `get` =
//! `ticker.get`), `retire`, a simulated exchange (`feed --demo`) and the one-command `demo`.
//!
//! Each `main` prints its own errors on stderr (`ringcast: …`) and returns the process exit code, so
//! stdout carries only the command's output.

use std::fmt;
use std::time::Duration;

use clap::Args;

use crate::ingest::{DEFAULT_PREFIX, DEFAULT_REDIS_URL, Keys};
use crate::secret::{Redacted, scrub};

pub mod config;
pub mod demo;
pub mod feed;
pub mod get;
pub mod market;
pub mod process;
pub mod publish;
pub mod redis_server;
pub mod retire;
pub mod target;

/// Where the feed lives: shared by every subcommand that talks to Redis. `Debug` masks the password.
#[derive(Args, Clone, PartialEq, Eq)]
pub struct RedisArgs {
    /// Redis URL (`redis://[:password@]host:port[/db]`; `rediss://` for TLS, see `--redis-ca`).
    #[arg(long = "redis", env = "RINGCAST_REDIS", default_value = DEFAULT_REDIS_URL, hide_env_values = true)]
    pub redis: String,
    /// Redis Cluster seed nodes, used instead of `--redis` (and `RINGCAST_REDIS`) when set
    /// (`redis://[:password@]h1:7000,redis://h2:7001,…`): the feed is split into `--feed-shards` sharded
    /// channels `{prefix}ticks:{k}` (SPUBLISH/SSUBSCRIBE, Redis 7)
    #[arg(long, env = "RINGCAST_REDIS_CLUSTER", hide_env_values = true)]
    pub redis_cluster: Option<String>,
    /// With `--redis-cluster`: how many shards the feed is split into (a symbol's shard is FNV-1a 32 of its
    /// bytes mod N; every publisher and server must agree)
    #[arg(long, env = "RINGCAST_FEED_SHARDS", default_value_t = crate::ingest::cluster::DEFAULT_SHARDS, value_parser = clap::value_parser!(u32).range(1..=16384))]
    pub feed_shards: u32,
    /// Key prefix (the seed's ioredis `keyPrefix`): hash and channel `{prefix}ticks`, control channel
    /// `{prefix}control`.
    #[arg(long, env = "RINGCAST_PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// With a `rediss://` URL (`--redis` or `--redis-cluster`): the CA certificates (PEM file) the Redis
    /// servers' certificates must chain to, instead of the system's roots. The certificate must name the
    /// URL's host (DNS name or IP address)
    #[arg(long, env = "RINGCAST_REDIS_CA", value_name = "FILE")]
    pub redis_ca: Option<std::path::PathBuf>,
}

impl fmt::Debug for RedisArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisArgs")
            .field("redis", &Redacted(&self.redis))
            .field(
                "redis_cluster",
                &self.redis_cluster.as_deref().map(Redacted),
            )
            .field("feed_shards", &self.feed_shards)
            .field("prefix", &self.prefix)
            .field("redis_ca", &self.redis_ca)
            .finish()
    }
}

impl RedisArgs {
    pub fn keys(&self) -> Keys {
        Keys::new(&self.prefix)
    }

    /// The ingest configuration these arguments describe (default tick size limit).
    pub fn ingest_config(&self) -> crate::ingest::IngestConfig {
        crate::ingest::IngestConfig {
            redis_url: self.redis.clone(),
            prefix: self.prefix.clone(),
            cluster: self
                .redis_cluster
                .as_deref()
                .map(|list| crate::ingest::cluster::ClusterConfig::new(list, self.feed_shards)),
            redis_ca: self.redis_ca.clone(),
            ..Default::default()
        }
    }

    /// The feed's Redis: the single node or the cluster.
    pub fn target(&self) -> Result<target::Target, CliError> {
        target::Target::connect(self)
    }

    /// `--redis` or `--redis-cluster`, password masked, for messages.
    pub fn shown(&self) -> String {
        Redacted(self.redis_cluster.as_deref().unwrap_or(&self.redis)).to_string()
    }

    /// `--redis-ca`, read (a usage error if it cannot be).
    pub fn ca(&self) -> Result<Option<Vec<u8>>, CliError> {
        self.redis_ca
            .as_deref()
            .map(crate::ingest::redis_tls::load_ca)
            .transpose()
            .map_err(CliError::Usage)
    }

    /// A plain connection with bounded connect, read and write times.
    pub fn connect(&self) -> Result<redis::Connection, CliError> {
        connect(&self.redis, self.ca()?.as_deref())
    }
}

/// Connect to `url` (2 s to connect, 10 s per command); a `rediss://` URL trusts `ca` (PEM) if given.
pub fn connect(url: &str, ca: Option<&[u8]>) -> Result<redis::Connection, CliError> {
    let redis_error = |e: redis::RedisError| CliError::redis(url, e);
    let client = crate::ingest::redis_tls::client(url, ca).map_err(|e| {
        CliError::Usage(format!(
            "--redis (RINGCAST_REDIS): `{}` is not a Redis URL: {}",
            Redacted(url),
            scrub(&e.to_string(), url)
        ))
    })?;
    let con = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .map_err(redis_error)?;
    con.set_read_timeout(Some(Duration::from_secs(10)))
        .and_then(|()| con.set_write_timeout(Some(Duration::from_secs(10))))
        .map_err(redis_error)?;
    Ok(con)
}

/// What a subcommand can fail with.
#[derive(Debug)]
pub enum CliError {
    /// Bad arguments or input; the message says which.
    Usage(String),
    /// Redis refused or did not answer (`url` redacted, `error` scrubbed of the password).
    Redis { url: String, error: String },
    /// Anything else (I/O, child processes), already phrased for the user.
    Other(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Other(m) => f.write_str(m),
            CliError::Redis { url, error } => write!(f, "Redis at {url}: {error}"),
        }
    }
}

impl std::error::Error for CliError {}

impl CliError {
    /// `Redis` from a command error, keeping the URL without its password.
    pub fn redis(url: &str, error: redis::RedisError) -> CliError {
        CliError::Redis {
            url: Redacted(url).to_string(),
            error: scrub(&crate::ingest::explain(&error), url),
        }
    }

    /// Exit code: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Print `result`'s error (if any) and give the exit code.
pub fn finish(result: Result<(), CliError>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ringcast: {e}");
            e.exit_code()
        }
    }
}

/// Symbols given as arguments, each possibly comma-separated (`EFERT,LUCK HBL`), trimmed, empty parts
/// skipped, duplicates kept in first-seen order once.
pub fn split_symbols(args: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in args.iter().flat_map(|a| a.split(',')) {
        let s = part.trim();
        if !s.is_empty() && !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_split_on_commas_and_args() {
        let args = ["EFERT,LUCK".to_string(), " HBL , ".into(), "EFERT".into()];
        assert_eq!(split_symbols(&args), ["EFERT", "LUCK", "HBL"]);
        assert!(split_symbols(&[",,".into()]).is_empty());
    }
}
