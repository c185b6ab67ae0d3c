//! Close codes (RFC 6455 §7.4) and close-frame payloads.

/// A WebSocket close status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    pub const NORMAL: CloseCode = CloseCode(1000);
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);

    /// May a peer send this code in a Close frame? (RFC 6455 §7.4.1/§7.4.2 and the IANA registry:
    /// 1000–1003, 1007–1014 and 3000–4999; never 1004–1006, 1015, <1000, 1016–2999, ≥5000.)
    pub fn is_valid_on_wire(self) -> bool {
        todo!()
    }
}
