//! Per-user messages (`{prefix}user:<sub>`), sans-IO: what may be forwarded to a user's connections.
//!
//! They go out as text frames exactly as published, so they must be UTF-8 (a client fails the connection
//! with 1007 on a text frame that is not) and, like ticks, at most `--max-tick-bytes` long (one frame is
//! built per message and queued whole to every connection of that user).

use std::fmt;

/// Why a per-user message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRefusal {
    /// Larger than `--max-tick-bytes`.
    TooLarge { len: usize, limit: usize },
    /// Not valid UTF-8 (it cannot be a text frame).
    NotUtf8,
}

impl UserRefusal {
    /// Every reason's name, in the order of `index`.
    pub const NAMES: [&'static str; 2] = ["too_large", "not_utf8"];

    /// A dense index, for per-reason counters.
    pub fn index(self) -> usize {
        match self {
            UserRefusal::TooLarge { .. } => 0,
            UserRefusal::NotUtf8 => 1,
        }
    }

    /// A short stable name for metrics and logs.
    pub fn name(self) -> &'static str {
        Self::NAMES[self.index()]
    }
}

impl fmt::Display for UserRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserRefusal::TooLarge { len, limit } => {
                write!(f, "{len} bytes, over --max-tick-bytes ({limit})")
            }
            UserRefusal::NotUtf8 => {
                f.write_str("not valid UTF-8, so it cannot go out as a text frame")
            }
        }
    }
}

/// Whether a per-user message may be forwarded: at most `max_bytes` long and valid UTF-8 (the size is
/// checked first, so a huge message is refused without being scanned).
pub fn check_user_message(payload: &[u8], max_bytes: usize) -> Result<(), UserRefusal> {
    if payload.len() > max_bytes {
        return Err(UserRefusal::TooLarge {
            len: payload.len(),
            limit: max_bytes,
        });
    }
    if std::str::from_utf8(payload).is_err() {
        return Err(UserRefusal::NotUtf8);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_within_the_limit_only() {
        assert_eq!(
            check_user_message(br#"{"type":"order","id":1}"#, 64),
            Ok(())
        );
        assert_eq!(check_user_message("é€😀".as_bytes(), 64), Ok(()));
        assert_eq!(check_user_message(b"", 64), Ok(()));
        assert_eq!(check_user_message(b"ok\xff", 64), Err(UserRefusal::NotUtf8));
        assert_eq!(
            check_user_message(b"\xe2\x82", 64),
            Err(UserRefusal::NotUtf8),
            "a truncated sequence"
        );
        assert_eq!(check_user_message(&[b'x'; 64], 64), Ok(()));
        let too_large = check_user_message(&[b'x'; 65], 64).unwrap_err();
        assert_eq!(too_large, UserRefusal::TooLarge { len: 65, limit: 64 });
        assert_eq!(too_large.name(), "too_large");
        assert_eq!(UserRefusal::NotUtf8.name(), "not_utf8");
    }
}
