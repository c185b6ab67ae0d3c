//! The ticks the harness publishes and how a client reads them back.
//!
//! Published form (fixed key order, padded to the requested size):
//! `{"symbol":"SYM00042","seq":17,"ts":1732250000123456789,"price":"55.00","pad":"xxxx"}`

use std::io::Write;

use crate::common::symbol_id;

/// Appends one tick of about `size` bytes.
pub fn write_tick(out: &mut Vec<u8>, symbol: u32, seq: u64, ts_ns: u64, size: usize) {
    let start = out.len();
    let price = 50.0 + (seq % 1000) as f64 / 100.0;
    write!(
        out,
        "{{\"symbol\":\"SYM{symbol:05}\",\"seq\":{seq},\"ts\":{ts_ns},\"price\":\"{price:.2}\""
    )
    .unwrap();
    let used = out.len() - start + 1; // + closing brace
    let pad_overhead = ",\"pad\":\"\"".len();
    if size > used + pad_overhead {
        out.extend_from_slice(b",\"pad\":\"");
        out.extend(std::iter::repeat_n(b'x', size - used - pad_overhead));
        out.push(b'"');
    }
    out.push(b'}');
}

#[derive(Debug, PartialEq)]
pub enum Item {
    Tick { symbol: u32, seq: u64, ts_ns: u64 },
    Control { error: bool },
    Unknown,
}

/// Calls `f` for each tick or control object in a text message (one object or an array of objects).
#[inline]
pub fn for_each_item(msg: &[u8], mut f: impl FnMut(Item)) {
    let mut i = 0;
    while i < msg.len() && msg[i].is_ascii_whitespace() {
        i += 1;
    }
    if i >= msg.len() {
        return;
    }
    if msg[i] == b'{' {
        f(parse_object(&msg[i..]));
        return;
    }
    if msg[i] != b'[' {
        f(Item::Unknown);
        return;
    }
    i += 1;
    while i < msg.len() {
        match msg[i] {
            b'{' => {
                let end = object_end(&msg[i..]);
                f(parse_object(&msg[i..i + end]));
                i += end;
            }
            b']' => return,
            _ => i += 1,
        }
    }
}

/// Length of the JSON object starting at `s[0] == '{'` (or all of `s` when unterminated).
fn object_end(s: &[u8]) -> usize {
    let mut depth = 0i32;
    let mut in_str = false;
    let mut esc = false;
    for (i, &c) in s.iter().enumerate() {
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    s.len()
}

#[inline]
fn parse_object(o: &[u8]) -> Item {
    // Fast path: our own key order.
    if let Some(rest) = o.strip_prefix(b"{\"symbol\":\"")
        && let Some(q) = rest.iter().position(|&c| c == b'"')
        && let Some(symbol) = symbol_id(&rest[..q])
    {
        let rest = &rest[q + 1..];
        if let Some(rest) = rest.strip_prefix(b",\"seq\":")
            && let Some((seq, n)) = parse_u64(rest)
            && let Some(rest2) = rest[n..].strip_prefix(b",\"ts\":")
            && let Some((ts_ns, _)) = parse_u64(rest2)
        {
            return Item::Tick { symbol, seq, ts_ns };
        }
    }
    // Slow path: any key order (a server that re-serializes).
    if let Some(p) = crate::ws::find(o, b"\"type\"") {
        let error = crate::ws::find(&o[p..], b"\"error\"").is_some();
        return Item::Control { error };
    }
    let sym = value_after(o, b"\"symbol\"").and_then(|v| {
        let v = v.strip_prefix(b"\"")?;
        let q = v.iter().position(|&c| c == b'"')?;
        symbol_id(&v[..q])
    });
    let seq = value_after(o, b"\"seq\"").and_then(|v| parse_u64(v).map(|x| x.0));
    let ts = value_after(o, b"\"ts\"").and_then(|v| parse_u64(v).map(|x| x.0));
    match (sym, seq, ts) {
        (Some(symbol), Some(seq), Some(ts_ns)) => Item::Tick { symbol, seq, ts_ns },
        _ => Item::Unknown,
    }
}

fn value_after<'a>(o: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let p = crate::ws::find(o, key)?;
    let mut r = &o[p + key.len()..];
    while let Some((&c, rest)) = r.split_first() {
        if c == b':' || c.is_ascii_whitespace() {
            r = rest;
        } else {
            break;
        }
    }
    Some(r)
}

#[inline]
fn parse_u64(s: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut n = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            break;
        }
        v = v.wrapping_mul(10).wrapping_add((c - b'0') as u64);
        n += 1;
    }
    if n == 0 { None } else { Some((v, n)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_round_trips_and_has_the_size() {
        let mut b = Vec::new();
        write_tick(&mut b, 42, 17, 1732250000123456789, 100);
        assert_eq!(b.len(), 100, "{}", String::from_utf8_lossy(&b));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["seq"], 17);
        let mut got = Vec::new();
        for_each_item(&b, |i| got.push(i));
        assert_eq!(
            got,
            vec![Item::Tick {
                symbol: 42,
                seq: 17,
                ts_ns: 1732250000123456789
            }]
        );
    }

    #[test]
    fn arrays_reordered_keys_and_controls() {
        let msg = br#"[{"symbol":"SYM00001","seq":1,"ts":5}, {"ts":6,"seq":2,"symbol":"SYM00002","price":"1"}]"#;
        let mut got = Vec::new();
        for_each_item(msg, |i| got.push(i));
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1],
            Item::Tick {
                symbol: 2,
                seq: 2,
                ts_ns: 6
            }
        );
        let mut got = Vec::new();
        for_each_item(br#"{"type":"subscribed","symbols":["A"]}"#, |i| got.push(i));
        assert_eq!(got, vec![Item::Control { error: false }]);
    }
}
