//! RFC 6455 frame rules over real sockets (`--echo`): each bad frame gets its close code, the server
//! finishes the close handshake and closes TCP, and it keeps serving everyone else.

mod common;

use std::io::Write;
use std::time::Duration;

use common::cases::{self, close_payload};
use common::*;

fn server() -> Server {
    let mut args = vec!["--workers", "1", "--echo"];
    args.extend_from_slice(cases::FRAME_LIMITS);
    Server::start(&args)
}

/// Send `bytes` on a fresh connection; return the close code the server sends.
fn close_code_for(server: &Server, bytes: &[u8]) -> Option<u16> {
    let mut s = server.ws();
    s.write_all(bytes).unwrap();
    read_close_code(&mut s)
}

#[test]
fn every_bad_frame_gets_its_close_code() {
    let server = server();
    for (what, bytes, code) in cases::bad_frames() {
        assert_eq!(close_code_for(&server, &bytes), Some(code), "{what}");
    }
    assert_eq!(server.get("/healthz").0, 200, "still serving");
}

#[test]
fn a_code_point_split_across_fragments_is_valid() {
    let server = server();
    let mut s = server.ws();
    s.write_all(&[frame(false, 0x1, b"caf\xc3"), frame(true, 0x0, b"\xa9")].concat())
        .unwrap();
    assert_eq!(read_text(&mut s), "café");
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
