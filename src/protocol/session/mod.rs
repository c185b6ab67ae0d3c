//! One WebSocket connection after the upgrade, sans-IO: frame decoding with every RFC 6455 rule,
//! message assembly, pings handed to the caller (which answers them with [`pong`]), and the close
//! handshake.
//!
//! Close lifecycle (the server closes TCP after the close exchange, RFC 6455 §7.1.1):
//!
//! ```text
//!   Open ──peer Close──► (echo Close) ──► Closed            runtime flushes `out`, then closes TCP
//!   Open ──Session::close / protocol error──► CloseSent{deadline}
//!   CloseSent ──peer Close──► Closed                         runtime closes TCP
//!   CloseSent ──deadline passed (on_timeout)──► Closed       runtime closes TCP
//! ```

use super::close::parse_close_payload;
use super::frame::{self, FrameHeader, OpCode, encode_close, encode_frame};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;
use super::{CloseCode, ProtocolError};

#[cfg(test)]
mod tests;

/// A message buffer with more capacity than this is freed once its message is delivered, so idle
/// connections hold no payload memory.
const KEEP_CAPACITY: usize = 4 * 1024;

/// Per-connection limits, shared by all connections of a worker (not stored per connection).
/// [`Limits::DEFAULT`] and [`Limits::ECHO`] are the defaults of `ringcast serve` (its flags only override
/// them): one place for them.
#[derive(Clone, Debug, PartialEq, Eq)]
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

impl Limits {
    /// The ticker: clients only send commands, so 64 KiB is ample.
    pub const DEFAULT: Limits = Limits {
        max_frame: 64 << 10,
        max_message: 64 << 10,
        max_fragments: 1024,
        close_timeout_ms: 5_000,
    };
    /// The `--echo` conformance profile: the Autobahn|Testsuite sends messages of up to 16 MiB, in up to
    /// 65,536 fragments.
    pub const ECHO: Limits = Limits {
        max_frame: 64 << 20,
        max_message: 64 << 20,
        max_fragments: 1 << 17,
        close_timeout_ms: 5_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// A complete data message from the peer, or a Ping. Borrowed: valid only during the callback.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
    /// A Ping's payload (≤ 125 bytes). The caller answers with [`pong`]: at once, appended to `out`
    /// (keeping its place among the replies), or later, answering only the latest of several pings
    /// (RFC 6455 §5.5.3 allows it), which bounds what a peer that pings and never reads can queue.
    Ping(&'a [u8]),
}

/// Append the Pong answering a Ping with `payload`.
pub fn pong(payload: &[u8], out: &mut Vec<u8>) {
    encode_frame(OpCode::Pong, payload, out);
}

/// Where the close handshake stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseState {
    Open,
    /// We sent a Close; waiting for the peer's until `deadline_ms`.
    CloseSent {
        deadline_ms: u64,
    },
    /// The exchange is over (or abandoned): flush `out`, then close TCP.
    Closed,
}

/// Decoder and close state of one connection. Kept small: it lives in every connection.
#[derive(Debug)]
pub struct Session {
    /// While `Open`: the payload of the message being assembled (empty for the zero-copy fast path).
    /// While `CloseSent`: an incomplete frame header carried over to the next call.
    buf: Vec<u8>,
    /// Meaningful while `CloseSent`.
    deadline_ms: u64,
    /// Payload bytes of the current data frame not received yet.
    frame_remaining: u64,
    /// Mask key of the current data frame.
    mask: [u8; 4],
    /// Frames received so far for the message being assembled.
    fragments: u32,
    /// UTF-8 state of the text message being assembled.
    utf8: Utf8Validator,
    /// Where the close handshake stands ([`Session::state`] adds the deadline).
    state: SessionState,
    /// The kind of message being assembled, if one is open.
    assembling: Assembling,
    /// Payload offset (mod 4) of the next byte of the current frame, for unmasking.
    mask_offset: u8,
    /// A data frame's payload is being received (`frame_remaining` bytes to go).
    in_frame: bool,
    /// The current data frame is the last of its message.
    frame_fin: bool,
}

/// [`CloseState`] without its deadline (kept in `Session::deadline_ms`, so a session stays small).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SessionState {
    Open,
    CloseSent,
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Assembling {
    Nothing,
    Text,
    Binary,
}

/// A protocol error, and where in the buffer to resume looking for the peer's Close.
struct Failure {
    error: ProtocolError,
    /// Either the start of the offending frame (it is then re-read leniently and skipped) or a point
    /// inside a data payload whose remaining length `frame_remaining` holds.
    resume: usize,
}

impl Failure {
    fn at(resume: usize) -> impl FnOnce(ProtocolError) -> Failure {
        move |error| Failure { error, resume }
    }
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    pub fn new() -> Self {
        Session {
            buf: Vec::new(),
            deadline_ms: 0,
            frame_remaining: 0,
            mask: [0; 4],
            fragments: 0,
            utf8: Utf8Validator::default(),
            state: SessionState::Open,
            assembling: Assembling::Nothing,
            mask_offset: 0,
            in_frame: false,
            frame_fin: false,
        }
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
    /// callback keeps its order with control replies. A Ping is handed to `on_message` as
    /// `Message::Ping` (the caller answers it with [`pong`]); a Pong is ignored; a valid Close is echoed
    /// (Open) or completes the exchange (CloseSent).
    ///
    /// On a protocol error: a Close frame with `err.close_code()` is appended to `out`, the state becomes
    /// `CloseSent { deadline_ms: now_ms + limits.close_timeout_ms }`, and `Err(err)` is returned (for
    /// logging; the caller keeps the connection until `Closed`). While `CloseSent`, frames are still parsed
    /// (to find the peer's Close) but data is not delivered. While `Closed`, all input is consumed and
    /// ignored.
    ///
    /// On `Err`, all of `buf` has been consumed: the rest of it was already searched for the peer's
    /// Close (so the state may be `Closed` when the offending frame was itself the peer's Close). While
    /// `CloseSent` the whole input is always consumed; an incomplete header is kept internally.
    pub fn receive<F>(
        &mut self,
        buf: &mut [u8],
        limits: &Limits,
        now_ms: u64,
        out: &mut Vec<u8>,
        mut on_message: F,
    ) -> Result<usize, ProtocolError>
    where
        F: FnMut(Message<'_>, &mut Vec<u8>),
    {
        match self.state {
            SessionState::Closed => Ok(buf.len()),
            SessionState::CloseSent => {
                self.seek_close(buf);
                Ok(buf.len())
            }
            SessionState::Open => match self.decode(buf, limits, out, &mut on_message) {
                Ok(consumed) => Ok(consumed),
                Err(Failure { error, resume }) => {
                    self.send_close(error.close_code(), error.reason(), limits, now_ms, out);
                    self.seek_close(&buf[resume..]);
                    Err(error)
                }
            },
        }
    }

    /// Server-initiated close (shutdown, policy): append a Close frame to `out` and enter `CloseSent`.
    /// No-op unless `Open`.
    pub fn close(
        &mut self,
        code: CloseCode,
        reason: &str,
        limits: &Limits,
        now_ms: u64,
        out: &mut Vec<u8>,
    ) {
        if self.state == SessionState::Open {
            self.send_close(code, reason, limits, now_ms, out);
        }
    }

    pub fn state(&self) -> CloseState {
        match self.state {
            SessionState::Open => CloseState::Open,
            SessionState::CloseSent => CloseState::CloseSent {
                deadline_ms: self.deadline_ms,
            },
            SessionState::Closed => CloseState::Closed,
        }
    }

    /// The next time `on_timeout` must be called, if any.
    pub fn deadline_ms(&self) -> Option<u64> {
        (self.state == SessionState::CloseSent).then_some(self.deadline_ms)
    }

    /// Time passes: returns true when the connection must now be closed (close timeout expired).
    ///
    /// Also true if the session was already `Closed`.
    pub fn on_timeout(&mut self, now_ms: u64) -> bool {
        if self.state == SessionState::CloseSent && now_ms >= self.deadline_ms {
            self.enter_closed();
        }
        self.state == SessionState::Closed
    }

    /// True once the close exchange is over: flush `out`, then close TCP.
    pub fn is_closed(&self) -> bool {
        matches!(self.state(), CloseState::Closed)
    }

    // -- Open: decoding ------------------------------------------------------------------------------

    /// Decode frames while `Open`. Returns the bytes consumed, or the error and where to resume.
    fn decode<F>(
        &mut self,
        buf: &mut [u8],
        limits: &Limits,
        out: &mut Vec<u8>,
        on_message: &mut F,
    ) -> Result<usize, Failure>
    where
        F: FnMut(Message<'_>, &mut Vec<u8>),
    {
        let mut pos = 0;
        loop {
            if self.in_frame {
                let n = self.frame_remaining.min((buf.len() - pos) as u64) as usize;
                let chunk = &mut buf[pos..pos + n];
                pos += n;
                self.take_payload(chunk).map_err(Failure::at(pos))?;
                if self.frame_remaining > 0 {
                    return Ok(pos);
                }
                self.in_frame = false;
                if self.frame_fin {
                    self.finish_message(out, on_message)
                        .map_err(Failure::at(pos))?;
                }
                continue;
            }

            let Some(header) = frame::decode_header(&buf[pos..]).map_err(Failure::at(pos))? else {
                return Ok(pos);
            };
            let payload_start = pos + header.header_len;
            let available = (buf.len() - payload_start) as u64;

            if header.opcode.is_control() {
                if available < header.payload_len {
                    return Ok(pos);
                }
                let end = payload_start + header.payload_len as usize;
                let payload = &mut buf[payload_start..end];
                apply_mask(payload, header.mask, 0);
                self.on_control(header.opcode, payload, out, on_message)
                    .map_err(Failure::at(pos))?;
                if self.state == SessionState::Closed {
                    return Ok(buf.len());
                }
                pos = end;
                continue;
            }

            let kind = self
                .admit_data_frame(&header, limits)
                .map_err(Failure::at(pos))?;
            if header.fin
                && self.assembling == Assembling::Nothing
                && available >= header.payload_len
            {
                // Fast path: a whole unfragmented message in `buf`, delivered in place.
                let end = payload_start + header.payload_len as usize;
                let payload = &mut buf[payload_start..end];
                deliver_in_place(kind, payload, header.mask, out, on_message)
                    .map_err(Failure::at(pos))?;
                pos = end;
                continue;
            }
            self.begin_frame(kind, &header);
            pos = payload_start;
        }
    }

    /// Check a data frame header against the message state and the limits, before anything is
    /// allocated. Returns the kind of message it belongs to.
    fn admit_data_frame(
        &self,
        header: &FrameHeader,
        limits: &Limits,
    ) -> Result<Assembling, ProtocolError> {
        if header.payload_len > limits.max_frame {
            return Err(ProtocolError::FrameTooBig);
        }
        let kind = match (header.opcode, self.assembling) {
            (OpCode::Continuation, Assembling::Nothing) => {
                return Err(ProtocolError::UnexpectedContinuation);
            }
            (OpCode::Continuation, open) => open,
            (_, Assembling::Text | Assembling::Binary) => {
                return Err(ProtocolError::ExpectedContinuation);
            }
            (OpCode::Text, Assembling::Nothing) => Assembling::Text,
            (_, Assembling::Nothing) => Assembling::Binary,
        };
        if self.fragments >= limits.max_fragments {
            return Err(ProtocolError::TooManyFragments);
        }
        if self.buf.len() as u64 + header.payload_len > limits.max_message as u64 {
            return Err(ProtocolError::MessageTooBig);
        }
        Ok(kind)
    }

    /// Start receiving the payload of an admitted data frame piece by piece.
    fn begin_frame(&mut self, kind: Assembling, header: &FrameHeader) {
        self.assembling = kind;
        self.fragments += 1;
        self.in_frame = true;
        self.frame_fin = header.fin;
        self.frame_remaining = header.payload_len;
        self.mask = header.mask;
        self.mask_offset = 0;
    }

    /// Unmask, validate and append the next piece of the current data frame's payload.
    fn take_payload(&mut self, chunk: &mut [u8]) -> Result<(), ProtocolError> {
        apply_mask(chunk, self.mask, usize::from(self.mask_offset));
        self.mask_offset = ((usize::from(self.mask_offset) + chunk.len()) % 4) as u8;
        self.frame_remaining -= chunk.len() as u64;
        if self.assembling == Assembling::Text {
            self.utf8
                .feed(chunk)
                .map_err(|()| ProtocolError::InvalidUtf8)?;
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    /// The last frame of a message has been received: deliver it and reset the assembly state.
    fn finish_message<F>(
        &mut self,
        out: &mut Vec<u8>,
        on_message: &mut F,
    ) -> Result<(), ProtocolError>
    where
        F: FnMut(Message<'_>, &mut Vec<u8>),
    {
        let kind = std::mem::replace(&mut self.assembling, Assembling::Nothing);
        let text_complete = std::mem::take(&mut self.utf8).is_complete();
        self.fragments = 0;
        let delivered = match kind {
            Assembling::Text if !text_complete => Err(ProtocolError::InvalidUtf8),
            Assembling::Text => std::str::from_utf8(&self.buf)
                .map(|text| on_message(Message::Text(text), out))
                .map_err(|_| ProtocolError::InvalidUtf8),
            Assembling::Binary => {
                on_message(Message::Binary(&self.buf), out);
                Ok(())
            }
            Assembling::Nothing => Ok(()),
        };
        self.release_buffer();
        delivered
    }

    /// Ping → the caller, Pong → nothing, Close → echo and `Closed`.
    fn on_control<F>(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        out: &mut Vec<u8>,
        on_message: &mut F,
    ) -> Result<(), ProtocolError>
    where
        F: FnMut(Message<'_>, &mut Vec<u8>),
    {
        match opcode {
            OpCode::Ping => on_message(Message::Ping(payload), out),
            OpCode::Close => {
                match parse_close_payload(payload)? {
                    Some(code) => encode_close(code, "", out),
                    None => encode_frame(OpCode::Close, &[], out),
                }
                self.enter_closed();
            }
            _ => {}
        }
        Ok(())
    }

    /// Empty the message buffer, freeing it if it grew large.
    fn release_buffer(&mut self) {
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }

    // -- Closing ---------------------------------------------------------------------------------------

    /// Append our Close and wait for the peer's. Any message being assembled is dropped.
    fn send_close(
        &mut self,
        code: CloseCode,
        reason: &str,
        limits: &Limits,
        now_ms: u64,
        out: &mut Vec<u8>,
    ) {
        encode_close(code, reason, out);
        self.state = SessionState::CloseSent;
        self.deadline_ms = now_ms.saturating_add(limits.close_timeout_ms);
        self.drop_message();
    }

    fn enter_closed(&mut self) {
        self.state = SessionState::Closed;
        self.in_frame = false;
        self.drop_message();
    }

    fn drop_message(&mut self) {
        self.assembling = Assembling::Nothing;
        self.utf8 = Utf8Validator::default();
        self.fragments = 0;
        self.buf = Vec::new();
    }

    /// While `CloseSent`: skip frames (read leniently, payloads untouched) until the peer's Close,
    /// which ends the exchange. Consumes all of `input`; an incomplete header is kept in `self.buf`.
    fn seek_close(&mut self, mut input: &[u8]) {
        while self.state == SessionState::CloseSent {
            if self.in_frame {
                let n = self.frame_remaining.min(input.len() as u64);
                self.frame_remaining -= n;
                input = &input[n as usize..];
                if self.frame_remaining > 0 {
                    return;
                }
                self.in_frame = false;
            }
            let Some((framing, used)) = self.read_framing_stitched(input) else {
                return;
            };
            input = &input[used..];
            if framing.opcode == OpCode::Close.to_u8() {
                self.enter_closed();
            } else {
                self.in_frame = true;
                self.frame_remaining = framing.payload_len;
            }
        }
    }

    /// Read a header that may have started in an earlier call (its first bytes in `self.buf`).
    /// Returns it and how many bytes of `input` it used; `None` (input stashed) if still incomplete.
    fn read_framing_stitched(&mut self, input: &[u8]) -> Option<(frame::RawFraming, usize)> {
        if self.buf.is_empty() {
            let framing = frame::read_framing(input);
            if framing.is_none() {
                self.buf.extend_from_slice(input);
            }
            return framing.map(|f| (f, f.header_len));
        }
        let carried = self.buf.len();
        let take = input.len().min(frame::MAX_CLIENT_HEADER - carried);
        self.buf.extend_from_slice(&input[..take]);
        let framing = frame::read_framing(&self.buf)?;
        self.buf.clear();
        Some((framing, framing.header_len - carried))
    }
}

/// Fast path: unmask a whole single-frame message in place and hand it out without copying.
fn deliver_in_place<F>(
    kind: Assembling,
    payload: &mut [u8],
    mask: [u8; 4],
    out: &mut Vec<u8>,
    on_message: &mut F,
) -> Result<(), ProtocolError>
where
    F: FnMut(Message<'_>, &mut Vec<u8>),
{
    apply_mask(payload, mask, 0);
    let message = match kind {
        Assembling::Text => {
            Message::Text(std::str::from_utf8(payload).map_err(|_| ProtocolError::InvalidUtf8)?)
        }
        _ => Message::Binary(payload),
    };
    on_message(message, out);
    Ok(())
}
