//! The little of RESP (the Redis protocol) a sharded subscriber connection needs, sans-IO: encode a
//! command, and decode replies and pushes from a growing buffer (an incomplete reply waits for more
//! bytes, so a read timeout never loses or skips part of a message).
//!
//! Why not the redis crate here: its blocking `PubSub` knows `message`/`pmessage` but not RESP2's
//! `smessage`/`sunsubscribe`, and its raw `recv_response` skips the next reply after a read timeout; its
//! `cluster` feature has no blocking pub/sub at all (sharded pub/sub only in the async cluster client, which
//! would bring an async runtime). Commands that are not pub/sub (CLUSTER SLOTS, HGETALL, HMGET, MULTI …)
//! still go through the redis crate.

use std::fmt;

/// One RESP2 value (RESP3 pushes `>` are read as arrays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The bytes of a simple or bulk string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Resp::Simple(s) => Some(s.as_bytes()),
            Resp::Bulk(Some(b)) => Some(b),
            _ => None,
        }
    }
}

/// The other end sent something that is not RESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not the Redis protocol: {}", self.0)
    }
}

/// Largest bulk string or array accepted (a tick message is far smaller).
const MAX_LEN: i64 = 512 * 1024 * 1024;

/// `args` as a RESP array of bulk strings.
pub fn encode<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Decode one value from the front of `buf`: `Ok(Some((value, bytes used)))`, or `Ok(None)` when `buf`
/// holds only part of it.
pub fn decode(buf: &[u8]) -> Result<Option<(Resp, usize)>, ProtocolError> {
    let Some(line_end) = find_crlf(buf) else {
        return Ok(None);
    };
    let (kind, line) = match buf.split_first() {
        Some((k, _)) => (*k, &buf[1..line_end]),
        None => return Ok(None),
    };
    let text = || String::from_utf8_lossy(line).into_owned();
    let after = line_end + 2;
    match kind {
        b'+' => Ok(Some((Resp::Simple(text()), after))),
        b'-' => Ok(Some((Resp::Error(text()), after))),
        b':' => Ok(Some((Resp::Int(number(line)?), after))),
        b'$' => {
            let len = number(line)?;
            if len < 0 {
                return Ok(Some((Resp::Bulk(None), after)));
            }
            check_len(len)?;
            let end = after + len as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError("bulk string without CRLF".into()));
            }
            Ok(Some((Resp::Bulk(Some(buf[after..end].to_vec())), end + 2)))
        }
        b'*' | b'>' => {
            let len = number(line)?;
            if len < 0 {
                return Ok(Some((Resp::Array(None), after)));
            }
            check_len(len)?;
            let mut items = Vec::with_capacity((len as usize).min(1024));
            let mut at = after;
            for _ in 0..len {
                match decode(&buf[at..])? {
                    Some((item, used)) => {
                        items.push(item);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Resp::Array(Some(items)), at)))
        }
        other => Err(ProtocolError(format!(
            "unexpected first byte {:?}",
            other as char
        ))),
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

fn number(line: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ProtocolError(format!("bad number {:?}", String::from_utf8_lossy(line))))
}

fn check_len(len: i64) -> Result<(), ProtocolError> {
    if len > MAX_LEN {
        return Err(ProtocolError(format!("length {len} too large")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_partial() {
        assert_eq!(encode(&["PING"]), b"*1\r\n$4\r\nPING\r\n");
        let msg =
            b"*3\r\n$8\r\nsmessage\r\n$13\r\npsx:ticks:{7}\r\n$14\r\n{\"symbol\":\"A\"}\r\n:1\r\n";
        let (v, used) = decode(msg).unwrap().unwrap();
        assert_eq!(used, msg.len() - 4);
        let Resp::Array(Some(items)) = v else {
            panic!("{v:?}")
        };
        assert_eq!(items[0].bytes(), Some(&b"smessage"[..]));
        assert_eq!(items[2].bytes(), Some(&br#"{"symbol":"A"}"#[..]));
        for cut in 0..used {
            assert_eq!(decode(&msg[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(
            decode(b"-MOVED 3999 127.0.0.1:7001\r\n").unwrap(),
            Some((Resp::Error("MOVED 3999 127.0.0.1:7001".into()), 28))
        );
        assert!(decode(b"HTTP/1.1 400\r\n").is_err());
    }
}
