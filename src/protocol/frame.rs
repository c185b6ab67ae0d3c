//! Frame header parsing and server-side frame encoding (RFC 6455 §5.2).

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
}

/// The longest server frame header: 2 bytes + 8 bytes of extended length (servers never mask).
pub const MAX_SERVER_HEADER: usize = 10;

/// Write an unmasked server frame header for a payload of `len` bytes into `out`; returns its length
/// (2, 4 or 10: the minimal encoding).
pub fn encode_header(fin: bool, opcode: OpCode, len: u64, out: &mut [u8; MAX_SERVER_HEADER]) -> usize {
    let _ = (fin, opcode, len, out);
    todo!()
}

/// Append a complete unfragmented server frame (header + payload) to `out`.
pub fn encode_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    let _ = (opcode, payload, out);
    todo!()
}

/// Append a Close frame with `code` and `reason` (reason truncated on a char boundary so the payload
/// stays ≤ 125 bytes).
pub fn encode_close(code: super::CloseCode, reason: &str, out: &mut Vec<u8>) {
    let _ = (code, reason, out);
    todo!()
}
