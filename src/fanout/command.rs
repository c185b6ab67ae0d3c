//! What clients send, sans-IO: subscribe and unsubscribe, in the seed's plain form (`EFERT,LUCK`) or as
//! JSON (`{"op":"subscribe","symbols":["EFERT","LUCK"]}`); and the control messages sent back.

use serde::Deserialize;

/// Longest symbol accepted.
pub const MAX_SYMBOL_LEN: usize = 32;

#[derive(Debug, PartialEq, Eq)]
pub enum ClientCommand {
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
    /// `{"op":"auth","token":"…"}`: a fresh token for a long-lived socket.
    Auth(String),
}

/// Why a client message was refused (the connection stays open).
#[derive(Debug, PartialEq, Eq)]
pub enum CommandError {
    /// Not a known operation, not valid JSON, binary, or empty.
    BadRequest(String),
    /// A symbol that cannot exist.
    BadSymbol(String),
    /// Over the per-connection cap.
    TooManySymbols { limit: usize },
    /// The client's token does not allow this symbol.
    Forbidden(String),
    /// Not an error: a ping the session already answered, queued only so it counts against the
    /// connection's message rate. Never sent to the client.
    Ping,
}

impl CommandError {
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::BadRequest(_) => "bad_request",
            CommandError::BadSymbol(_) => "bad_symbol",
            CommandError::TooManySymbols { .. } => "too_many_symbols",
            CommandError::Forbidden(_) => "forbidden_symbol",
            CommandError::Ping => "ping",
        }
    }

    pub fn message(&self) -> String {
        match self {
            CommandError::BadRequest(why) => why.clone(),
            CommandError::BadSymbol(s) => format!(
                "`{s}` is not a symbol (1-{MAX_SYMBOL_LEN} printable ASCII characters, no spaces, commas or quotes)"
            ),
            CommandError::TooManySymbols { limit } => {
                format!("at most {limit} symbols per connection")
            }
            CommandError::Forbidden(s) => format!("your token does not allow `{s}`"),
            CommandError::Ping => "ping".into(),
        }
    }

    /// `{"type":"error","error":"<code>","message":"…"}`
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(
            &serde_json::json!({"type": "error", "error": self.code(), "message": self.message()}),
        )
        .expect("serialising a JSON value")
    }
}

/// A symbol as the feed can publish it: 1–32 printable ASCII characters without whitespace, commas,
/// quotes or backslashes.
pub fn valid_symbol(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SYMBOL_LEN
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b',' | b'"' | b'\'' | b'\\'))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonCommand {
    op: String,
    #[serde(default)]
    symbols: Option<Vec<String>>,
    #[serde(default)]
    token: Option<String>,
}

/// Parse one text message from a client.
pub fn parse(text: &str) -> Result<ClientCommand, CommandError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(CommandError::BadRequest(
            "empty message: send symbols, e.g. EFERT,LUCK".into(),
        ));
    }
    if text.starts_with('{') {
        let cmd: JsonCommand = serde_json::from_str(text)
            .map_err(|e| CommandError::BadRequest(format!("invalid command JSON: {e}")))?;
        let symbols = |s: Option<Vec<String>>| match s {
            Some(list) => checked(list.into_iter()),
            None => Err(CommandError::BadRequest(format!(
                "`{}` needs a `symbols` list",
                cmd.op
            ))),
        };
        return match cmd.op.as_str() {
            "subscribe" => Ok(ClientCommand::Subscribe(symbols(cmd.symbols)?)),
            "unsubscribe" => Ok(ClientCommand::Unsubscribe(symbols(cmd.symbols)?)),
            "auth" => match cmd.token {
                Some(token) if !token.is_empty() => Ok(ClientCommand::Auth(token)),
                _ => Err(CommandError::BadRequest("`auth` needs a `token`".into())),
            },
            other => Err(CommandError::BadRequest(format!(
                "unknown op `{other}` (subscribe, unsubscribe, auth)"
            ))),
        };
    }
    checked(text.split(',').map(|s| s.trim().to_owned())).map(ClientCommand::Subscribe)
}

fn checked(symbols: impl Iterator<Item = String>) -> Result<Vec<String>, CommandError> {
    let mut out: Vec<String> = Vec::new();
    for s in symbols {
        if !valid_symbol(&s) {
            return Err(CommandError::BadSymbol(s));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    if out.is_empty() {
        return Err(CommandError::BadRequest("no symbols given".into()));
    }
    Ok(out)
}

/// `{"type":"subscribed","symbols":[…],"unknown":[…]}`: `unknown` lists symbols with no data yet.
pub fn subscribed_json(symbols: &[String], unknown: &[&str]) -> Vec<u8> {
    serde_json::to_vec(
        &serde_json::json!({"type": "subscribed", "symbols": symbols, "unknown": unknown}),
    )
    .expect("serialising a JSON value")
}

/// `{"type":"unsubscribed","symbols":[…]}`
pub fn unsubscribed_json(symbols: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"type": "unsubscribed", "symbols": symbols}))
        .expect("serialising a JSON value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_form_of_the_seed_client() {
        assert_eq!(
            parse("HASCOL"),
            Ok(ClientCommand::Subscribe(vec!["HASCOL".into()]))
        );
        assert_eq!(
            parse("EFERT, LUCK,EFERT"),
            Ok(ClientCommand::Subscribe(vec![
                "EFERT".into(),
                "LUCK".into()
            ]))
        );
    }

    #[test]
    fn json_form() {
        assert_eq!(
            parse(r#"{"op":"subscribe","symbols":["EFERT","LUCK"]}"#),
            Ok(ClientCommand::Subscribe(vec![
                "EFERT".into(),
                "LUCK".into()
            ]))
        );
        assert_eq!(
            parse(r#"{"op":"unsubscribe","symbols":["LUCK"]}"#),
            Ok(ClientCommand::Unsubscribe(vec!["LUCK".into()]))
        );
    }

    #[test]
    fn bad_messages_say_why() {
        assert_eq!(parse("").unwrap_err().code(), "bad_request");
        assert_eq!(parse("EFERT,,LUCK").unwrap_err().code(), "bad_symbol");
        assert_eq!(parse("has space").unwrap_err().code(), "bad_symbol");
        assert_eq!(parse(&"X".repeat(33)).unwrap_err().code(), "bad_symbol");
        assert_eq!(
            parse(r#"{"op":"buy","symbols":["A"]}"#).unwrap_err().code(),
            "bad_request"
        );
        assert_eq!(
            parse(r#"{"op":"subscribe"}"#).unwrap_err().code(),
            "bad_request"
        );
        assert_eq!(parse("{not json").unwrap_err().code(), "bad_request");
        let json: serde_json::Value =
            serde_json::from_slice(&parse("a b").unwrap_err().to_json()).unwrap();
        assert_eq!(json["type"], "error");
        assert_eq!(json["error"], "bad_symbol");
    }

    #[test]
    fn control_messages_have_a_type() {
        let v: serde_json::Value =
            serde_json::from_slice(&subscribed_json(&["A".into()], &["A"])).unwrap();
        assert_eq!(v["type"], "subscribed");
        assert_eq!(v["unknown"][0], "A");
    }
}
