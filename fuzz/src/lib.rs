//! Fuzz target bodies, shared by the cargo-fuzz targets (`fuzz_targets/`) and the stable replay
//! harness (`examples/replay.rs`). Each panics when an invariant breaks.

pub mod alloc_count;
mod tls_record;

pub use tls_record::tls_record;

#[global_allocator]
static ALLOCATOR: alloc_count::Counting = alloc_count::Counting;

use ringcast::fanout::command::{self, ClientCommand, CommandError, MAX_SYMBOL_LEN};
use ringcast::protocol::handshake::{
    HeadLimits, HeadScanner, Scan, find_head_end, parse_request, validate_upgrade, write_101,
};
use ringcast::protocol::session::pong;
use ringcast::protocol::{Limits, Message, ProtocolError, Session};

/// The longest tail `Session::receive` may leave unconsumed: a 6-byte control header + 125 bytes,
/// or an incomplete 14-byte data header (139 is the documented bound).
pub const MAX_TAIL: usize = 139;

/// Head framing, parsing and validation of arbitrary bytes.
///
/// Invariants: a resumed scan finds the same head end (or the same refusal) as a full scan, for the
/// worker's `HeadScanner` and for `find_head_end`; a head the scanner completes ends in a blank line;
/// nothing panics; every outcome produces a well-formed response.
pub fn handshake(data: &[u8]) {
    let half = data.len() / 2;
    let whole = HeadScanner::default().scan(data);
    let mut resumed = HeadScanner::default();
    let split = match resumed.scan(&data[..half]) {
        Scan::Partial => match resumed.scan(&data[half..]) {
            Scan::Complete(n) => Scan::Complete(half + n),
            other => other,
        },
        other => other,
    };
    assert_eq!(whole, split, "resumed head scan disagrees");
    match whole {
        Scan::Complete(n) => assert!(data[..n].ends_with(b"\r\n\r\n")),
        Scan::Invalid(error) => assert_eq!(error.status(), 400),
        Scan::Partial => {}
    }
    let full = find_head_end(data, 0);
    if find_head_end(&data[..half], 0).is_none() {
        assert_eq!(
            find_head_end(data, half.saturating_sub(3)),
            full,
            "resumed scan disagrees"
        );
    }
    let Some(end) = full else { return };
    assert!(&data[end - 4..end] == b"\r\n\r\n");

    let limits = HeadLimits {
        max_head_bytes: 4096,
        max_headers: 16,
    };
    let mut out = Vec::new();
    match parse_request(&data[..end], &limits).map(|req| {
        let _ = (req.path(), req.query_param("token"), req.header("origin"));
        validate_upgrade(&req)
    }) {
        Ok(Ok(upgrade)) => {
            write_101(&upgrade, Some("ticks.v1"), &mut out);
            assert!(out.starts_with(b"HTTP/1.1 101 "));
        }
        Ok(Err(error)) | Err(error) => {
            error.write_response(&mut out);
            assert!(out.starts_with(format!("HTTP/1.1 {} ", error.status()).as_bytes()));
        }
    }
    assert!(out.windows(4).any(|w| w == b"\r\n\r\n"));
}

/// What one run of the decoder produced.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    messages: Vec<(bool, Vec<u8>)>,
    errors: Vec<ProtocolError>,
    out: Vec<u8>,
    closed: bool,
}

/// Frame decoding of arbitrary bytes. The first two bytes pick the read sizes, the rest is the stream.
///
/// Invariants: the unconsumed tail never exceeds `MAX_TAIL`; every byte we send is a well-formed
/// unmasked server frame; and the outcome (messages, errors, bytes sent) does not depend on how the
/// stream was split into reads.
pub fn frame_decoder(data: &[u8]) {
    let [a, b, stream @ ..] = data else { return };
    let whole = decode(stream, &[usize::MAX]);
    let sizes = [usize::from(*a % 32) + 1, usize::from(*b) + 1, 3, 14, 140];
    let split = decode(stream, &sizes);
    assert_eq!(whole, split, "outcome depends on read sizes {sizes:?}");
}

/// Feed `stream` the way the runtime does, in reads cycling through `sizes`.
fn decode(stream: &[u8], sizes: &[usize]) -> Outcome {
    let limits = Limits {
        max_frame: 1 << 16,
        max_message: 1 << 17,
        max_fragments: 64,
        close_timeout_ms: 100,
    };
    let mut session = Session::new();
    let mut outcome = Outcome {
        messages: Vec::new(),
        errors: Vec::new(),
        out: Vec::new(),
        closed: false,
    };
    let mut pending = Vec::new();
    let mut rest = stream;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (read, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        pending.extend_from_slice(read);
        let messages = &mut outcome.messages;
        let result = session.receive(
            &mut pending,
            &limits,
            0,
            &mut outcome.out,
            |message, out| match message {
                Message::Text(t) => messages.push((true, t.as_bytes().to_vec())),
                Message::Binary(b) => messages.push((false, b.to_vec())),
                Message::Ping(payload) => pong(payload, out),
            },
        );
        match result {
            Ok(consumed) => {
                assert!(consumed <= pending.len());
                pending.drain(..consumed);
                assert!(pending.len() <= MAX_TAIL, "tail of {} bytes", pending.len());
            }
            Err(error) => {
                assert!(!matches!(
                    session.state(),
                    ringcast::protocol::session::CloseState::Open
                ));
                outcome.errors.push(error);
                pending.clear();
            }
        }
    }
    assert_server_frames(&outcome.out);
    outcome.closed = session.is_closed();
    assert!(session.on_timeout(u64::MAX) || session.deadline_ms().is_none());
    outcome
}

/// Every byte sent parses as complete, unmasked, minimally encoded frames.
fn assert_server_frames(mut bytes: &[u8]) {
    while let [b0, b1, rest @ ..] = bytes {
        assert_eq!(b1 & 0x80, 0, "server frame masked");
        assert_eq!(b0 & 0x70, 0, "server frame with RSV bits");
        let (len, ext) = match b1 & 0x7F {
            126 => (usize::from(u16::from_be_bytes([rest[0], rest[1]])), 2),
            127 => (
                u64::from_be_bytes(rest[..8].try_into().unwrap()) as usize,
                8,
            ),
            n => (usize::from(n), 0),
        };
        assert!(
            ext == 0 || (ext == 2 && len >= 126) || len > 0xFFFF,
            "non-minimal length"
        );
        bytes = &rest[ext + len..];
    }
    assert!(bytes.is_empty(), "truncated server frame");
}

/// Client command parsing (plain subscribe, JSON subscribe/unsubscribe/auth) of arbitrary text. The
/// first byte picks the symbol cap (1-64), the rest is the message.
///
/// Invariants: an accepted list holds 1..=cap distinct valid symbols; a refusal names the cap or shows
/// a short symbol; and the cost is bounded: allocations grow with the cap, not with how many symbols the
/// message lists (at most `cap + 1` are materialised), and bytes allocated stay linear in the input.
pub fn client_command(data: &[u8]) {
    let [first, rest @ ..] = data else { return };
    let cap = usize::from(first % 64) + 1;
    let text = String::from_utf8_lossy(rest);
    let (result, allocations, bytes) = alloc_count::measure(|| command::parse(&text, cap));
    match &result {
        Ok(ClientCommand::Subscribe(list) | ClientCommand::Unsubscribe(list)) => {
            assert!(
                !list.is_empty() && list.len() <= cap,
                "{} symbols, cap {cap}",
                list.len()
            );
            let mut seen = std::collections::HashSet::new();
            for s in list {
                assert!(command::valid_symbol(s), "invalid symbol {s:?} accepted");
                assert!(seen.insert(s), "duplicate {s:?}");
            }
        }
        Ok(ClientCommand::Auth(token)) => assert!(!token.is_empty()),
        // `{"op":"ping"}`: only from a JSON object.
        Ok(ClientCommand::Ping) => assert!(text.trim_start().starts_with('{')),
        Err(CommandError::TooManySymbols { limit }) => assert_eq!(*limit, cap),
        Err(CommandError::BadSymbol(s)) => assert!(s.chars().count() <= MAX_SYMBOL_LEN + 1),
        Err(_) => {}
    }
    // Per kept symbol: its string, its copy in the de-duplication set, and amortised growth of both
    // collections; plus a constant for the envelope, error messages and serde_json's scratch.
    let max_allocations = 64 + 6 * (cap + 1);
    assert!(
        allocations <= max_allocations,
        "{allocations} allocations for a {}-byte message with cap {cap} (bound {max_allocations})",
        text.len()
    );
    // Bytes, counted cumulatively (every reallocation adds): a few copies of the input at most, each
    // grown by doubling (≤ 2× its length in total): serde's scratch for an escaped key or string, serde's
    // own error message quoting an unknown key whole (the reply quotes at most 160 characters of it),
    // the op and token strings; plus the kept symbols and their collections. Linear in the input: found
    // by libFuzzer at 7.2× for an escaped unknown key (13,967 B for 1,927 B), hence 8×.
    let max_bytes = 8 * text.len() + 256 * (cap + 1) + 4096;
    assert!(
        bytes <= max_bytes,
        "{bytes} bytes allocated for a {}-byte message with cap {cap} (bound {max_bytes})",
        text.len()
    );
}

/// The PROXY protocol header parser (`--proxy-protocol`) on arbitrary bytes.
///
/// Invariants: nothing panics; a complete header lies within the input (at least 15 bytes, a v1 line at
/// most 107); every strict prefix of a complete header asks for more, and the header alone parses to the
/// same result; a refusal stays a refusal whatever follows; bytes after a header are never read.
pub fn proxy_header(data: &[u8]) {
    use ringcast::protocol::proxy::{self, Parsed};
    let whole = proxy::parse(data);
    match whole {
        Parsed::Complete { consumed, .. } => {
            assert!(
                (15..=data.len()).contains(&consumed),
                "{consumed} of {}",
                data.len()
            );
            if data.starts_with(b"PROXY ") {
                assert!(consumed <= proxy::V1_MAX);
                assert!(data[..consumed].ends_with(b"\r\n"));
            } else {
                assert!(data.starts_with(&proxy::V2_SIGNATURE));
            }
            assert_eq!(proxy::parse(&data[..consumed]), whole, "header alone");
            let mut extended = data[..consumed].to_vec();
            extended.extend_from_slice(b"\x16\x03\x01garbage after the header");
            assert_eq!(
                proxy::parse(&extended),
                whole,
                "bytes after it are not read"
            );
            for n in [0, 1, consumed / 2, consumed - 1] {
                assert_eq!(proxy::parse(&data[..n]), Parsed::NeedMore, "prefix {n}");
            }
        }
        Parsed::Invalid(why) => {
            assert!(!why.reason().is_empty());
            let mut extended = data.to_vec();
            extended.extend_from_slice(b"\r\n\r\n");
            assert!(
                matches!(proxy::parse(&extended), Parsed::Invalid(_)),
                "a refusal stays one"
            );
        }
        Parsed::NeedMore => assert!(data.len() < proxy::V2_MAX),
    }
}
