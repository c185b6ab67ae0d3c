//! The publisher's side of a Redis Cluster feed (`--redis-cluster-masters N`), written the way
//! `ringcast publish --redis-cluster` writes it (src/cli/target.rs; docs/protocol.md, "Redis Cluster"):
//!
//! ```text
//!  symbol ──FNV-1a 32 mod shards──► shard k ──► MULTI; HSET {prefix}ticks:{k} sym tick …;
//!                                                SPUBLISH {prefix}ticks:{k} message; EXEC
//! ```
//!
//! on the master that owns the slot of `{k}` (CLUSTER SLOTS from a seed). The message is the one tick, or
//! a JSON array of the shard's ticks of that millisecond (`--no-batch`: one SPUBLISH per tick, in the same
//! transaction). The transactions of every shard a master owns go to it in one pipelined round trip.

use crate::common::symbol_name;

/// The server's own FNV-1a 32 / shard / CRC16 key-slot code, compiled here from its source file: one copy.
#[path = "../../src/ingest/cluster/hash.rs"]
mod hash;
#[cfg(test)]
use hash::{crc16, fnv1a32};
pub use hash::{key_slot, shard_of};

/// The shard's channel and latest-value hash: `{prefix}ticks:{k}`.
pub fn shard_key(prefix: &str, shard: u32) -> String {
    format!("{prefix}ticks:{{{shard}}}")
}

/// Where each shard lives: one connection per master, the shards it owns.
pub struct Router {
    /// Per master: its address, a connection, the shards whose slot it owns.
    masters: Vec<(String, redis::Connection, Vec<u32>)>,
    /// Per symbol id: its shard.
    shard_of_symbol: Vec<u32>,
    keys: Vec<String>,
}

impl Router {
    /// CLUSTER SLOTS from the first seed that answers, a connection to every master that owns a shard.
    pub fn connect(
        seeds: &[String],
        prefix: &str,
        shards: u32,
        symbols: u32,
    ) -> Result<Router, String> {
        let mut last = String::from("no seeds");
        for seed in seeds {
            let slots = crate::publisher::connect(seed).and_then(|mut c| {
                redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query::<redis::Value>(&mut c)
                    .map_err(|e| format!("CLUSTER SLOTS on {seed}: {e}"))
            });
            match slots {
                Ok(v) => return Router::from_slots(&v, prefix, shards, symbols),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn from_slots(
        slots: &redis::Value,
        prefix: &str,
        shards: u32,
        symbols: u32,
    ) -> Result<Router, String> {
        use redis::Value as V;
        // (first slot, last slot, "host:port" of the master)
        let mut ranges: Vec<(i64, i64, String)> = Vec::new();
        if let V::Array(rs) = slots {
            for r in rs {
                if let V::Array(p) = r
                    && let (Some(V::Int(a)), Some(V::Int(b)), Some(V::Array(m))) =
                        (p.first(), p.get(1), p.get(2))
                    && let (Some(host), Some(V::Int(port))) = (m.first(), m.get(1))
                {
                    let host = match host {
                        V::BulkString(h) => String::from_utf8_lossy(h).into_owned(),
                        V::SimpleString(h) => h.clone(),
                        _ => "127.0.0.1".into(),
                    };
                    ranges.push((*a, *b, format!("{host}:{port}")));
                }
            }
        }
        let keys: Vec<String> = (0..shards).map(|k| shard_key(prefix, k)).collect();
        let mut masters: Vec<(String, redis::Connection, Vec<u32>)> = Vec::new();
        for (k, key) in keys.iter().enumerate() {
            let slot = i64::from(key_slot(key.as_bytes()));
            let addr = ranges
                .iter()
                .find(|(a, b, _)| (*a..=*b).contains(&slot))
                .map(|(_, _, m)| m.clone())
                .ok_or_else(|| {
                    format!("no master owns slot {slot} (shard {k}): is the cluster up?")
                })?;
            match masters.iter_mut().find(|(a, _, _)| *a == addr) {
                Some(m) => m.2.push(k as u32),
                None => {
                    let con = crate::publisher::connect(&format!("redis://{addr}"))?;
                    masters.push((addr, con, vec![k as u32]));
                }
            }
        }
        Ok(Router {
            masters,
            shard_of_symbol: (0..symbols)
                .map(|s| shard_of(&symbol_name(s), shards))
                .collect(),
            keys,
        })
    }

    /// Deletes every shard's hash and stores `ticks` (symbol id, tick) in their shards' hashes.
    pub fn seed(&mut self, ticks: &[(u32, Vec<u8>)]) -> Result<(), String> {
        for (addr, con, owned) in &mut self.masters {
            let mut pipe = redis::pipe();
            for &k in owned.iter() {
                pipe.cmd("DEL").arg(&self.keys[k as usize]).ignore();
                let mine: Vec<&(u32, Vec<u8>)> = ticks
                    .iter()
                    .filter(|(s, _)| self.shard_of_symbol[*s as usize] == k)
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let cmd = pipe.cmd("HSET").arg(&self.keys[k as usize]);
                for (s, t) in mine {
                    cmd.arg(symbol_name(*s)).arg(t.as_slice());
                }
                cmd.ignore();
            }
            pipe.query::<()>(con)
                .map_err(|e| format!("seeding the shard hashes on {addr}: {e}"))?;
        }
        Ok(())
    }

    /// One millisecond's ticks: per shard one MULTI/HSET/SPUBLISH/EXEC on its master, every master's
    /// transactions in one pipelined round trip. Returns the messages published.
    pub fn publish(
        &mut self,
        ticks: &[(u32, Vec<u8>)],
        names: &[String],
        batch: bool,
    ) -> Result<u64, String> {
        let mut messages = 0;
        for (addr, con, owned) in &mut self.masters {
            let mut pipe = redis::pipe();
            let mut any = false;
            for &k in owned.iter() {
                let mine: Vec<&(u32, Vec<u8>)> = ticks
                    .iter()
                    .filter(|(s, _)| self.shard_of_symbol[*s as usize] == k)
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                any = true;
                let key = &self.keys[k as usize];
                pipe.cmd("MULTI").ignore();
                {
                    let cmd = pipe.cmd("HSET").arg(key);
                    for (s, t) in &mine {
                        cmd.arg(&names[*s as usize]).arg(t.as_slice());
                    }
                    cmd.ignore();
                }
                if batch && mine.len() > 1 {
                    let mut arr = Vec::with_capacity(
                        mine.iter().map(|(_, t)| t.len() + 1).sum::<usize>() + 2,
                    );
                    arr.push(b'[');
                    for (i, (_, t)) in mine.iter().enumerate() {
                        if i > 0 {
                            arr.push(b',');
                        }
                        arr.extend_from_slice(t);
                    }
                    arr.push(b']');
                    pipe.cmd("SPUBLISH").arg(key).arg(arr).ignore();
                    messages += 1;
                } else {
                    for (_, t) in &mine {
                        pipe.cmd("SPUBLISH").arg(key).arg(t.as_slice()).ignore();
                        messages += 1;
                    }
                }
                pipe.cmd("EXEC").ignore();
            }
            if any {
                pipe.query::<()>(con)
                    .map_err(|e| format!("publishing on {addr}: {e}"))?;
            }
        }
        Ok(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/protocol.md's table (the server's own test vectors): the harness must agree with the server.
    #[test]
    fn shard_vectors_match_the_server() {
        for (symbol, hash, shard16) in [
            ("A", 0xc40b_f6cc, 12),
            ("EFERT", 0x9e81_3603, 3),
            ("LUCK", 0xf461_c3b0, 0),
            ("HBL", 0x6f95_b899, 9),
            ("OGDC", 0xa8fa_742a, 10),
            ("SYM0001", 0x3f91_bc17, 7),
        ] {
            assert_eq!(fnv1a32(symbol.as_bytes()), hash, "{symbol}");
            assert_eq!(shard_of(symbol, 16), shard16, "{symbol}");
        }
    }

    #[test]
    fn slots_follow_redis() {
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(shard_key("perf:", 7).as_bytes()), key_slot(b"7"));
        assert_eq!(shard_key("psx:", 7), "psx:ticks:{7}");
    }
}
