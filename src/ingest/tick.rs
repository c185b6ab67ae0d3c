//! Ticks as published on Redis, sans-IO: validate a pub/sub message (one tick object or a JSON array of
//! them) and find each tick's symbol and exact raw bytes.
//!
//! The bytes a subscriber receives are the tick exactly as published: for an array message each
//! element's raw text (as `serde_json::value::RawValue` sees it), for a single-object message the
//! message with its surrounding whitespace trimmed. Nothing is re-serialised.

use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::fanout::Symbol;

/// Longest symbol accepted, in bytes (the same rule as clients' subscribe messages).
pub use crate::fanout::command::MAX_SYMBOL_LEN;

/// Default for the largest single tick accepted, in bytes.
pub const DEFAULT_MAX_TICK_BYTES: usize = 16 * 1024;

/// One valid tick of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedTick<'a> {
    /// The tick's `symbol`.
    pub symbol: Symbol,
    /// The tick object exactly as published.
    pub raw: &'a [u8],
    /// The tick's numeric `ts` field (publish time), converted to microseconds since the epoch, if it
    /// has one: a value in milliseconds, microseconds or nanoseconds is recognised by its magnitude.
    pub ts_us: Option<u64>,
}

/// Why a tick was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BadReason {
    /// The message is not valid JSON.
    NotJson,
    /// The message (or an element of the array) is not a JSON object.
    NotObject,
    /// The object has no `symbol` field (or it is `null`).
    NoSymbol,
    /// `symbol` is not a string, not a valid symbol, or given twice.
    BadSymbol,
    /// The tick is larger than the limit.
    TooLarge,
}

impl BadReason {
    /// Every reason, in the order of their `index`.
    pub const ALL: [BadReason; 5] = [
        BadReason::NotJson,
        BadReason::NotObject,
        BadReason::NoSymbol,
        BadReason::BadSymbol,
        BadReason::TooLarge,
    ];

    /// A dense index, for per-reason counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// A short stable name (`not_json`, …) for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            BadReason::NotJson => "not_json",
            BadReason::NotObject => "not_object",
            BadReason::NoSymbol => "no_symbol",
            BadReason::BadSymbol => "bad_symbol",
            BadReason::TooLarge => "too_large",
        }
    }
}

impl fmt::Display for BadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BadReason::NotJson => "not valid JSON",
            BadReason::NotObject => "not a JSON object",
            BadReason::NoSymbol => "no `symbol` field",
            BadReason::BadSymbol => "`symbol` is not a valid symbol",
            BadReason::TooLarge => "tick too large",
        })
    }
}

/// A refused tick: where it was in the message, why, and a detail for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTick {
    /// Position in an array message (0 for a single-object message or a message that is not JSON).
    pub index: usize,
    pub reason: BadReason,
    /// E.g. the JSON error, the offending symbol or the size.
    pub detail: String,
}

impl fmt::Display for BadTick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tick #{}: {}", self.index + 1, self.reason)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// One rule for what a symbol is, shared by the feed and the clients' subscribe messages.
pub use crate::fanout::command::valid_symbol;

/// The only fields of a tick the server looks at; every other field is carried through untouched.
#[derive(Deserialize)]
struct TickHead<'a> {
    #[serde(borrow)]
    symbol: Option<&'a RawValue>,
    #[serde(borrow)]
    ts: Option<&'a RawValue>,
}

/// Split a published message into its valid ticks (in order) and the refused ones. A bad element of an
/// array does not spoil the good ones. Each tick is at most `max_tick_bytes` long.
pub fn parse_message(payload: &[u8], max_tick_bytes: usize) -> (Vec<ParsedTick<'_>>, Vec<BadTick>) {
    let text = payload.trim_ascii();
    let mut good = Vec::new();
    let mut bad = Vec::new();
    if text.first() == Some(&b'[') {
        match serde_json::from_slice::<Vec<&RawValue>>(text) {
            Ok(elements) => {
                good.reserve(elements.len());
                for (index, element) in elements.into_iter().enumerate() {
                    match parse_tick(element.get().as_bytes(), max_tick_bytes) {
                        Ok(tick) => good.push(tick),
                        Err((reason, detail)) => bad.push(BadTick {
                            index,
                            reason,
                            detail,
                        }),
                    }
                }
            }
            Err(e) => bad.push(BadTick {
                index: 0,
                reason: BadReason::NotJson,
                detail: e.to_string(),
            }),
        }
    } else {
        match parse_tick(text, max_tick_bytes) {
            Ok(tick) => good.push(tick),
            Err((reason, detail)) => bad.push(BadTick {
                index: 0,
                reason,
                detail,
            }),
        }
    }
    (good, bad)
}

/// Validate one tick (already trimmed).
fn parse_tick(raw: &[u8], max_tick_bytes: usize) -> Result<ParsedTick<'_>, (BadReason, String)> {
    if raw.len() > max_tick_bytes {
        return Err((
            BadReason::TooLarge,
            format!("{} bytes, limit {max_tick_bytes}", raw.len()),
        ));
    }
    if raw.first() != Some(&b'{') {
        // Either another JSON value or not JSON at all.
        return match serde_json::from_slice::<serde::de::IgnoredAny>(raw) {
            Ok(_) => Err((BadReason::NotObject, String::new())),
            Err(e) => Err((BadReason::NotJson, e.to_string())),
        };
    }
    let head: TickHead<'_> = serde_json::from_slice(raw).map_err(|e| {
        if e.is_data() {
            // The JSON is fine but the fields are not: only a repeated `symbol` or `ts` gets here.
            (BadReason::BadSymbol, e.to_string())
        } else {
            (BadReason::NotJson, e.to_string())
        }
    })?;
    let Some(symbol) = head.symbol else {
        return Err((BadReason::NoSymbol, String::new()));
    };
    let symbol: String = serde_json::from_str(symbol.get()).map_err(|_| {
        (
            BadReason::BadSymbol,
            format!("not a string: {}", symbol.get()),
        )
    })?;
    if !valid_symbol(&symbol) {
        return Err((BadReason::BadSymbol, format!("{symbol:?}")));
    }
    Ok(ParsedTick {
        symbol: symbol.into(),
        raw,
        ts_us: head.ts.and_then(|ts| timestamp_us(ts.get())),
    })
}

/// A numeric timestamp since the epoch in ms, µs or ns (told apart by magnitude), in µs.
fn timestamp_us(text: &str) -> Option<u64> {
    let value: u64 = match text.parse::<u64>() {
        Ok(n) => n,
        Err(_) => {
            let f: f64 = text.parse().ok()?;
            if !f.is_finite() || f < 1.0 || f >= u64::MAX as f64 {
                return None;
            }
            f as u64
        }
    };
    match value {
        0 => None,
        v if v >= 100_000_000_000_000_000 => Some(v / 1_000),
        v if v >= 100_000_000_000_000 => Some(v),
        v => v.checked_mul(1_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = DEFAULT_MAX_TICK_BYTES;

    fn reasons(bad: &[BadTick]) -> Vec<(usize, BadReason)> {
        bad.iter().map(|b| (b.index, b.reason)).collect()
    }

    #[test]
    fn single_object_is_trimmed_but_otherwise_untouched() {
        let msg = b"  \n{\"symbol\":\"EFERT\", \"price\" : \"55.00\",\"x\":{\"y\":[1,2]}}\r\n ";
        let (good, bad) = parse_message(msg, MAX);
        assert!(bad.is_empty());
        assert_eq!(good.len(), 1);
        assert_eq!(&*good[0].symbol, "EFERT");
        assert_eq!(
            good[0].raw,
            &b"{\"symbol\":\"EFERT\", \"price\" : \"55.00\",\"x\":{\"y\":[1,2]}}"[..]
        );
    }

    #[test]
    fn array_elements_keep_their_exact_text_and_order() {
        let msg = br#"[ {"symbol":"EFERT","open":"50.10"} ,
            {"price": "405.00",  "symbol":"LUCK"}]"#;
        let (good, bad) = parse_message(msg, MAX);
        assert!(bad.is_empty());
        let got: Vec<(&str, &[u8])> = good.iter().map(|t| (&*t.symbol, t.raw)).collect();
        assert_eq!(
            got,
            vec![
                ("EFERT", &br#"{"symbol":"EFERT","open":"50.10"}"#[..]),
                ("LUCK", &br#"{"price": "405.00",  "symbol":"LUCK"}"#[..]),
            ]
        );
    }

    #[test]
    fn bad_elements_do_not_spoil_good_ones() {
        let msg = br#"[{"symbol":"A"}, 42, {"price":"1"}, {"symbol":"has space"}, {"symbol":7},
            {"symbol":null}, {"symbol":"B","symbol":"C"}, [], {"symbol":"D"}]"#;
        let (good, bad) = parse_message(msg, MAX);
        let symbols: Vec<&str> = good.iter().map(|t| &*t.symbol).collect();
        assert_eq!(symbols, ["A", "D"]);
        assert_eq!(
            reasons(&bad),
            vec![
                (1, BadReason::NotObject),
                (2, BadReason::NoSymbol),
                (3, BadReason::BadSymbol),
                (4, BadReason::BadSymbol),
                (5, BadReason::NoSymbol),
                (6, BadReason::BadSymbol),
                (7, BadReason::NotObject),
            ]
        );
        assert_eq!(bad[1].to_string(), "tick #3: no `symbol` field");
    }

    #[test]
    fn not_json() {
        for msg in [
            &b""[..],
            b"   ",
            b"{",
            b"{\"symbol\":\"A\"} trailing",
            b"[{\"symbol\":\"A\"},",
            b"EFERT",
        ] {
            let (good, bad) = parse_message(msg, MAX);
            assert!(good.is_empty(), "{msg:?}");
            assert_eq!(reasons(&bad), vec![(0, BadReason::NotJson)], "{msg:?}");
        }
        let (_, bad) = parse_message(b"\xff{}", MAX);
        assert_eq!(bad[0].reason, BadReason::NotJson);
    }

    #[test]
    fn not_object() {
        for msg in [&b"42"[..], b"\"EFERT\"", b"null", b"true"] {
            let (good, bad) = parse_message(msg, MAX);
            assert!(good.is_empty());
            assert_eq!(reasons(&bad), vec![(0, BadReason::NotObject)], "{msg:?}");
        }
        let (good, bad) = parse_message(b"[]", MAX);
        assert!(good.is_empty() && bad.is_empty());
    }

    #[test]
    fn too_large() {
        let big = format!(r#"{{"symbol":"A","pad":"{}"}}"#, "x".repeat(100));
        let (good, bad) = parse_message(big.as_bytes(), 64);
        assert!(good.is_empty());
        assert_eq!(reasons(&bad), vec![(0, BadReason::TooLarge)]);
        let msg = format!(r#"[{{"symbol":"B"}},{big}]"#);
        let (good, bad) = parse_message(msg.as_bytes(), 64);
        assert_eq!(good.len(), 1);
        assert_eq!(reasons(&bad), vec![(1, BadReason::TooLarge)]);
        let (good, _) = parse_message(big.as_bytes(), big.len());
        assert_eq!(good.len(), 1);
    }

    #[test]
    fn symbols() {
        for ok in ["EFERT", "A", "BRK.B", "X-1_2", &"Z".repeat(32)] {
            assert!(valid_symbol(ok), "{ok}");
        }
        for no in [
            "",
            "A B",
            "A,B",
            "A\"",
            "A'",
            "A\\",
            "É",
            "A\t",
            &"Z".repeat(33),
        ] {
            assert!(!valid_symbol(no), "{no}");
        }
        // Escapes are decoded before the check.
        let (good, _) = parse_message(br#"{"symbol":"EF\u0045RT"}"#, MAX);
        assert_eq!(&*good[0].symbol, "EFERT");
        let (_, bad) = parse_message(br#"{"symbol":"A\"B"}"#, MAX);
        assert_eq!(bad[0].reason, BadReason::BadSymbol);
    }

    #[test]
    fn timestamps() {
        let (good, _) = parse_message(
            br#"[{"symbol":"A","ts":1700000000123},{"symbol":"B","ts":1700000000123456789},
                {"symbol":"C","ts":"1700000000123"},{"symbol":"D"},{"symbol":"E","ts":1700000000123456}]"#,
            MAX,
        );
        let ts: Vec<Option<u64>> = good.iter().map(|t| t.ts_us).collect();
        assert_eq!(
            ts,
            [
                Some(1_700_000_000_123_000),
                Some(1_700_000_000_123_456),
                None,
                None,
                Some(1_700_000_000_123_456)
            ]
        );
    }
}
