//! What clients send, sans-IO: subscribe and unsubscribe, in the seed's plain form (`EFERT,LUCK`) or as
//! JSON (`{"op":"subscribe","symbols":["EFERT","LUCK"]}`); and the control messages sent back.
//!
//! Cost model: parsing is linear in the message and never materialises more than `max_symbols + 1`
//! symbols, whatever the message lists. The cap is applied while reading (the `max_symbols + 1`-th entry
//! ends the parse with `too_many_symbols`), and duplicates are removed with a hash set, so a message
//! of any size costs O(its length) and at most `max_symbols + 1` small allocations.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Longest symbol accepted.
pub const MAX_SYMBOL_LEN: usize = 32;

#[derive(Debug, PartialEq, Eq)]
pub enum ClientCommand {
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
    /// `{"op":"auth","token":"…"}`: a fresh token for a long-lived socket.
    Auth(String),
    /// `{"op":"ping"}`: an application-level liveness check (browsers cannot see WebSocket pings),
    /// answered with [`pong_json`].
    Ping,
}

/// Why a client message was refused (the connection stays open).
#[derive(Debug, PartialEq, Eq)]
pub enum CommandError {
    /// Not a known operation, not valid JSON, binary, or empty.
    BadRequest(String),
    /// A symbol that cannot exist.
    BadSymbol(String),
    /// Over the per-connection cap (also: one message listing more symbols than the cap).
    TooManySymbols { limit: usize },
    /// The client's token does not allow this symbol.
    Forbidden(String),
}

impl CommandError {
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::BadRequest(_) => "bad_request",
            CommandError::BadSymbol(_) => "bad_symbol",
            CommandError::TooManySymbols { .. } => "too_many_symbols",
            CommandError::Forbidden(_) => "forbidden_symbol",
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

/// The JSON envelope; `symbols` is kept as raw text (validated, not materialised) and walked with the
/// cap by `SymbolsSeed`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonCommand<'a> {
    op: String,
    #[serde(default, borrow)]
    symbols: Option<&'a RawValue>,
    #[serde(default)]
    token: Option<String>,
}

/// A bad symbol shown back to the client is cut to this many characters (the message stays small).
const SHOWN_SYMBOL_CHARS: usize = MAX_SYMBOL_LEN + 1;

fn bad_symbol(s: &str) -> CommandError {
    CommandError::BadSymbol(s.chars().take(SHOWN_SYMBOL_CHARS).collect())
}

/// Parse one text message from a client; a message listing more than `max_symbols` symbols is refused
/// with `too_many_symbols` as soon as the `max_symbols + 1`-th is read.
pub fn parse(text: &str, max_symbols: usize) -> Result<ClientCommand, CommandError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(CommandError::BadRequest(
            "empty message: send symbols, e.g. EFERT,LUCK".into(),
        ));
    }
    if text.starts_with('{') {
        return parse_json(text, max_symbols);
    }
    // The plain form: symbols separated by commas; spaces around them and empty entries (`A,,B`, a
    // trailing comma) are skipped. An entry with a space inside is not a symbol list at all (`not json {`,
    // `EFERT LUCK`): a request error that says how to write one.
    let mut symbols = Capped::new(max_symbols);
    for s in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if s.contains(char::is_whitespace) {
            return Err(CommandError::BadRequest(shown(
                "",
                &format_args!(
                    "not symbols (separated by commas, e.g. EFERT,LUCK) nor a JSON command \
                     ({{\"op\":\"subscribe\",\"symbols\":[\"EFERT\"]}}): `{text}`"
                ),
            )));
        }
        symbols.push(s)?;
    }
    symbols.finish().map(ClientCommand::Subscribe)
}

fn parse_json(text: &str, max_symbols: usize) -> Result<ClientCommand, CommandError> {
    let cmd: JsonCommand = serde_json::from_str(text)
        .map_err(|e| CommandError::BadRequest(shown("invalid command JSON: ", &e)))?;
    let symbols = || match cmd.symbols {
        Some(raw) => read_symbols(raw, max_symbols),
        None => Err(CommandError::BadRequest(format!(
            "`{}` needs a `symbols` list",
            cmd.op
        ))),
    };
    match cmd.op.as_str() {
        "subscribe" => Ok(ClientCommand::Subscribe(symbols()?)),
        "unsubscribe" => Ok(ClientCommand::Unsubscribe(symbols()?)),
        "ping" if cmd.symbols.is_none() && cmd.token.is_none() => Ok(ClientCommand::Ping),
        "ping" => Err(CommandError::BadRequest(
            "`ping` takes no `symbols` or `token`".into(),
        )),
        "auth" => match cmd.token {
            Some(token) if !token.is_empty() => Ok(ClientCommand::Auth(token)),
            _ => Err(CommandError::BadRequest("`auth` needs a `token`".into())),
        },
        other => Err(CommandError::BadRequest(format!(
            "unknown op `{}` (subscribe, unsubscribe, auth, ping)",
            other.chars().take(SHOWN_SYMBOL_CHARS).collect::<String>()
        ))),
    }
}

/// Longest parser error quoted back to a client: serde's messages quote the offending key or value
/// whole, which would make the reply (and its cost) as large as the message.
const SHOWN_ERROR_CHARS: usize = 160;

/// `prefix` and the start of `err`'s message, cut to `SHOWN_ERROR_CHARS` while it is written (never
/// formatted whole first).
fn shown(prefix: &str, err: &impl std::fmt::Display) -> String {
    struct Cut(String, usize);
    impl std::fmt::Write for Cut {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            for c in s.chars() {
                if self.1 == 0 {
                    return Err(std::fmt::Error);
                }
                self.0.push(c);
                self.1 -= 1;
            }
            Ok(())
        }
    }
    let mut out = Cut(
        String::with_capacity(prefix.len() + SHOWN_ERROR_CHARS),
        SHOWN_ERROR_CHARS,
    );
    out.0.push_str(prefix);
    if std::fmt::write(&mut out, format_args!("{err}")).is_err() {
        out.0.push('…');
    }
    out.0
}

/// Walk a raw `symbols` array, materialising at most `max + 1` strings.
fn read_symbols(raw: &RawValue, max: usize) -> Result<Vec<String>, CommandError> {
    let mut symbols = Capped::new(max);
    let mut refused = None;
    let seed = SymbolsSeed {
        symbols: &mut symbols,
        refused: &mut refused,
    };
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let walked = seed.deserialize(&mut de);
    if let Some(err) = refused {
        return Err(err);
    }
    walked.map_err(|e| {
        CommandError::BadRequest(shown("`symbols` must be a list of strings: ", &e))
    })?;
    symbols.finish()
}

/// Symbols read so far: capped, de-duplicated in O(1) each, in first-seen order.
struct Capped {
    max: usize,
    seen: usize,
    list: Vec<String>,
    set: HashSet<String>,
}

impl Capped {
    fn new(max: usize) -> Capped {
        Capped {
            max,
            seen: 0,
            list: Vec::new(),
            set: HashSet::new(),
        }
    }

    /// Take one listed symbol: checked, counted (duplicates included) and kept if new.
    fn push(&mut self, s: &str) -> Result<(), CommandError> {
        if !valid_symbol(s) {
            return Err(bad_symbol(s));
        }
        self.seen += 1;
        if self.seen > self.max {
            return Err(CommandError::TooManySymbols { limit: self.max });
        }
        if !self.set.contains(s) {
            self.set.insert(s.to_owned());
            self.list.push(s.to_owned());
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<String>, CommandError> {
        if self.list.is_empty() {
            return Err(CommandError::BadRequest("no symbols given".into()));
        }
        Ok(self.list)
    }
}

/// Reads a JSON array of strings into `Capped`, stopping at the first refused entry (recorded in
/// `refused`; the walk then ends with a generic error that the caller replaces by it).
struct SymbolsSeed<'s> {
    symbols: &'s mut Capped,
    refused: &'s mut Option<CommandError>,
}

impl<'de> DeserializeSeed<'de> for SymbolsSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for SymbolsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of symbols")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        // `Cow` borrows from the message when the string has no escapes: no allocation per entry read.
        while let Some(Symbol(s)) = seq.next_element::<Symbol>()? {
            if let Err(err) = self.symbols.push(&s) {
                *self.refused = Some(err);
                return Err(serde::de::Error::custom("refused"));
            }
        }
        Ok(())
    }
}

/// One entry of a `symbols` array, borrowed from the message when it can be.
struct Symbol<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Symbol<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Symbol<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a symbol string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Symbol<'de>, E> {
                Ok(Symbol(s.into()))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Symbol<'de>, E> {
                // An escaped string: only its first characters matter (longer is refused anyway).
                Ok(Symbol(
                    s.chars()
                        .take(SHOWN_SYMBOL_CHARS)
                        .collect::<String>()
                        .into(),
                ))
            }
        }
        de.deserialize_str(V)
    }
}

/// `{"type":"subscribed","symbols":[…],"unknown":[…]}`: `unknown` lists symbols with no data yet.
pub fn subscribed_json(symbols: &[String], unknown: &[&str]) -> Vec<u8> {
    serde_json::to_vec(
        &serde_json::json!({"type": "subscribed", "symbols": symbols, "unknown": unknown}),
    )
    .expect("serialising a JSON value")
}

/// `{"type":"pong"}`: the answer to `{"op":"ping"}`.
pub fn pong_json() -> Vec<u8> {
    br#"{"type":"pong"}"#.to_vec()
}

/// `{"type":"unsubscribed","symbols":[…]}`
pub fn unsubscribed_json(symbols: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"type": "unsubscribed", "symbols": symbols}))
        .expect("serialising a JSON value")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: usize = 256;

    #[test]
    fn parser_errors_are_quoted_short() {
        let key = "k".repeat(5000);
        let err = parse(&format!("{{\"{key}\":1}}"), CAP).unwrap_err();
        let msg = err.message();
        assert_eq!(err.code(), "bad_request");
        assert!(
            msg.starts_with("invalid command JSON: unknown field"),
            "{msg}"
        );
        assert!(
            msg.chars().count() <= "invalid command JSON: ".len() + SHOWN_ERROR_CHARS + 1,
            "{} chars",
            msg.len()
        );
        assert!(msg.ends_with('…'));
        let short = parse("{not json", CAP).unwrap_err().message();
        assert!(!short.ends_with('…'), "{short}");
    }

    #[test]
    fn plain_form_of_the_seed_client() {
        assert_eq!(
            parse("HASCOL", CAP),
            Ok(ClientCommand::Subscribe(vec!["HASCOL".into()]))
        );
        assert_eq!(
            parse("EFERT, LUCK,EFERT", CAP),
            Ok(ClientCommand::Subscribe(vec![
                "EFERT".into(),
                "LUCK".into()
            ]))
        );
    }

    #[test]
    fn json_form() {
        assert_eq!(
            parse(
                r#"{"op":"subscribe","symbols":["EFERT","LUCK","EFERT"]}"#,
                CAP
            ),
            Ok(ClientCommand::Subscribe(vec![
                "EFERT".into(),
                "LUCK".into()
            ]))
        );
        assert_eq!(
            parse(r#"{"op":"unsubscribe","symbols":["LUCK"]}"#, CAP),
            Ok(ClientCommand::Unsubscribe(vec!["LUCK".into()]))
        );
        assert_eq!(
            parse(r#"{"op":"subscribe","symbols":["\u0041BC"]}"#, CAP),
            Ok(ClientCommand::Subscribe(vec!["ABC".into()])),
            "escaped strings are read too"
        );
        assert_eq!(
            parse(r#" {"token":"a.b.c","op":"auth"} "#, CAP),
            Ok(ClientCommand::Auth("a.b.c".into()))
        );
    }

    #[test]
    fn bad_messages_say_why() {
        assert_eq!(parse("", CAP).unwrap_err().code(), "bad_request");
        assert_eq!(
            parse(" EFERT,,LUCK, ", CAP),
            Ok(ClientCommand::Subscribe(vec![
                "EFERT".into(),
                "LUCK".into()
            ])),
            "empty entries are skipped"
        );
        assert_eq!(parse(",,", CAP).unwrap_err().code(), "bad_request");
        for prose in ["has space", "not json {", "EFERT LUCK", "A,B C"] {
            let err = parse(prose, CAP).unwrap_err();
            assert_eq!(err.code(), "bad_request", "{prose}");
            assert!(err.message().contains("EFERT,LUCK"), "{}", err.message());
        }
        assert_eq!(parse("A'B", CAP).unwrap_err().code(), "bad_symbol");
        assert_eq!(
            parse(&"X".repeat(33), CAP).unwrap_err().code(),
            "bad_symbol"
        );
        for bad in [
            r#"{"op":"buy","symbols":["A"]}"#,
            r#"{"op":"subscribe"}"#,
            r#"{"op":"subscribe","symbols":"A"}"#,
            r#"{"op":"subscribe","symbols":["A",1]}"#,
            r#"{"op":"subscribe","symbols":[]}"#,
            r#"{"op":"subscribe","symbols":["A"],"extra":1}"#,
            r#"{"op":"auth"}"#,
            "{not json",
        ] {
            assert_eq!(parse(bad, CAP).unwrap_err().code(), "bad_request", "{bad}");
        }
        assert_eq!(
            parse(r#"{"op":"subscribe","symbols":["A","b c"]}"#, CAP)
                .unwrap_err()
                .code(),
            "bad_symbol"
        );
        let json: serde_json::Value =
            serde_json::from_slice(&parse("a\\b", CAP).unwrap_err().to_json()).unwrap();
        assert_eq!(json["type"], "error");
        assert_eq!(json["error"], "bad_symbol");
    }

    fn listing(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("S{i}")).collect()
    }

    #[test]
    fn the_cap_is_applied_while_reading_in_both_forms() {
        let at_cap = listing(4);
        let over = listing(5);
        assert_eq!(
            parse(&at_cap.join(","), 4),
            Ok(ClientCommand::Subscribe(at_cap.clone()))
        );
        assert_eq!(
            parse(&over.join(","), 4),
            Err(CommandError::TooManySymbols { limit: 4 })
        );
        let json =
            |list: &[String]| serde_json::json!({"op": "subscribe", "symbols": list}).to_string();
        assert_eq!(
            parse(&json(&at_cap), 4),
            Ok(ClientCommand::Subscribe(at_cap))
        );
        assert_eq!(
            parse(&json(&over), 4),
            Err(CommandError::TooManySymbols { limit: 4 })
        );
        // Refused at entry cap+1, before the rest is even looked at (the bad 7th is never reached).
        assert_eq!(
            parse("A,B,C,D,E,F,bad symbol", 4),
            Err(CommandError::TooManySymbols { limit: 4 })
        );
        // Duplicates count: the cap bounds the entries read, not only the distinct ones.
        assert_eq!(
            parse(&["A"; 5].join(","), 4),
            Err(CommandError::TooManySymbols { limit: 4 })
        );
    }

    #[test]
    fn a_huge_listing_materialises_at_most_cap_plus_one_symbols() {
        // 18k distinct symbols in 64 KB-class messages: refused at the 257th, whatever follows.
        let many = listing(18_000);
        let plain = parse(&many.join(","), CAP);
        assert_eq!(plain, Err(CommandError::TooManySymbols { limit: CAP }));
        let json = serde_json::json!({"op": "subscribe", "symbols": many}).to_string();
        assert_eq!(
            parse(&json, CAP),
            Err(CommandError::TooManySymbols { limit: CAP })
        );
        // The walk stops at entry cap+1: a bad entry after it is never looked at.
        let mut past = many[..CAP + 1].to_vec();
        past.push("bad symbol".into());
        let json = serde_json::json!({"op": "subscribe", "symbols": past}).to_string();
        assert_eq!(
            parse(&json, CAP),
            Err(CommandError::TooManySymbols { limit: CAP })
        );
    }

    #[test]
    fn long_bad_symbols_are_echoed_short() {
        let long = "y".repeat(10_000);
        let Err(CommandError::BadSymbol(shown)) = parse(&long, CAP) else {
            panic!("a 10,000-character symbol is bad");
        };
        assert_eq!(shown.len(), SHOWN_SYMBOL_CHARS);
        let json = format!(r#"{{"op":"subscribe","symbols":["{long}"]}}"#);
        let Err(CommandError::BadSymbol(shown)) = parse(&json, CAP) else {
            panic!("a 10,000-character symbol is bad");
        };
        assert_eq!(shown.len(), SHOWN_SYMBOL_CHARS);
    }

    #[test]
    fn an_application_ping_is_a_command_answered_with_a_pong() {
        assert_eq!(parse(r#"{"op":"ping"}"#, CAP), Ok(ClientCommand::Ping));
        assert_eq!(
            parse(r#" { "op" : "ping" } "#, CAP),
            Ok(ClientCommand::Ping)
        );
        for bad in [
            r#"{"op":"ping","symbols":["A"]}"#,
            r#"{"op":"ping","token":"t"}"#,
            r#"{"op":"ping","x":1}"#,
        ] {
            assert_eq!(parse(bad, CAP).unwrap_err().code(), "bad_request", "{bad}");
        }
        // The plain form is a symbol list: `ping` there subscribes to the symbol PING's spelling.
        assert_eq!(
            parse("ping", CAP),
            Ok(ClientCommand::Subscribe(vec!["ping".into()]))
        );
        let v: serde_json::Value = serde_json::from_slice(&pong_json()).unwrap();
        assert_eq!(v, serde_json::json!({"type": "pong"}));
    }

    #[test]
    fn control_messages_have_a_type() {
        let v: serde_json::Value =
            serde_json::from_slice(&subscribed_json(&["A".into()], &["A"])).unwrap();
        assert_eq!(v["type"], "subscribed");
        assert_eq!(v["unknown"][0], "A");
    }
}
