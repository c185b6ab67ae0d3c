//! Just enough of a WebSocket client (RFC 6455): the upgrade request and its check, masked frames out,
//! unmasked frames in, parsed in place without copying.

use base64::Engine;
use sha1::{Digest, Sha1};

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// A 16-byte random key, base64 (always 24 bytes).
pub fn make_key(rnd: u128) -> [u8; 24] {
    let mut out = [0u8; 24];
    base64::engine::general_purpose::STANDARD
        .encode_slice(rnd.to_le_bytes(), &mut out)
        .expect("24 bytes");
    out
}

pub fn expected_accept(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

pub fn upgrade_request(host: &str, path: &str, key: &[u8; 24]) -> Vec<u8> {
    let mut r = Vec::with_capacity(200);
    r.extend_from_slice(b"GET ");
    r.extend_from_slice(path.as_bytes());
    r.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    r.extend_from_slice(host.as_bytes());
    r.extend_from_slice(
        b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ",
    );
    r.extend_from_slice(key);
    r.extend_from_slice(b"\r\n\r\n");
    r
}

pub enum Handshake {
    /// Need more bytes.
    Partial,
    /// Upgrade accepted; the response head was this many bytes.
    Done(usize),
    Failed(String),
}

/// Checks the server's response to the upgrade request.
pub fn check_response(buf: &[u8], key: &[u8; 24]) -> Handshake {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > 16384 {
            return Handshake::Failed("response head larger than 16 KiB".into());
        }
        return Handshake::Partial;
    };
    let head = &buf[..end];
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 101") {
        return Handshake::Failed(format!("upgrade refused: `{status}`"));
    }
    let want = expected_accept(key);
    let mut ok = false;
    for l in lines {
        if let Some((k, v)) = l.split_once(':')
            && k.trim().eq_ignore_ascii_case("sec-websocket-accept")
        {
            ok = v.trim() == want;
        }
    }
    if !ok {
        return Handshake::Failed("missing or wrong Sec-WebSocket-Accept".into());
    }
    Handshake::Done(end + 4)
}

/// Appends one masked client frame.
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: u32) {
    out.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n < 65536 {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    let m = mask.to_be_bytes();
    out.extend_from_slice(&m);
    let start = out.len();
    out.extend_from_slice(payload);
    for (i, b) in out[start..].iter_mut().enumerate() {
        *b ^= m[i & 3];
    }
}

pub struct Frame<'a> {
    pub fin: bool,
    pub opcode: u8,
    pub payload: &'a [u8],
}

pub enum Parsed<'a> {
    Frame(Frame<'a>, usize),
    Partial,
    Error(&'static str),
}

/// Parses one server frame at the start of `buf` (servers do not mask; a masked frame is unmasked only if
/// it is not, so it is refused).
#[inline]
pub fn parse_frame(buf: &[u8], max_payload: u64) -> Parsed<'_> {
    if buf.len() < 2 {
        return Parsed::Partial;
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x70 != 0 {
        return Parsed::Error("reserved bits set");
    }
    if b1 & 0x80 != 0 {
        return Parsed::Error("masked server frame");
    }
    let (len, hdr) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Parsed::Partial;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Parsed::Partial;
            }
            (u64::from_be_bytes(buf[2..10].try_into().unwrap()), 10)
        }
        n => (n as u64, 2),
    };
    if len > max_payload {
        return Parsed::Error("frame larger than the limit");
    }
    let total = hdr + len as usize;
    if buf.len() < total {
        return Parsed::Partial;
    }
    Parsed::Frame(
        Frame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0f,
            payload: &buf[hdr..total],
        },
        total,
    )
}

#[inline]
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last = hay.len() - needle.len();
    let mut i = 0;
    while i <= last {
        match hay[i..=last].iter().position(|&b| b == first) {
            None => return None,
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_rfc_example() {
        assert_eq!(
            expected_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frames_round_trip() {
        let mut out = Vec::new();
        encode_frame(&mut out, OP_TEXT, b"hello", 0x01020304);
        assert_eq!(out[1], 0x85);
        // unmasked server frames of each length form
        for n in [5usize, 200, 70000] {
            let mut f = vec![0x81u8];
            if n < 126 {
                f.push(n as u8);
            } else if n < 65536 {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            } else {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
            f.extend(std::iter::repeat_n(b'x', n));
            match parse_frame(&f, 1 << 20) {
                Parsed::Frame(fr, used) => {
                    assert_eq!(used, f.len());
                    assert_eq!(fr.payload.len(), n);
                    assert!(fr.fin);
                }
                _ => panic!("not parsed"),
            }
            assert!(matches!(
                parse_frame(&f[..f.len() - 1], 1 << 20),
                Parsed::Partial
            ));
        }
    }
}
