//! Protocol errors, grouped by who is at fault, and their mapping to what goes on the wire.
//!
//! One place decides the close code of every error (`ProtocolError::close_code`) and the HTTP status
//! of every handshake failure (`handshake::HttpError::status`).

use super::CloseCode;

/// The peer broke RFC 6455 or one of our limits after the upgrade. Each variant maps to one close code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    // -- peer misbehaved: 1002 --
    UnmaskedFrame,
    ReservedBitsSet,
    ReservedOpcode(u8),
    ControlFrameTooLong,
    FragmentedControlFrame,
    UnexpectedContinuation,
    ExpectedContinuation,
    NonMinimalLength,
    LengthMsbSet,
    InvalidClosePayload,
    InvalidCloseCode(u16),
    // -- invalid payload: 1007 --
    InvalidUtf8,
    // -- over a limit: 1009 / 1008 --
    FrameTooBig,
    MessageTooBig,
    TooManyFragments,
}

impl ProtocolError {
    /// The close code sent to the peer for this error.
    pub fn close_code(self) -> CloseCode {
        use ProtocolError::*;
        match self {
            InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            FrameTooBig | MessageTooBig => CloseCode::MESSAGE_TOO_BIG,
            TooManyFragments => CloseCode::POLICY_VIOLATION,
            UnmaskedFrame
            | ReservedBitsSet
            | ReservedOpcode(_)
            | ControlFrameTooLong
            | FragmentedControlFrame
            | UnexpectedContinuation
            | ExpectedContinuation
            | NonMinimalLength
            | LengthMsbSet
            | InvalidClosePayload
            | InvalidCloseCode(_) => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// A short, stable reason used in logs and in the close frame's reason text.
    pub fn reason(self) -> &'static str {
        use ProtocolError::*;
        match self {
            UnmaskedFrame => "client frame not masked",
            ReservedBitsSet => "reserved bits set",
            ReservedOpcode(_) => "reserved opcode",
            ControlFrameTooLong => "control frame over 125 bytes",
            FragmentedControlFrame => "fragmented control frame",
            UnexpectedContinuation => "continuation without a message",
            ExpectedContinuation => "new data frame inside a fragmented message",
            NonMinimalLength => "non-minimal length encoding",
            LengthMsbSet => "64-bit length with MSB set",
            InvalidClosePayload => "invalid close payload",
            InvalidCloseCode(_) => "invalid close code",
            InvalidUtf8 => "invalid UTF-8",
            FrameTooBig => "frame too big",
            MessageTooBig => "message too big",
            TooManyFragments => "too many fragments",
        }
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ProtocolError {}
