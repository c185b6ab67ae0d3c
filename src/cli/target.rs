//! Where the feed subcommands write and read: one Redis (`--redis`) or a Redis Cluster (`--redis-cluster`),
//! where each symbol's tick goes to its shard (`{prefix}ticks:{k}`, SPUBLISH + HSET in the same slot).

use std::collections::BTreeMap;

use super::CliError;
use super::publish::{OwnedTick, message};
use crate::ingest::Keys;
use crate::ingest::cluster::topology::Seeds;
use crate::ingest::cluster::{ClusterConfig, ClusterError, Router, ShardKeys, shard_of};
use crate::ingest::control::retire_message;
use crate::secret::Redacted;

/// A connection to the feed's Redis.
pub enum Target {
    Single {
        con: redis::Connection,
        url: String,
        keys: Keys,
    },
    Cluster {
        router: Router,
        shards: u32,
        prefix: String,
        list: String,
    },
}

/// Stored ticks as (field = symbol, value = tick) pairs.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// What a retire did.
pub struct Retired {
    pub deleted: bool,
    pub receivers: i64,
    pub hash: String,
    pub channel: String,
}

impl Target {
    pub fn connect(args: &super::RedisArgs) -> Result<Target, CliError> {
        match &args.redis_cluster {
            None => Ok(Target::Single {
                con: args.connect()?,
                url: args.redis.clone(),
                keys: args.keys(),
            }),
            Some(list) => {
                let cfg = ClusterConfig::new(list, args.feed_shards);
                let usage = |e: ClusterError| match e {
                    ClusterError::BadUrl { .. } => CliError::Usage(e.to_string()),
                    e => cluster_error(list, e),
                };
                let seeds = Seeds::parse(&cfg.seeds, args.ca()?.as_deref()).map_err(usage)?;
                Ok(Target::Cluster {
                    router: Router::new(seeds).map_err(usage)?,
                    shards: cfg.shards,
                    prefix: args.prefix.clone(),
                    list: list.clone(),
                })
            }
        }
    }

    /// Where ticks go, for messages: `psx:ticks` or `psx:ticks:{0..15}`.
    pub fn channel(&self) -> String {
        match self {
            Target::Single { keys, .. } => keys.ticks.clone(),
            Target::Cluster { prefix, shards, .. } => {
                format!("{prefix}ticks:{{0..{}}}", shards - 1)
            }
        }
    }

    /// Store and publish `ticks`: single node: MULTI; HSET; PUBLISH; EXEC. Cluster: per shard, the same
    /// with SPUBLISH on the shard's master. Returns how many subscribers received (summed over shards).
    pub fn store_and_publish(&mut self, ticks: &[OwnedTick]) -> Result<i64, CliError> {
        match self {
            Target::Single { con, url, keys } => {
                super::publish::store_and_publish(con, keys, ticks)
                    .map_err(|e| CliError::redis(url, e))
            }
            Target::Cluster {
                router,
                shards,
                prefix,
                list,
            } => {
                let mut by_shard: BTreeMap<u32, Vec<OwnedTick>> = BTreeMap::new();
                for t in ticks {
                    by_shard
                        .entry(shard_of(&t.symbol, *shards))
                        .or_default()
                        .push(t.clone());
                }
                let mut receivers = 0;
                for (shard, ticks) in by_shard {
                    let k = ShardKeys::new(prefix, shard);
                    let mut hset = redis::cmd("HSET");
                    hset.arg(&k.ticks);
                    for t in &ticks {
                        hset.arg(&t.symbol).arg(&t.raw);
                    }
                    let msg = message(&ticks);
                    let (n,): (i64,) = router
                        .in_slot(k.slot, |con| {
                            redis::pipe()
                                .atomic()
                                .add_command(hset.clone())
                                .ignore()
                                .cmd("SPUBLISH")
                                .arg(&k.ticks)
                                .arg(&msg)
                                .query(con)
                        })
                        .map_err(|e| cluster_error(list, e))?;
                    receivers += n;
                }
                Ok(receivers)
            }
        }
    }

    /// HDEL the symbol's stored tick and publish `{"op":"retire",…}` on the control channel (the shard's,
    /// in a cluster).
    pub fn retire(&mut self, symbol: &str) -> Result<Retired, CliError> {
        let (hash, channel, publish) = match self {
            Target::Single { keys, .. } => (keys.ticks.clone(), keys.control.clone(), "PUBLISH"),
            Target::Cluster { shards, prefix, .. } => {
                let k = ShardKeys::new(prefix, shard_of(symbol, *shards));
                (k.ticks, k.control, "SPUBLISH")
            }
        };
        let pipe = |con: &mut redis::Connection| -> redis::RedisResult<(i64, i64)> {
            redis::pipe()
                .atomic()
                .cmd("HDEL")
                .arg(&hash)
                .arg(symbol)
                .cmd(publish)
                .arg(&channel)
                .arg(retire_message(symbol))
                .query(con)
        };
        let (deleted, receivers) = match self {
            Target::Single { con, url, .. } => pipe(con).map_err(|e| CliError::redis(url, e))?,
            Target::Cluster { router, list, .. } => router
                .in_slot(crate::ingest::cluster::key_slot(hash.as_bytes()), pipe)
                .map_err(|e| cluster_error(list, e))?,
        };
        Ok(Retired {
            deleted: deleted > 0,
            receivers,
            hash,
            channel,
        })
    }

    /// The stored ticks of `symbols` (HMGET; per shard in a cluster), in order.
    pub fn latest(&mut self, symbols: &[String]) -> Result<Vec<Option<Vec<u8>>>, CliError> {
        match self {
            Target::Single { con, url, keys } => redis::cmd("HMGET")
                .arg(&keys.ticks)
                .arg(symbols)
                .query(con)
                .map_err(|e| CliError::redis(url, e)),
            Target::Cluster {
                router,
                shards,
                prefix,
                list,
            } => {
                let mut out = vec![None; symbols.len()];
                for (i, s) in symbols.iter().enumerate() {
                    let k = ShardKeys::new(prefix, shard_of(s, *shards));
                    out[i] = router
                        .in_slot(k.slot, |con| {
                            redis::cmd("HGET").arg(&k.ticks).arg(s).query(con)
                        })
                        .map_err(|e| cluster_error(list, e))?;
                }
                Ok(out)
            }
        }
    }

    /// Every stored tick (HGETALL; of every shard in a cluster).
    pub fn all(&mut self) -> Result<Entries, CliError> {
        match self {
            Target::Single { con, url, keys } => redis::cmd("HGETALL")
                .arg(&keys.ticks)
                .query(con)
                .map_err(|e| CliError::redis(url, e)),
            Target::Cluster {
                router,
                shards,
                prefix,
                list,
            } => {
                let mut out = Vec::new();
                for k in ShardKeys::all(prefix, *shards) {
                    let entries: Entries = router
                        .in_slot(k.slot, |con| redis::cmd("HGETALL").arg(&k.ticks).query(con))
                        .map_err(|e| cluster_error(list, e))?;
                    out.extend(entries);
                }
                Ok(out)
            }
        }
    }
}

fn cluster_error(list: &str, e: ClusterError) -> CliError {
    CliError::Redis {
        url: Redacted(list).to_string(),
        error: crate::secret::scrub(&e.to_string(), list),
    }
}
