//! One WebSocket connection after the upgrade, sans-IO: frame decoding with every RFC 6455 rule,
//! message assembly, ping → pong, and the close handshake.
//!
//! Close lifecycle (the server closes TCP after the close exchange, RFC 6455 §7.1.1):
//!
//! ```text
//!   Open ──peer Close──► (echo Close) ──► Closed            runtime flushes `out`, then closes TCP
//!   Open ──Session::close / protocol error──► CloseSent{deadline}
//!   CloseSent ──peer Close──► Closed                         runtime closes TCP
//!   CloseSent ──deadline passed (on_timeout)──► Closed       runtime closes TCP
//! ```

use super::{CloseCode, ProtocolError};

/// Per-connection limits, shared by all connections of a worker (not stored per connection).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest frame payload accepted; decided from the header, before anything is allocated (→ 1009).
    pub max_frame: u64,
    /// Largest assembled message (→ 1009).
    pub max_message: usize,
    /// Most frames one message may be split into (→ 1008): bounds floods of tiny or empty fragments.
    pub max_fragments: u32,
    /// How long we wait for the peer's Close after sending ours, in milliseconds.
    pub close_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_frame: 1 << 20, max_message: 1 << 20, max_fragments: 1024, close_timeout_ms: 5_000 }
    }
}

/// A complete data message from the peer. Borrowed: valid only during the callback.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// Where the close handshake stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseState {
    Open,
    /// We sent a Close; waiting for the peer's until `deadline_ms`.
    CloseSent { deadline_ms: u64 },
    /// The exchange is over (or abandoned): flush `out`, then close TCP.
    Closed,
}

/// Decoder and close state of one connection. Kept small: it lives in every connection.
#[derive(Debug)]
pub struct Session {
    // implementation-defined; keep it ≤ 64 bytes (checked by a test)
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    pub fn new() -> Self {
        todo!()
    }

    /// Decode frames from `buf` (received bytes; mutable so payloads are unmasked in place).
    ///
    /// Returns how many bytes were consumed. The caller keeps the unconsumed tail and presents it again,
    /// followed by newly received bytes. The tail is never more than an incomplete frame header
    /// (< 14 bytes) or an incomplete control frame (header + ≤ 125 bytes): data payloads are consumed as
    /// they arrive (unmasked, UTF-8 checked, appended to the message being assembled), so invalid UTF-8
    /// fails as early as it is detectable.
    ///
    /// Each complete data message is passed to `on_message` together with `out`, so a reply appended by the
    /// callback keeps its order with control replies. Ping → Pong (same payload) appended to `out`;
    /// Pong ignored; a valid Close is echoed (Open) or completes the exchange (CloseSent).
    ///
    /// On a protocol error: a Close frame with `err.close_code()` is appended to `out`, the state becomes
    /// `CloseSent { deadline_ms: now_ms + limits.close_timeout_ms }`, and `Err(err)` is returned (for
    /// logging; the caller keeps the connection until `Closed`). While `CloseSent`, frames are still parsed
    /// (to find the peer's Close) but data is not delivered. While `Closed`, all input is consumed and
    /// ignored.
    pub fn receive<F>(
        &mut self,
        buf: &mut [u8],
        limits: &Limits,
        now_ms: u64,
        out: &mut Vec<u8>,
        on_message: F,
    ) -> Result<usize, ProtocolError>
    where
        F: FnMut(Message<'_>, &mut Vec<u8>),
    {
        let _ = (buf, limits, now_ms, out, on_message);
        todo!()
    }

    /// Server-initiated close (shutdown, policy): append a Close frame to `out` and enter `CloseSent`.
    /// No-op unless `Open`.
    pub fn close(&mut self, code: CloseCode, reason: &str, limits: &Limits, now_ms: u64, out: &mut Vec<u8>) {
        let _ = (code, reason, limits, now_ms, out);
        todo!()
    }

    pub fn state(&self) -> CloseState {
        todo!()
    }

    /// The next time `on_timeout` must be called, if any.
    pub fn deadline_ms(&self) -> Option<u64> {
        todo!()
    }

    /// Time passes: returns true when the connection must now be closed (close timeout expired).
    pub fn on_timeout(&mut self, now_ms: u64) -> bool {
        let _ = now_ms;
        todo!()
    }

    /// True once the close exchange is over: flush `out`, then close TCP.
    pub fn is_closed(&self) -> bool {
        matches!(self.state(), CloseState::Closed)
    }
}
