//! Client-to-server masking (RFC 6455 §5.3).

/// XOR `buf` with `key`, where `buf[0]` is byte number `offset` of the frame payload (so a payload that
/// arrives in pieces is unmasked piece by piece). Fast: works a machine word at a time.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // Rotate the key so that `key[0]` applies to `buf[0]`; every 8-byte chunk then starts at the same
    // key phase, so one u64 (the rotated key twice) masks a whole chunk.
    let mut key = key;
    key.rotate_left(offset % 4);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);

    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let bytes: &mut [u8; 8] = chunk.try_into().expect("chunks_exact yields 8 bytes");
        *bytes = (u64::from_ne_bytes(*bytes) ^ word).to_ne_bytes();
    }
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, byte) in buf.iter_mut().enumerate() {
            *byte ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn matches_naive_loop_at_every_offset_and_length() {
        let key = [0x37, 0xFA, 0x21, 0x3D];
        for offset in 0..8 {
            for len in 0..70 {
                let input: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = input.clone();
                let mut slow = input.clone();
                apply_mask(&mut fast, key, offset);
                naive(&mut slow, key, offset);
                assert_eq!(fast, slow, "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn unmasking_in_pieces_equals_unmasking_at_once() {
        let key = [1, 2, 3, 4];
        let input: Vec<u8> = (0..=255).collect();
        let mut whole = input.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = input;
        let mut offset = 0;
        for piece in pieces.chunks_mut(7) {
            let len = piece.len();
            apply_mask(piece, key, offset);
            offset += len;
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 §5.7: masked "Hello".
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }
}
