//! The framing and UTF-8 rules of RFC 6455 §5, one test each.

use super::*;

// -- framing rules -------------------------------------------------------------------------------------

#[test]
fn unmasked_frame_is_a_protocol_error() {
    assert_fails(b"\x81\x02hi", ProtocolError::UnmaskedFrame, 1002);
}

#[test]
fn reserved_bits_are_a_protocol_error() {
    let mut input = text("x");
    input[0] |= 0x40; // RSV1: no extension negotiated
    assert_fails(&input, ProtocolError::ReservedBitsSet, 1002);
}

#[test]
fn reserved_opcodes_are_a_protocol_error() {
    for op in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        assert_fails(
            &frame(true, op, b""),
            ProtocolError::ReservedOpcode(op),
            1002,
        );
    }
}

#[test]
fn control_frame_over_125_bytes_is_a_protocol_error() {
    assert_fails(
        &frame(true, 0x9, &[0; 126]),
        ProtocolError::ControlFrameTooLong,
        1002,
    );
}

#[test]
fn fragmented_control_frame_is_a_protocol_error() {
    assert_fails(
        &frame(false, 0x9, b""),
        ProtocolError::FragmentedControlFrame,
        1002,
    );
}

#[test]
fn continuation_without_a_message_is_a_protocol_error() {
    assert_fails(
        &frame(true, 0x0, b"x"),
        ProtocolError::UnexpectedContinuation,
        1002,
    );
}

#[test]
fn new_message_inside_a_fragmented_one_is_a_protocol_error() {
    let mut input = frame(false, 0x1, b"a");
    input.extend(frame(true, 0x2, b"b"));
    assert_fails(&input, ProtocolError::ExpectedContinuation, 1002);
}

#[test]
fn ping_inside_a_fragmented_message_is_answered_and_the_message_continues() {
    let mut peer = Peer::new();
    peer.recv(&frame(false, 0x1, b"frag")).unwrap();
    peer.recv(&frame(true, 0x9, b"are you there")).unwrap();
    assert_eq!(peer.sent(), [(0x8A, b"are you there".to_vec())]);
    peer.recv(&frame(true, 0x0, b"ment")).unwrap();
    assert_eq!(peer.messages, [Owned::Text("fragment".into())]);
}

#[test]
fn non_minimal_lengths_are_a_protocol_error() {
    assert_fails(
        &header_with_len_field(0x2, 126, &[0, 125]),
        ProtocolError::NonMinimalLength,
        1002,
    );
    let len_65535 = 0xFFFF_u64.to_be_bytes();
    assert_fails(
        &header_with_len_field(0x2, 127, &len_65535),
        ProtocolError::NonMinimalLength,
        1002,
    );
}

#[test]
fn length_with_msb_set_is_a_protocol_error() {
    let len = (1_u64 << 63).to_be_bytes();
    assert_fails(
        &header_with_len_field(0x2, 127, &len),
        ProtocolError::LengthMsbSet,
        1002,
    );
}

#[test]
fn frame_over_max_frame_fails_from_the_header_alone() {
    let mut peer = Peer::new();
    let header = header_with_len_field(0x2, 127, &(1_u64 << 62).to_be_bytes());
    assert_eq!(peer.recv(&header), Err(ProtocolError::FrameTooBig));
    assert_eq!(peer.sent_close_code(), Some(1009));
    assert_eq!(peer.session.buf.capacity(), 0, "nothing allocated");
}

#[test]
fn message_over_max_message_is_too_big() {
    let limits = Limits {
        max_message: 100,
        ..Limits::default()
    };
    let mut peer = Peer::with_limits(limits);
    let mut input = frame(false, 0x2, &[0; 60]);
    input.extend(frame(true, 0x0, &[0; 60]));
    assert_eq!(peer.recv(&input), Err(ProtocolError::MessageTooBig));
    assert_eq!(peer.sent_close_code(), Some(1009));
}

#[test]
fn too_many_fragments_is_a_policy_violation() {
    let limits = Limits {
        max_fragments: 3,
        ..Limits::default()
    };
    let mut peer = Peer::with_limits(limits);
    let mut input = frame(false, 0x2, b"");
    for _ in 0..3 {
        input.extend(frame(false, 0x0, b""));
    }
    assert_eq!(peer.recv(&input), Err(ProtocolError::TooManyFragments));
    assert_eq!(peer.sent_close_code(), Some(1008));
}

// -- UTF-8 ---------------------------------------------------------------------------------------------

#[test]
fn invalid_utf8_in_a_single_frame_fails_with_1007() {
    assert_fails(
        &frame(true, 0x1, b"ok \xFF"),
        ProtocolError::InvalidUtf8,
        1007,
    );
}

#[test]
fn invalid_utf8_fails_before_the_frame_is_complete() {
    let mut peer = Peer::new();
    let mut payload = b"fine so far ".to_vec();
    payload.extend_from_slice(&[0xED, 0xA0, 0x80]); // a surrogate
    payload.extend_from_slice(&[b'x'; 500]);
    let input = frame(true, 0x1, &payload);
    // Header and the first 20 payload bytes: the surrogate is already in them.
    assert_eq!(peer.recv(&input[..8 + 20]), Err(ProtocolError::InvalidUtf8));
    assert_eq!(peer.sent_close_code(), Some(1007));
}

#[test]
fn invalid_utf8_across_frames_fails_in_the_frame_that_reveals_it() {
    let mut peer = Peer::new();
    peer.recv(&frame(false, 0x1, &[b'a', 0xF0, 0x9F])).unwrap();
    assert_eq!(
        peer.recv(&frame(false, 0x0, &[0x41])),
        Err(ProtocolError::InvalidUtf8)
    );
}

#[test]
fn code_points_split_across_frames_and_reads_are_accepted() {
    let euro = "€".as_bytes(); // E2 82 AC
    let mut input = frame(false, 0x1, &euro[..1]);
    input.extend(frame(false, 0x0, &euro[1..2]));
    input.extend(frame(true, 0x0, &euro[2..]));
    let mut peer = Peer::new();
    peer.recv_in_pieces(&input, 1);
    assert!(peer.errors.is_empty());
    assert_eq!(peer.messages, [Owned::Text("€".into())]);
}

#[test]
fn message_ending_mid_code_point_is_invalid() {
    let mut input = frame(false, 0x1, b"ab");
    input.extend(frame(true, 0x0, &[0xE2, 0x82]));
    assert_fails(&input, ProtocolError::InvalidUtf8, 1007);
}
