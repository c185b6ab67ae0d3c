//! The control channel (`{prefix}control`) and the control messages sent to clients, sans-IO.

use std::fmt;

use serde::Deserialize;

use super::tick::valid_symbol;

/// An operation published on the control channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlOp {
    /// `{"op":"retire","symbol":"X"}`: the symbol is gone (already deleted from the hash).
    Retire(String),
}

/// Why a control message was ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// Not a JSON object with a string `op`.
    Malformed(String),
    /// An `op` this server does not know.
    UnknownOp(String),
    /// `retire` without a valid `symbol`.
    BadSymbol(String),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Malformed(e) => write!(f, "malformed control message: {e}"),
            ControlError::UnknownOp(op) => write!(f, "unknown control op {op:?}"),
            ControlError::BadSymbol(s) => write!(f, "retire: {s:?} is not a valid symbol"),
        }
    }
}

#[derive(Deserialize)]
struct RawControl {
    op: String,
    symbol: Option<String>,
}

/// Parse one message of the control channel.
pub fn parse_control(payload: &[u8]) -> Result<ControlOp, ControlError> {
    let msg: RawControl =
        serde_json::from_slice(payload).map_err(|e| ControlError::Malformed(e.to_string()))?;
    match msg.op.as_str() {
        "retire" => match msg.symbol {
            Some(s) if valid_symbol(&s) => Ok(ControlOp::Retire(s)),
            Some(s) => Err(ControlError::BadSymbol(s)),
            None => Err(ControlError::BadSymbol(String::new())),
        },
        _ => Err(ControlError::UnknownOp(msg.op)),
    }
}

/// `{"op":"retire","symbol":"X"}`, as `ringcast retire` publishes it. `symbol` must be valid (it then
/// needs no escaping).
pub fn retire_message(symbol: &str) -> String {
    debug_assert!(valid_symbol(symbol));
    format!(r#"{{"op":"retire","symbol":"{symbol}"}}"#)
}

/// `{"type":"retired","symbol":"X"}`, sent to the symbol's subscribers.
pub fn retired_payload(symbol: &str) -> String {
    debug_assert!(valid_symbol(symbol));
    format!(r#"{{"type":"retired","symbol":"{symbol}"}}"#)
}

/// `{"type":"feed","status":"up"}` or `…"down"}`, sent to every connection.
pub fn feed_status_payload(up: bool) -> &'static str {
    if up {
        r#"{"type":"feed","status":"up"}"#
    } else {
        r#"{"type":"feed","status":"down"}"#
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retire() {
        assert_eq!(
            parse_control(retire_message("EFERT").as_bytes()),
            Ok(ControlOp::Retire("EFERT".into()))
        );
        assert_eq!(
            parse_control(br#"{"op":"retire","symbol":"A B"}"#),
            Err(ControlError::BadSymbol("A B".into()))
        );
        assert!(matches!(
            parse_control(br#"{"op":"halt"}"#),
            Err(ControlError::UnknownOp(_))
        ));
        assert!(matches!(
            parse_control(b"retire X"),
            Err(ControlError::Malformed(_))
        ));
        let v: serde_json::Value = serde_json::from_str(&retired_payload("LUCK")).unwrap();
        assert_eq!(v, serde_json::json!({"type":"retired","symbol":"LUCK"}));
        let v: serde_json::Value = serde_json::from_str(feed_status_payload(false)).unwrap();
        assert_eq!(v, serde_json::json!({"type":"feed","status":"down"}));
    }
}
