//! Frame header parsing and server-side frame encoding (RFC 6455 §5.2).

use super::{CloseCode, ProtocolError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
    pub fn to_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }
    /// The opcode for a 4-bit wire value; `None` for the reserved values 3–7 and 0xB–0xF.
    pub fn from_u8(value: u8) -> Option<OpCode> {
        Some(match value {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }
}

/// The longest server frame header: 2 bytes + 8 bytes of extended length (servers never mask).
pub const MAX_SERVER_HEADER: usize = 10;

/// The longest client frame header: 2 bytes + 8 bytes of extended length + 4 bytes of mask key.
pub const MAX_CLIENT_HEADER: usize = 14;

/// The largest control frame payload (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

const FIN: u8 = 0x80;
const RSV: u8 = 0x70;
const MASKED: u8 = 0x80;

/// A validated client frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: OpCode,
    pub mask: [u8; 4],
    pub payload_len: u64,
    /// Bytes taken by the header itself (6, 8 or 14).
    pub header_len: usize,
}

/// The framing of a header, read without any validation: enough to skip a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawFraming {
    /// The 4-bit opcode as sent.
    pub opcode: u8,
    pub payload_len: u64,
    pub header_len: usize,
}

/// Read the framing of the header at the start of `buf` without validating it; `None` if incomplete.
pub fn read_framing(buf: &[u8]) -> Option<RawFraming> {
    let [b0, b1, rest @ ..] = buf else {
        return None;
    };
    let (payload_len, ext_len) = read_length(*b1 & 0x7F, rest)?;
    let header_len = 2 + ext_len + if b1 & MASKED != 0 { 4 } else { 0 };
    (buf.len() >= header_len).then_some(RawFraming {
        opcode: b0 & 0x0F,
        payload_len,
        header_len,
    })
}

/// Parse and validate a client frame header at the start of `buf`.
///
/// `Ok(None)` means the header is incomplete. Every rule that the first two bytes decide is checked
/// as soon as they are present, before the rest of the header arrives.
pub fn decode_header(buf: &[u8]) -> Result<Option<FrameHeader>, ProtocolError> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    let (fin, len7) = (b0 & FIN != 0, b1 & 0x7F);
    if b0 & RSV != 0 {
        return Err(ProtocolError::ReservedBitsSet);
    }
    let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0F))?;
    if opcode.is_control() && !fin {
        return Err(ProtocolError::FragmentedControlFrame);
    }
    if opcode.is_control() && usize::from(len7) > MAX_CONTROL_PAYLOAD {
        return Err(ProtocolError::ControlFrameTooLong);
    }
    if b1 & MASKED == 0 {
        return Err(ProtocolError::UnmaskedFrame);
    }
    let Some((payload_len, ext_len)) = read_length(len7, rest) else {
        return Ok(None);
    };
    check_minimal_length(payload_len, ext_len)?;
    let Some(mask) = rest.get(ext_len..ext_len + 4) else {
        return Ok(None);
    };
    Ok(Some(FrameHeader {
        fin,
        opcode,
        mask: mask.try_into().expect("slice of 4"),
        payload_len,
        header_len: 2 + ext_len + 4,
    }))
}

/// The payload length given the 7-bit length field and the bytes after the first two; also returns
/// how many extended-length bytes were used. `None` if they have not all arrived.
fn read_length(len7: u8, ext: &[u8]) -> Option<(u64, usize)> {
    match len7 {
        126 => Some((
            u64::from(u16::from_be_bytes(ext.get(..2)?.try_into().ok()?)),
            2,
        )),
        127 => Some((u64::from_be_bytes(ext.get(..8)?.try_into().ok()?), 8)),
        short => Some((u64::from(short), 0)),
    }
}

/// RFC 6455 §5.2: "the minimal number of bytes MUST be used to encode the length", and the most
/// significant bit of a 64-bit length MUST be 0.
fn check_minimal_length(len: u64, ext_len: usize) -> Result<(), ProtocolError> {
    match ext_len {
        8 if len >> 63 != 0 => Err(ProtocolError::LengthMsbSet),
        8 if len <= u64::from(u16::MAX) => Err(ProtocolError::NonMinimalLength),
        2 if len < 126 => Err(ProtocolError::NonMinimalLength),
        _ => Ok(()),
    }
}

/// Write an unmasked server frame header for a payload of `len` bytes into `out`; returns its length
/// (2, 4 or 10: the minimal encoding).
pub fn encode_header(
    fin: bool,
    opcode: OpCode,
    len: u64,
    out: &mut [u8; MAX_SERVER_HEADER],
) -> usize {
    out[0] = if fin { FIN } else { 0 } | opcode.to_u8();
    match len {
        0..=125 => {
            out[1] = len as u8;
            2
        }
        126..=0xFFFF => {
            out[1] = 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = 127;
            out[2..10].copy_from_slice(&len.to_be_bytes());
            10
        }
    }
}

/// Append a complete unfragmented server frame (header + payload) to `out`.
pub fn encode_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    let mut header = [0; MAX_SERVER_HEADER];
    let header_len = encode_header(true, opcode, payload.len() as u64, &mut header);
    out.reserve(header_len + payload.len());
    out.extend_from_slice(&header[..header_len]);
    out.extend_from_slice(payload);
}

/// Append a Close frame with `code` and `reason` (reason truncated on a char boundary so the payload
/// stays ≤ 125 bytes).
pub fn encode_close(code: CloseCode, reason: &str, out: &mut Vec<u8>) {
    let reason = truncate_on_char_boundary(reason, MAX_CONTROL_PAYLOAD - 2);
    let mut payload = [0; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.0.to_be_bytes());
    payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
    encode_frame(OpCode::Close, &payload[..2 + reason.len()], out);
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn truncate_on_char_boundary(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes(fin: bool, opcode: OpCode, len: u64) -> Vec<u8> {
        let mut out = [0; MAX_SERVER_HEADER];
        let n = encode_header(fin, opcode, len, &mut out);
        out[..n].to_vec()
    }

    #[test]
    fn encode_header_uses_minimal_length_forms() {
        assert_eq!(header_bytes(true, OpCode::Text, 0), [0x81, 0]);
        assert_eq!(header_bytes(true, OpCode::Text, 125), [0x81, 125]);
        assert_eq!(header_bytes(true, OpCode::Binary, 126), [0x82, 126, 0, 126]);
        assert_eq!(
            header_bytes(false, OpCode::Binary, 0xFFFF),
            [0x02, 126, 0xFF, 0xFF]
        );
        assert_eq!(
            header_bytes(true, OpCode::Ping, 0x1_0000),
            [0x89, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }

    #[test]
    fn encode_frame_appends_header_and_payload() {
        let mut out = vec![0xAA];
        encode_frame(OpCode::Text, b"Hello", &mut out);
        assert_eq!(out, b"\xAA\x81\x05Hello");
    }

    #[test]
    fn encode_close_truncates_reason_on_char_boundary() {
        let mut out = Vec::new();
        encode_close(CloseCode::NORMAL, "bye", &mut out);
        assert_eq!(out, b"\x88\x05\x03\xE8bye");

        let long = "é".repeat(100); // 200 bytes, 2 per char
        out.clear();
        encode_close(CloseCode::GOING_AWAY, &long, &mut out);
        assert_eq!(out[1] as usize, out.len() - 2);
        assert!(out.len() - 2 <= MAX_CONTROL_PAYLOAD);
        assert_eq!(out.len() - 2, 2 + 122); // 123 would split a char
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }

    fn masked(b0: u8, len_bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![b0];
        v.extend_from_slice(len_bytes);
        v[1] |= MASKED;
        v.extend_from_slice(&[1, 2, 3, 4]);
        v
    }

    #[test]
    fn decode_header_reads_all_length_forms() {
        let h = decode_header(&masked(0x81, &[5])).unwrap().unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.payload_len, h.header_len, h.mask),
            (true, OpCode::Text, 5, 6, [1, 2, 3, 4])
        );
        let h = decode_header(&masked(0x02, &[126, 1, 0])).unwrap().unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.payload_len, h.header_len),
            (false, OpCode::Binary, 256, 8)
        );
        let h = decode_header(&masked(0x82, &[127, 0, 0, 0, 0, 0, 1, 0, 0]))
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, h.header_len), (65536, 14));
    }

    #[test]
    fn decode_header_waits_for_the_whole_header() {
        let full = masked(0x82, &[127, 0, 0, 0, 0, 0, 1, 0, 0]);
        for len in 0..full.len() {
            assert_eq!(decode_header(&full[..len]), Ok(None), "prefix {len}");
        }
    }

    #[test]
    fn decode_header_rejects_reserved_bits_and_opcodes() {
        assert_eq!(
            decode_header(&masked(0xC1, &[0])),
            Err(ProtocolError::ReservedBitsSet)
        );
        assert_eq!(
            decode_header(&[0x91, 0x80]),
            Err(ProtocolError::ReservedBitsSet)
        );
        for op in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                decode_header(&masked(0x80 | op, &[0])),
                Err(ProtocolError::ReservedOpcode(op))
            );
        }
    }

    #[test]
    fn decode_header_enforces_control_frame_rules() {
        assert_eq!(
            decode_header(&masked(0x09, &[0])),
            Err(ProtocolError::FragmentedControlFrame)
        );
        assert_eq!(
            decode_header(&masked(0x89, &[126, 0, 126])),
            Err(ProtocolError::ControlFrameTooLong)
        );
        assert!(decode_header(&masked(0x89, &[125])).unwrap().is_some());
    }

    #[test]
    fn decode_header_requires_a_mask_from_the_first_two_bytes() {
        assert_eq!(
            decode_header(&[0x81, 0x05]),
            Err(ProtocolError::UnmaskedFrame)
        );
    }

    #[test]
    fn decode_header_rejects_non_minimal_lengths() {
        assert_eq!(
            decode_header(&masked(0x82, &[126, 0, 125])),
            Err(ProtocolError::NonMinimalLength)
        );
        let len_65535 = [127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF];
        assert_eq!(
            decode_header(&masked(0x82, &len_65535)),
            Err(ProtocolError::NonMinimalLength)
        );
    }

    #[test]
    fn decode_header_rejects_64_bit_length_with_msb_set() {
        let len = [127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            decode_header(&masked(0x82, &len)),
            Err(ProtocolError::LengthMsbSet)
        );
    }

    #[test]
    fn read_framing_skips_without_validating() {
        let f = read_framing(&[0x8B, 126, 0, 3]).unwrap();
        assert_eq!(
            f,
            RawFraming {
                opcode: 0xB,
                payload_len: 3,
                header_len: 4
            }
        );
        assert_eq!(read_framing(&[0x81, 0x85, 0, 0, 0]), None);
    }
}
