//! Close codes (RFC 6455 §7.4) and close-frame payloads.

use super::ProtocolError;

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
    /// The connection's token expired (at the upgrade, or on an open socket without a refresh).
    pub const TOKEN_EXPIRED: CloseCode = CloseCode(4001);
    /// The upgrade's token is missing or invalid (not expired): retrying with it cannot help.
    pub const TOKEN_REFUSED: CloseCode = CloseCode(4003);

    /// Every code the server puts in a Close frame, with its meaning: the list `docs/protocol.md`
    /// ("Close codes") states, row for row (`tests/docs_consistent.rs` checks both directions, and that
    /// src/ sends no other). 1000 is the usual echo of a client's own close; the server echoes whatever
    /// valid code the client sent, and initiates a close only with the others.
    pub const SENT: &[(CloseCode, &str)] = &[
        (CloseCode::NORMAL, "normal closure"),
        (CloseCode::PROTOCOL_ERROR, "protocol error"),
        (CloseCode::INVALID_PAYLOAD, "invalid payload"),
        (CloseCode::POLICY_VIOLATION, "policy violation"),
        (CloseCode::MESSAGE_TOO_BIG, "message too big"),
        (CloseCode::SERVICE_RESTART, "service restart"),
        (CloseCode::TRY_AGAIN_LATER, "try again later"),
        (CloseCode::TOKEN_EXPIRED, "token expired"),
        (CloseCode::TOKEN_REFUSED, "token refused"),
    ];

    /// May a peer send this code in a Close frame? (RFC 6455 §7.4.1/§7.4.2 and the IANA registry:
    /// 1000–1003, 1007–1014 and 3000–4999; never 1004–1006, 1015, <1000, 1016–2999, ≥5000.)
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// Validate the payload of a Close frame received from the peer (RFC 6455 §5.5.1, §7.1.5).
///
/// Returns the peer's code, or `None` for an empty payload (no code given). A 1-byte payload, a code
/// that may not appear on the wire, or a reason that is not UTF-8 is a protocol error.
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseCode>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::InvalidClosePayload),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Some(code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_validity_matches_the_registry() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1011, 1012, 1013, 1014, 3000, 4000, 4999,
        ] {
            assert!(CloseCode(ok).is_valid_on_wire(), "{ok} should be valid");
        }
        for bad in [
            0,
            999,
            1004,
            1005,
            1006,
            1015,
            1016,
            2000,
            2999,
            5000,
            u16::MAX,
        ] {
            assert!(
                !CloseCode(bad).is_valid_on_wire(),
                "{bad} should be invalid"
            );
        }
    }

    #[test]
    fn sent_codes_are_valid_distinct_and_named() {
        let mut codes: Vec<u16> = CloseCode::SENT.iter().map(|(c, _)| c.0).collect();
        assert!(
            CloseCode::SENT
                .iter()
                .all(|(c, meaning)| c.is_valid_on_wire() && !meaning.is_empty())
        );
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), CloseCode::SENT.len());
    }

    #[test]
    fn empty_close_payload_is_valid() {
        assert_eq!(parse_close_payload(&[]), Ok(None));
    }

    #[test]
    fn one_byte_close_payload_is_invalid() {
        assert_eq!(
            parse_close_payload(&[0x03]),
            Err(ProtocolError::InvalidClosePayload)
        );
    }

    #[test]
    fn close_code_and_reason_are_checked() {
        assert_eq!(
            parse_close_payload(&[0x03, 0xE8]),
            Ok(Some(CloseCode::NORMAL))
        );
        assert_eq!(
            parse_close_payload(b"\x03\xE8bye \xE2\x9C\x93"),
            Ok(Some(CloseCode::NORMAL))
        );
        assert_eq!(
            parse_close_payload(&[0x03, 0xED]),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
        assert_eq!(
            parse_close_payload(b"\x03\xE8\xFF"),
            Err(ProtocolError::InvalidUtf8)
        );
    }
}
