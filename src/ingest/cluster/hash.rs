//! The hashes of a Redis Cluster feed: FNV-1a 32 picks a symbol's shard, CRC16 a key's slot.
//!
//! Self-contained (no `crate::` paths, no dependencies): the load generator compiles this same file
//! (`perf/src/cluster.rs`, `#[path]`), so publisher and server cannot disagree. Test vectors are in
//! `docs/protocol.md` ("Redis Cluster").

/// FNV-1a, 32 bits, of `bytes`.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The shard of `symbol`: FNV-1a 32 of its bytes, modulo the number of shards.
pub fn shard_of(symbol: &str, shards: u32) -> u32 {
    fnv1a32(symbol.as_bytes()) % shards.max(1)
}

/// CRC16/XMODEM, the checksum Redis Cluster hashes keys with.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for b in bytes {
        crc ^= u16::from(*b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The cluster slot of a key (or channel): CRC16 of its hash tag (`{…}`, if non-empty), else of the key.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        rest.iter()
            .position(|&b| b == b'}')
            .filter(|&close| close > 0)
            .map(|close| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % 16384
}
