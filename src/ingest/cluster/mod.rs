//! Redis Cluster ingest (`--redis-cluster`): the feed split into `--feed-shards` sharded pub/sub channels.
//!
//! ```text
//!  symbol ──FNV-1a 32 mod N──► shard k ──► {prefix}ticks:{k}   (SPUBLISH channel and latest-value hash)
//!                                          {prefix}control:{k} (SPUBLISH channel of retire ops)
//!  {k} is a hash tag: the three live in the same slot, so on the same master.
//! ```
//!
//! One subscriber session per master that owns at least one shard (never one per shard or per client),
//! found with CLUSTER SLOTS from the seeds; each SSUBSCRIBEs the shard channels of its master, then reads
//! its shards' hashes (HGETALL) as a snapshot. Sessions fail and recover independently: a lost connection
//! or an error reply (MOVED/ASK…) ends that master's session only, and an `sunsubscribe` push (Redis sends
//! one when a slot moves away) takes that one shard off it; those shards are rediscovered, resubscribed
//! and re-read, their snapshot handed to the workers like a single-node reconnect's, so clients converge
//! without being disconnected, while the other masters' shards keep streaming. `rediss://` seeds reach
//! every node over TLS (`--redis-ca`). The formula and test vectors are in `docs/protocol.md`.

use std::fmt;

mod hash;
pub mod resp;
mod session;
mod subscriber;
pub mod topology;

#[cfg(test)]
use hash::crc16;
pub use hash::{fnv1a32, key_slot, shard_of};
pub use subscriber::start;
pub use topology::{ClusterError, Router, Topology};

/// Default `--feed-shards`.
pub const DEFAULT_SHARDS: u32 = 16;

/// The Redis names of one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardKeys {
    pub shard: u32,
    /// The shard's sharded channel and its latest-value hash: `{prefix}ticks:{k}`.
    pub ticks: String,
    /// The shard's control channel (retire): `{prefix}control:{k}`.
    pub control: String,
    /// The slot all three live in.
    pub slot: u16,
}

impl ShardKeys {
    pub fn new(prefix: &str, shard: u32) -> ShardKeys {
        let ticks = format!("{prefix}ticks:{{{shard}}}");
        ShardKeys {
            shard,
            slot: key_slot(ticks.as_bytes()),
            control: format!("{prefix}control:{{{shard}}}"),
            ticks,
        }
    }

    /// Every shard's names, shard 0 first.
    pub fn all(prefix: &str, shards: u32) -> Vec<ShardKeys> {
        (0..shards).map(|k| ShardKeys::new(prefix, k)).collect()
    }
}

/// Where the cluster feed lives. `Debug` masks the passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Seed URLs, as given (`redis://[:password@]host:port`); a password is used on every node.
    pub seeds: Vec<String>,
    pub shards: u32,
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seeds: Vec<String> = self
            .seeds
            .iter()
            .map(|s| crate::secret::redact_url(s))
            .collect();
        f.debug_struct("ClusterConfig")
            .field("seeds", &seeds)
            .field("shards", &self.shards)
            .finish()
    }
}

impl ClusterConfig {
    /// From `--redis-cluster` (comma-separated URLs) and `--feed-shards`.
    pub fn new(list: &str, shards: u32) -> ClusterConfig {
        ClusterConfig {
            seeds: list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            shards: shards.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of docs/protocol.md ("Redis Cluster"): a publisher in any language must agree.
    pub const VECTORS: &[(&str, u32, u32)] = &[
        ("A", 0xc40b_f6cc, 12),
        ("EFERT", 0x9e81_3603, 3),
        ("LUCK", 0xf461_c3b0, 0),
        ("HBL", 0x6f95_b899, 9),
        ("OGDC", 0xa8fa_742a, 10),
        ("SYM0001", 0x3f91_bc17, 7),
    ];

    #[test]
    fn shard_vectors() {
        for &(symbol, hash, shard16) in VECTORS {
            assert_eq!(fnv1a32(symbol.as_bytes()), hash, "{symbol}");
            assert_eq!(shard_of(symbol, 16), shard16, "{symbol}");
        }
    }

    #[test]
    fn slots_follow_redis() {
        // From the Redis Cluster specification: CRC16("123456789") = 0x31C3.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"foo"), 12182); // CLUSTER KEYSLOT foo
        assert_eq!(key_slot(b"psx:ticks:{7}"), key_slot(b"7"));
        assert_eq!(key_slot(b"psx:control:{7}"), key_slot(b"psx:ticks:{7}"));
        assert_eq!(key_slot(b"a{}b"), key_slot(b"a{}b")); // empty tag: the whole key
        let k = ShardKeys::new("psx:", 7);
        assert_eq!(k.ticks, "psx:ticks:{7}");
        assert_eq!(k.control, "psx:control:{7}");
    }

    #[test]
    fn config_masks_passwords() {
        let c = ClusterConfig::new("redis://:hunter2@h1:7000, redis://h2:7001,", 16);
        assert_eq!(c.seeds.len(), 2);
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
