//! Client-to-server masking (RFC 6455 §5.3).

/// XOR `buf` with `key`, where `buf[0]` is byte number `offset` of the frame payload (so a payload that
/// arrives in pieces is unmasked piece by piece). Fast: works a machine word at a time.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let _ = (buf, key, offset);
    todo!()
}
