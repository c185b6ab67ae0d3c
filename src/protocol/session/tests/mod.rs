//! One test per RFC 6455 rule the session enforces, plus the consumption contract the runtime relies on.

use super::*;
use crate::protocol::mask::apply_mask;

const KEY: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// A masked client frame with the minimal length encoding.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut v = vec![if fin { 0x80 } else { 0 } | opcode];
    match len {
        0..=125 => v.push(0x80 | len as u8),
        126..=0xFFFF => {
            v.push(0x80 | 126);
            v.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            v.push(0x80 | 127);
            v.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    v.extend_from_slice(&KEY);
    let start = v.len();
    v.extend_from_slice(payload);
    apply_mask(&mut v[start..], KEY, 0);
    v
}

fn text(s: &str) -> Vec<u8> {
    frame(true, 0x1, s.as_bytes())
}

fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    frame(true, 0x8, &payload)
}

/// A frame header with an explicit (possibly non-minimal) 64- or 16-bit length field.
fn header_with_len_field(opcode: u8, len7: u8, ext: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80 | opcode, 0x80 | len7];
    v.extend_from_slice(ext);
    v.extend_from_slice(&KEY);
    v
}

#[derive(Debug, PartialEq, Eq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
}

/// A session plus everything it produced, fed the way the runtime feeds it.
struct Peer {
    session: Session,
    limits: Limits,
    now_ms: u64,
    /// Received bytes not consumed yet (the runtime's receive buffer).
    pending: Vec<u8>,
    out: Vec<u8>,
    messages: Vec<Owned>,
    errors: Vec<ProtocolError>,
}

impl Peer {
    /// The default limits but 1 MiB messages: room for the 80 kB message of `conversation`.
    fn new() -> Self {
        Self::with_limits(Limits {
            max_frame: 1 << 20,
            max_message: 1 << 20,
            ..Limits::default()
        })
    }

    fn with_limits(limits: Limits) -> Self {
        Peer {
            session: Session::new(),
            limits,
            now_ms: 1_000,
            pending: Vec::new(),
            out: Vec::new(),
            messages: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Append `bytes` to the receive buffer and run `receive` once, checking the tail contract.
    fn recv(&mut self, bytes: &[u8]) -> Result<usize, ProtocolError> {
        self.pending.extend_from_slice(bytes);
        let messages = &mut self.messages;
        let result = self.session.receive(
            &mut self.pending,
            &self.limits,
            self.now_ms,
            &mut self.out,
            |message, out| match message {
                Message::Text(t) => messages.push(Owned::Text(t.to_owned())),
                Message::Binary(b) => messages.push(Owned::Binary(b.to_vec())),
                Message::Ping(payload) => super::pong(payload, out),
            },
        );
        match result {
            Ok(consumed) => {
                self.pending.drain(..consumed);
                assert!(
                    self.pending.len() <= 139,
                    "tail of {} bytes",
                    self.pending.len()
                );
            }
            Err(e) => {
                self.pending.clear();
                self.errors.push(e);
            }
        }
        result
    }

    /// Feed `bytes` in reads of `size` bytes.
    fn recv_in_pieces(&mut self, bytes: &[u8], size: usize) {
        for piece in bytes.chunks(size) {
            let _ = self.recv(piece);
        }
    }

    /// The frames we sent, as (opcode byte with FIN, payload).
    fn sent(&self) -> Vec<(u8, Vec<u8>)> {
        server_frames(&self.out)
    }

    fn sent_close_code(&self) -> Option<u16> {
        self.sent()
            .into_iter()
            .find(|(op, _)| op & 0x0F == 0x8)
            .map(|(_, p)| u16::from_be_bytes([p[0], p[1]]))
    }
}

/// Split unmasked server frames.
fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        assert_eq!(bytes[1] & 0x80, 0, "server frames are not masked");
        let (len, header) = match bytes[1] {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        frames.push((bytes[0], bytes[header..header + len].to_vec()));
        bytes = &bytes[header + len..];
    }
    frames
}

/// Assert that `input` fails with `expected`, answered by a Close with `code`, entering `CloseSent`.
fn assert_fails(input: &[u8], expected: ProtocolError, code: u16) {
    let mut peer = Peer::new();
    assert_eq!(peer.recv(input), Err(expected));
    assert_eq!(
        peer.sent_close_code(),
        Some(code),
        "close code for {expected:?}"
    );
    assert_eq!(
        peer.session.state(),
        CloseState::CloseSent {
            deadline_ms: 1_000 + 5_000
        }
    );
    assert!(peer.messages.is_empty());
}

// -- size --------------------------------------------------------------------------------------------

#[test]
fn session_fits_in_a_cache_line() {
    assert!(
        size_of::<Session>() <= 64,
        "Session is {} bytes",
        size_of::<Session>()
    );
}

// -- messages ------------------------------------------------------------------------------------------

#[test]
fn text_and_binary_messages_are_delivered() {
    let mut peer = Peer::new();
    let mut input = text("hello");
    input.extend(frame(true, 0x2, &[1, 2, 3]));
    input.extend(text(""));
    assert_eq!(peer.recv(&input), Ok(input.len()));
    assert_eq!(
        peer.messages,
        [
            Owned::Text("hello".into()),
            Owned::Binary(vec![1, 2, 3]),
            Owned::Text(String::new())
        ]
    );
    assert!(peer.out.is_empty());
}

#[test]
fn fast_path_delivers_borrowed_from_the_receive_buffer() {
    let mut session = Session::new();
    let mut buf = text("zero copy");
    let range = buf.as_ptr_range();
    let mut seen = false;
    let consumed = session
        .receive(
            &mut buf,
            &Limits::default(),
            0,
            &mut Vec::new(),
            |message, _| {
                let Message::Text(t) = message else {
                    panic!("expected text")
                };
                assert_eq!(t, "zero copy");
                assert!(range.contains(&t.as_ptr()), "not borrowed from buf");
                seen = true;
            },
        )
        .unwrap();
    assert!(seen);
    assert_eq!(consumed, buf.len());
    assert_eq!(
        session.buf.capacity(),
        0,
        "nothing copied into the message buffer"
    );
}

#[test]
fn fragmented_message_is_assembled() {
    let mut peer = Peer::new();
    let mut input = frame(false, 0x1, b"hel");
    input.extend(frame(false, 0x0, b""));
    input.extend(frame(true, 0x0, b"lo"));
    assert_eq!(peer.recv(&input), Ok(input.len()));
    assert_eq!(peer.messages, [Owned::Text("hello".into())]);
}

#[test]
fn callback_replies_keep_their_order_with_control_replies() {
    let mut session = Session::new();
    let mut input = frame(true, 0x9, b"p1");
    input.extend(text("msg"));
    input.extend(frame(true, 0x9, b"p2"));
    let mut out = Vec::new();
    session
        .receive(
            &mut input,
            &Limits::default(),
            0,
            &mut out,
            |message, out| match message {
                Message::Ping(payload) => super::pong(payload, out),
                _ => encode_frame(OpCode::Text, b"reply", out),
            },
        )
        .unwrap();
    let sent: Vec<_> = server_frames(&out)
        .into_iter()
        .map(|(b0, p)| (b0 & 0x0F, p))
        .collect();
    assert_eq!(
        sent,
        [
            (OpCode::Pong.to_u8(), b"p1".to_vec()),
            (OpCode::Text.to_u8(), b"reply".to_vec()),
            (OpCode::Pong.to_u8(), b"p2".to_vec())
        ],
        "pings reach the callback in stream order"
    );
}

// -- the consumption contract --------------------------------------------------------------------------

/// A conversation exercising every frame kind, and the messages it carries.
fn conversation() -> (Vec<u8>, Vec<Owned>) {
    let big = "ü".repeat(40_000); // 80 000 bytes: 64-bit length, code points split everywhere
    let mut input = text("hi");
    input.extend(frame(false, 0x1, "κό".as_bytes()));
    input.extend(frame(true, 0x9, b"ping!"));
    input.extend(frame(true, 0xA, b"unsolicited pong"));
    input.extend(frame(true, 0x0, "σμε".as_bytes()));
    input.extend(frame(true, 0x2, &[7; 300]));
    input.extend(text(&big));
    input.extend(frame(false, 0x2, &[]));
    input.extend(frame(true, 0x9, &[9; 125]));
    input.extend(frame(true, 0x0, &[1; 2000]));
    let messages = vec![
        Owned::Text("hi".into()),
        Owned::Text("κόσμε".into()),
        Owned::Binary(vec![7; 300]),
        Owned::Text(big),
        Owned::Binary(vec![1; 2000]),
    ];
    (input, messages)
}

#[test]
fn any_read_sizes_give_the_same_messages_and_a_bounded_tail() {
    let (input, expected) = conversation();
    for size in [1, 2, 3, 5, 13, 14, 100, 139, 1000, 4096, input.len()] {
        let mut peer = Peer::new();
        peer.recv_in_pieces(&input, size);
        assert!(peer.errors.is_empty(), "size {size}: {:?}", peer.errors);
        assert_eq!(peer.messages, expected, "size {size}");
        assert!(peer.pending.is_empty());
        let pongs: Vec<_> = peer
            .sent()
            .into_iter()
            .map(|(op, p)| (op, p.len()))
            .collect();
        assert_eq!(pongs, [(0x8A, 5), (0x8A, 125)], "size {size}");
    }
}

#[test]
fn partial_data_frames_are_consumed_and_tail_is_at_most_a_header() {
    let mut peer = Peer::new();
    let input = frame(true, 0x2, &[5; 1000]);
    // A partial header stays in the buffer...
    assert_eq!(peer.recv(&input[..3]), Ok(0));
    // ...but a partial payload is consumed.
    assert_eq!(peer.recv(&input[3..500]), Ok(500));
    assert_eq!(peer.recv(&input[500..]), Ok(input.len() - 500));
    assert_eq!(peer.messages, [Owned::Binary(vec![5; 1000])]);
}

#[test]
fn incomplete_control_frame_stays_in_the_buffer() {
    let mut peer = Peer::new();
    let ping = frame(true, 0x9, &[3; 125]);
    assert_eq!(peer.recv(&ping[..100]), Ok(0));
    assert_eq!(peer.pending.len(), 100);
    assert_eq!(peer.recv(&ping[100..]), Ok(ping.len()));
    assert_eq!(peer.sent(), [(0x8A, vec![3; 125])]);
}

#[test]
fn large_message_buffer_is_released_after_delivery() {
    let mut peer = Peer::new();
    let mut input = frame(false, 0x2, &[1; 6000]);
    input.extend(frame(true, 0x0, &[2; 6000]));
    peer.recv(&input).unwrap();
    assert_eq!(peer.messages.len(), 1);
    assert_eq!(peer.session.buf.capacity(), 0);
}

#[test]
fn small_message_buffer_is_kept_for_reuse() {
    let mut peer = Peer::new();
    let mut input = frame(false, 0x2, &[1; 100]);
    input.extend(frame(true, 0x0, &[2; 100]));
    peer.recv(&input).unwrap();
    assert!(peer.session.buf.is_empty());
    assert!(peer.session.buf.capacity() <= KEEP_CAPACITY);
}

mod close_handshake;
mod rules;
