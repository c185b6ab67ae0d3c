//! The close handshake (RFC 6455 §7) and what happens after a protocol error.

use super::*;

// -- close handshake -----------------------------------------------------------------------------------

#[test]
fn peer_close_is_echoed_with_its_code_and_closes() {
    let mut peer = Peer::new();
    let input = close_frame(1001, b"going away");
    assert_eq!(peer.recv(&input), Ok(input.len()));
    assert_eq!(peer.sent(), [(0x88, vec![0x03, 0xE9])]);
    assert!(peer.session.is_closed());
}

#[test]
fn empty_close_is_echoed_empty() {
    let mut peer = Peer::new();
    peer.recv(&frame(true, 0x8, b"")).unwrap();
    assert_eq!(peer.sent(), [(0x88, vec![])]);
    assert!(peer.session.is_closed());
}

#[test]
fn one_byte_close_payload_is_a_protocol_error() {
    let mut peer = Peer::new();
    assert_eq!(
        peer.recv(&frame(true, 0x8, &[3])),
        Err(ProtocolError::InvalidClosePayload)
    );
    assert_eq!(peer.sent_close_code(), Some(1002));
}

#[test]
fn close_codes_invalid_on_the_wire_are_a_protocol_error() {
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let mut peer = Peer::new();
        assert_eq!(
            peer.recv(&close_frame(code, b"")),
            Err(ProtocolError::InvalidCloseCode(code))
        );
        assert_eq!(peer.sent_close_code(), Some(1002));
        // The offending frame was the peer's Close, so the exchange is over.
        assert!(peer.session.is_closed());
    }
}

#[test]
fn close_reason_must_be_utf8() {
    let mut peer = Peer::new();
    assert_eq!(
        peer.recv(&close_frame(1000, b"\xC0\xAF")),
        Err(ProtocolError::InvalidUtf8)
    );
    assert_eq!(peer.sent_close_code(), Some(1007));
}

#[test]
fn frames_after_the_peer_close_are_ignored() {
    let mut peer = Peer::new();
    let mut input = close_frame(1000, b"");
    input.extend(text("late"));
    input.extend(b"\x00garbage");
    assert_eq!(peer.recv(&input), Ok(input.len()));
    assert_eq!(peer.recv(&text("later")), Ok(text("later").len()));
    assert!(peer.messages.is_empty());
    assert_eq!(peer.sent().len(), 1);
}

#[test]
fn server_close_waits_for_the_peer_close_without_delivering_data() {
    let mut peer = Peer::new();
    peer.session.close(
        CloseCode::GOING_AWAY,
        "restart",
        &peer.limits,
        1_000,
        &mut peer.out,
    );
    assert_eq!(peer.sent(), [(0x88, b"\x03\xE9restart".to_vec())]);
    assert_eq!(peer.session.deadline_ms(), Some(6_000));
    let mut input = text("ignored");
    input.extend(frame(true, 0x9, b"no pong while closing"));
    input.extend(close_frame(1001, b""));
    peer.recv_in_pieces(&input, 3);
    assert!(peer.messages.is_empty());
    assert_eq!(peer.sent().len(), 1, "no echo, no pong");
    assert!(peer.session.is_closed());
    assert_eq!(peer.session.deadline_ms(), None);
}

#[test]
fn close_is_a_no_op_unless_open() {
    let mut peer = Peer::new();
    peer.session
        .close(CloseCode::NORMAL, "", &peer.limits, 0, &mut peer.out);
    peer.session
        .close(CloseCode::GOING_AWAY, "", &peer.limits, 0, &mut peer.out);
    assert_eq!(peer.sent().len(), 1);
}

#[test]
fn close_timeout_closes() {
    let mut peer = Peer::new();
    peer.session
        .close(CloseCode::NORMAL, "", &peer.limits, 1_000, &mut peer.out);
    assert!(!peer.session.on_timeout(5_999));
    assert_eq!(
        peer.session.state(),
        CloseState::CloseSent { deadline_ms: 6_000 }
    );
    assert!(peer.session.on_timeout(6_000));
    assert!(peer.session.is_closed());
}

#[test]
fn open_session_has_no_deadline() {
    let mut session = Session::new();
    assert_eq!(session.deadline_ms(), None);
    assert!(!session.on_timeout(u64::MAX));
    assert_eq!(session.state(), CloseState::Open);
}

#[test]
fn after_an_error_the_rest_of_the_offending_frame_is_skipped_to_find_the_peer_close() {
    let mut peer = Peer::new();
    let mut payload = vec![b'a'; 10];
    payload.push(0xFF);
    payload.extend_from_slice(&[0x88; 200]); // looks like Close headers if misparsed
    let bad = frame(true, 0x1, &payload);
    assert_eq!(peer.recv(&bad[..20]), Err(ProtocolError::InvalidUtf8));
    // The rest of the bad frame and a ping are swallowed; nothing more is sent.
    let mut rest = bad[20..].to_vec();
    rest.extend(frame(true, 0x9, b""));
    peer.recv_in_pieces(&rest, 7);
    assert_eq!(
        peer.session.state(),
        CloseState::CloseSent { deadline_ms: 6_000 }
    );
    // The peer's Close, split inside its header, ends the exchange.
    peer.recv_in_pieces(&close_frame(1000, b""), 1);
    assert!(peer.session.is_closed());
    assert_eq!(peer.errors, [ProtocolError::InvalidUtf8]);
    assert_eq!(peer.sent().len(), 1);
}

#[test]
fn peer_close_in_the_same_read_as_the_error_is_found() {
    let mut peer = Peer::new();
    let mut input = frame(true, 0x3, b"reserved");
    input.extend(close_frame(1000, b""));
    assert_eq!(peer.recv(&input), Err(ProtocolError::ReservedOpcode(3)));
    assert!(peer.session.is_closed());
}

#[test]
fn error_close_carries_the_reason() {
    let mut peer = Peer::new();
    let _ = peer.recv(b"\x81\x00");
    let (_, payload) = &peer.sent()[0];
    assert_eq!(&payload[2..], b"client frame not masked");
}
