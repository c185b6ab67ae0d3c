//! The bad-input tables of the core issue, shared by the tests that run them over plain TCP
//! (edge_http.rs, edge_frames.rs) and over TLS (edge_tls.rs).

use super::KEY;

/// An upgrade request line and headers.
pub fn request(method: &str, version: &str, headers: &[(&str, &str)]) -> String {
    let mut r = format!("{method} / {version}\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r
}

/// A valid upgrade's headers.
pub const GOOD: &[(&str, &str)] = &[
    ("Host", "localhost"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
];

pub fn without(name: &str) -> Vec<(&'static str, &'static str)> {
    GOOD.iter().copied().filter(|(k, _)| *k != name).collect()
}

pub fn with(name: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut h = without(name);
    h.push((name, value));
    h
}

/// A request that must be refused with `status` (and `header`, when given).
pub struct BadUpgrade {
    pub what: &'static str,
    pub request: String,
    pub status: u16,
    pub header: Option<&'static str>,
}

impl BadUpgrade {
    pub fn check(&self, resp: &str) {
        assert_eq!(
            super::status_of(resp.as_bytes()),
            self.status,
            "{}: {resp}",
            self.what
        );
        assert!(resp.contains("Connection: close"), "{}: {resp}", self.what);
        if let Some(h) = self.header {
            assert!(
                resp.contains(h),
                "{}: expected header {h} in {resp}",
                self.what
            );
        }
    }
}

pub fn bad_upgrades() -> Vec<BadUpgrade> {
    let cases: Vec<(&'static str, String, u16, Option<&'static str>)> = vec![
        (
            "non-GET method",
            request("POST", "HTTP/1.1", GOOD),
            405,
            Some("Allow: GET"),
        ),
        ("HTTP/1.0", request("GET", "HTTP/1.0", GOOD), 400, None),
        (
            "missing Host",
            request("GET", "HTTP/1.1", &without("Host")),
            400,
            None,
        ),
        (
            "missing Upgrade",
            request("GET", "HTTP/1.1", &without("Upgrade")),
            426,
            None,
        ),
        (
            "wrong Upgrade",
            request("GET", "HTTP/1.1", &with("Upgrade", "h2c")),
            426,
            None,
        ),
        (
            "Connection without upgrade",
            request("GET", "HTTP/1.1", &with("Connection", "keep-alive")),
            400,
            None,
        ),
        (
            "missing key",
            request("GET", "HTTP/1.1", &without("Sec-WebSocket-Key")),
            400,
            None,
        ),
        (
            "key not 16 bytes",
            request("GET", "HTTP/1.1", &with("Sec-WebSocket-Key", "c2hvcnQ=")),
            400,
            None,
        ),
        (
            "key not base64",
            request(
                "GET",
                "HTTP/1.1",
                &with("Sec-WebSocket-Key", "!!!!!!!!!!!!!!!!!!!!!!=="),
            ),
            400,
            None,
        ),
        (
            "repeated key",
            request(
                "GET",
                "HTTP/1.1",
                &[GOOD, &[("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA==")]].concat(),
            ),
            400,
            None,
        ),
        (
            "version 8",
            request("GET", "HTTP/1.1", &with("Sec-WebSocket-Version", "8")),
            426,
            Some("Sec-WebSocket-Version: 13"),
        ),
        (
            "not HTTP at all",
            "\x16\x03\x01\x02\x00garbage\r\n\r\n".to_string(),
            400,
            None,
        ),
        // RFC 9112 strictness (abuse issue, item 7).
        (
            "two Host headers",
            request(
                "GET",
                "HTTP/1.1",
                &[GOOD, &[("Host", "evil.example")]].concat(),
            ),
            400,
            Some("duplicate Host header"),
        ),
        (
            "Content-Length body on an upgrade",
            request(
                "GET",
                "HTTP/1.1",
                &[GOOD, &[("Content-Length", "6")]].concat(),
            ) + "hello!",
            400,
            Some("must not have a body"),
        ),
        (
            "Transfer-Encoding on an upgrade",
            request(
                "GET",
                "HTTP/1.1",
                &[GOOD, &[("Transfer-Encoding", "chunked")]].concat(),
            ) + "0\r\n\r\n",
            400,
            Some("must not have a body"),
        ),
        (
            "conflicting Content-Length",
            request(
                "GET",
                "HTTP/1.1",
                &[GOOD, &[("Content-Length", "0"), ("Content-Length", "6")]].concat(),
            ),
            400,
            Some("invalid or repeated Content-Length"),
        ),
        (
            "Transfer-Encoding and Content-Length",
            request(
                "GET",
                "HTTP/1.1",
                &[
                    GOOD,
                    &[("Transfer-Encoding", "chunked"), ("Content-Length", "0")],
                ]
                .concat(),
            ),
            400,
            Some("both Transfer-Encoding and Content-Length"),
        ),
        (
            "two Origin headers",
            request(
                "GET",
                "HTTP/1.1",
                &[
                    GOOD,
                    &[
                        ("Origin", "https://a.example"),
                        ("Origin", "https://b.example"),
                    ],
                ]
                .concat(),
            ),
            400,
            Some("duplicate Origin header"),
        ),
        // Heads that can never become a request: answered at once, not at the handshake timeout.
        (
            "LF-only line endings",
            request("GET", "HTTP/1.1", GOOD).replace("\r\n", "\n"),
            400,
            Some("line endings must be CRLF"),
        ),
        (
            "bad method token (head not finished)",
            "G(T / HTTP/1.1\r\nHost: x\r\n".to_string(),
            400,
            Some("malformed request line"),
        ),
        (
            "space in a header name (head not finished)",
            "GET / HTTP/1.1\r\nHost: x\r\nX Forwarded: y\r\n".to_string(),
            400,
            Some("invalid header name"),
        ),
        (
            "control byte in a header value (head not finished)",
            "GET / HTTP/1.1\r\nHost: x\x00y\r\n".to_string(),
            400,
            Some("invalid byte in a header value"),
        ),
    ];
    cases
        .into_iter()
        .map(|(what, request, status, header)| BadUpgrade {
            what,
            request,
            status,
            header,
        })
        .collect()
}

/// The limits the frame table is written for (a server started with these flags).
pub const FRAME_LIMITS: &[&str] = &[
    "--max-frame",
    "65536",
    "--max-message",
    "65536",
    "--max-fragments",
    "100",
    "--close-timeout",
    "1s",
];

pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// Bytes sent right after a good upgrade, and the close code each must get.
pub fn bad_frames() -> Vec<(String, Vec<u8>, u16)> {
    use super::{frame, frame_rsv, frame_with_len, unmasked_frame};
    let long_ping = vec![b'p'; 126];
    let mut msb = vec![0x82, 0x80 | 127];
    msb.extend_from_slice(&(1u64 << 63).to_be_bytes());
    msb.extend_from_slice(&[0, 0, 0, 0]);
    let mut huge = vec![0x82, 0x80 | 127];
    huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
    huge.extend_from_slice(&[1, 2, 3, 4]);
    let piece = vec![b'a'; 40_000];
    let mut flood = frame(false, 0x1, b"");
    for _ in 0..200 {
        flood.extend(frame(false, 0x0, b""));
    }
    let mut cases: Vec<(String, Vec<u8>, u16)> = vec![
        ("unmasked frame".into(), unmasked_frame(0x1, b"hi"), 1002),
        ("RSV1 set".into(), frame_rsv(0x40, 0x1, b"hi"), 1002),
        ("RSV3 set".into(), frame_rsv(0x10, 0x1, b"hi"), 1002),
        ("reserved data opcode 3".into(), frame(true, 0x3, b""), 1002),
        (
            "reserved control opcode 0xB".into(),
            frame(true, 0xB, b""),
            1002,
        ),
        (
            "control frame over 125 bytes".into(),
            frame(true, 0x9, &long_ping),
            1002,
        ),
        ("fragmented ping".into(), frame(false, 0x9, b"x"), 1002),
        (
            "continuation without a message".into(),
            frame(true, 0x0, b"x"),
            1002,
        ),
        (
            "new data frame inside a message".into(),
            [frame(false, 0x1, b"a"), frame(true, 0x1, b"b")].concat(),
            1002,
        ),
        (
            "non-minimal 16-bit length".into(),
            frame_with_len(true, 0x1, b"short", Some(126)),
            1002,
        ),
        (
            "non-minimal 64-bit length".into(),
            frame_with_len(true, 0x1, &[b'x'; 200], Some(127)),
            1002,
        ),
        ("64-bit length with MSB set".into(), msb, 1002),
        (
            "close payload of 1 byte".into(),
            frame(true, 0x8, b"\x03"),
            1002,
        ),
        (
            "declared length 2^62 (refused from the header)".into(),
            huge,
            1009,
        ),
        (
            "fragments over the message limit".into(),
            [frame(false, 0x2, &piece), frame(true, 0x0, &piece)].concat(),
            1009,
        ),
        ("a flood of empty fragments".into(), flood, 1008),
        (
            "invalid UTF-8 text".into(),
            frame(true, 0x1, b"\xff\xfe"),
            1007,
        ),
        (
            "invalid UTF-8 split across fragments".into(),
            [frame(false, 0x1, b"ok \xc3"), frame(true, 0x0, b"\x28")].concat(),
            1007,
        ),
        (
            "invalid UTF-8 close reason".into(),
            frame(true, 0x8, &close_payload(1000, b"\xff")),
            1007,
        ),
    ];
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        cases.push((
            format!("close code {code}"),
            frame(true, 0x8, &close_payload(code, b"")),
            1002,
        ));
    }
    cases
}
