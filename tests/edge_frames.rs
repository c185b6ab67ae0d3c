//! RFC 6455 frame rules over real sockets (`--echo`): each bad frame gets its close code, the server
//! finishes the close handshake and closes TCP, and it keeps serving everyone else.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

fn server() -> Server {
    Server::start(&[
        "--workers",
        "1",
        "--echo",
        "--max-frame",
        "65536",
        "--max-message",
        "65536",
        "--max-fragments",
        "100",
        "--close-timeout",
        "1s",
    ])
}

/// Send `bytes` on a fresh connection; return the close code the server sends.
fn close_code_for(server: &Server, bytes: &[u8]) -> Option<u16> {
    let mut s = server.ws();
    s.write_all(bytes).unwrap();
    read_close_code(&mut s)
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

#[test]
fn protocol_violations_close_with_1002() {
    let server = server();
    let long_ping = vec![b'p'; 126];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked frame", unmasked_frame(0x1, b"hi")),
        ("RSV1 set", frame_rsv(0x40, 0x1, b"hi")),
        ("RSV3 set", frame_rsv(0x10, 0x1, b"hi")),
        ("reserved data opcode 3", frame(true, 0x3, b"")),
        ("reserved control opcode 0xB", frame(true, 0xB, b"")),
        ("control frame over 125 bytes", frame(true, 0x9, &long_ping)),
        ("fragmented ping", frame(false, 0x9, b"x")),
        ("continuation without a message", frame(true, 0x0, b"x")),
        (
            "new data frame inside a message",
            [frame(false, 0x1, b"a"), frame(true, 0x1, b"b")].concat(),
        ),
        (
            "non-minimal 16-bit length",
            frame_with_len(true, 0x1, b"short", Some(126)),
        ),
        (
            "non-minimal 64-bit length",
            frame_with_len(true, 0x1, &[b'x'; 200], Some(127)),
        ),
        ("64-bit length with MSB set", {
            let mut f = vec![0x82, 0x80 | 127];
            f.extend_from_slice(&(1u64 << 63).to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 0]);
            f
        }),
        ("close payload of 1 byte", frame(true, 0x8, b"\x03")),
    ];
    for (what, bytes) in cases {
        assert_eq!(close_code_for(&server, &bytes), Some(1002), "{what}");
    }
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        assert_eq!(
            close_code_for(&server, &frame(true, 0x8, &close_payload(code, b""))),
            Some(1002),
            "close code {code}"
        );
    }
    assert_eq!(server.get("/healthz").0, 200);
}

#[test]
fn limits_close_with_1009_and_1008() {
    let server = server();
    // Declared 2^62 bytes: refused from the header alone.
    let mut huge = vec![0x82, 0x80 | 127];
    huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
    huge.extend_from_slice(&[1, 2, 3, 4]);
    assert_eq!(
        close_code_for(&server, &huge),
        Some(1009),
        "declared length over the limit"
    );
    // Fragments summing over the message limit.
    let piece = vec![b'a'; 40_000];
    let bytes = [frame(false, 0x2, &piece), frame(true, 0x0, &piece)].concat();
    assert_eq!(
        close_code_for(&server, &bytes),
        Some(1009),
        "fragments over the limit"
    );
    // A flood of empty fragments.
    let mut flood = frame(false, 0x1, b"");
    for _ in 0..200 {
        flood.extend(frame(false, 0x0, b""));
    }
    assert_eq!(
        close_code_for(&server, &flood),
        Some(1008),
        "empty-fragment flood"
    );
}

#[test]
fn invalid_utf8_closes_with_1007() {
    let server = server();
    assert_eq!(
        close_code_for(&server, &frame(true, 0x1, b"\xff\xfe")),
        Some(1007),
        "invalid text"
    );
    // "é" is C3 A9: split across fragments it is valid; C3 followed by 28 is not.
    assert_eq!(
        close_code_for(
            &server,
            &[frame(false, 0x1, b"ok \xc3"), frame(true, 0x0, b"\x28")].concat()
        ),
        Some(1007),
        "invalid sequence split across fragments"
    );
    let mut s = server.ws();
    s.write_all(&[frame(false, 0x1, b"caf\xc3"), frame(true, 0x0, b"\xa9")].concat())
        .unwrap();
    assert_eq!(
        read_text(&mut s),
        "café",
        "a valid code point split across fragments"
    );
    assert_eq!(
        close_code_for(&server, &frame(true, 0x8, &close_payload(1000, b"\xff"))),
        Some(1007),
        "invalid close reason"
    );
}

#[test]
fn ping_inside_a_fragmented_message_gets_its_pong() {
    let server = server();
    let mut s = server.ws();
    s.write_all(
        &[
            frame(false, 0x1, b"hel"),
            frame(true, 0x9, b"beat"),
            frame(true, 0x0, b"lo"),
        ]
        .concat(),
    )
    .unwrap();
    let (_, opcode, payload) = read_frame(&mut s).unwrap();
    assert_eq!((opcode, payload.as_slice()), (0xA, &b"beat"[..]));
    assert_eq!(read_text(&mut s), "hello");
}

#[test]
fn close_handshake_and_tcp_close() {
    let server = server();
    // Client-initiated: the server echoes the code and then closes TCP.
    let mut s = server.ws();
    s.write_all(&frame(true, 0x8, &close_payload(1000, b"bye")))
        .unwrap();
    assert_eq!(read_close_code(&mut s), Some(1000));
    assert!(
        closed_within(&mut s, Duration::from_secs(3)),
        "server closes TCP after the exchange"
    );
    // Server-initiated (here by a protocol error) and the peer never answers: TCP closed at the timeout.
    let mut s = server.ws();
    s.write_all(&unmasked_frame(0x1, b"x")).unwrap();
    assert_eq!(read_close_code(&mut s), Some(1002));
    assert!(
        closed_within(&mut s, Duration::from_secs(4)),
        "closed within the close timeout"
    );
    assert!(server.metric("ringcast_protocol_errors_total") >= 1.0);
}
