//! Our TLS 1.3 record layer (`ringcast::tls::RecordLayer`) with fixed traffic secrets, against a
//! peer model written here (its own HKDF-Expand-Label, AEAD and record framing, RFC 8446 §5, §7).
//!
//! The first byte picks the mode:
//! - even: the rest is arbitrary ciphertext, fed in reads of a size the second byte picks;
//! - odd: the rest is a script for a well-behaved client (application data of random lengths and
//!   padding, empty records, KeyUpdates requested or not, split across records, user_canceled,
//!   close_notify) and for our sending side between reads, optionally garbled at one point at the end.
//!
//! Invariants: nothing panics; every refusal is a specific [`RecordError`] (never `Internal`) or a
//! peer alert, and `out` then ends with exactly that fatal alert, sealed so the peer can read it;
//! the plaintext we deliver is always a prefix of what the client sent (all of it for an
//! ungarbled script); the outcome of arbitrary bytes does not depend on how they are split into
//! reads; a kept partial record is never longer than one record; every record we send (data, our
//! KeyUpdates, the answer to a client's request) opens at the peer, in order, with its keys.

use aws_lc_rs::aead::{
    AES_128_GCM, AES_256_GCM, Aad, Algorithm, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey,
};
use aws_lc_rs::hkdf;
use ringcast::tls::{Received, RecordError, RecordLayer, TlsFailure};

const SUITES: [u16; 3] = [0x1301, 0x1302, 0x1303];
const CLIENT_SECRET: [u8; 48] = [0xC1; 48];
const SERVER_SECRET: [u8; 48] = [0x5E; 48];
/// Largest record on the wire: header + 2^14 + 256.
const MAX_RECORD: usize = 5 + (1 << 14) + 256;

/// One direction's keys as the peer model holds them.
pub struct Direction {
    suite: u16,
    secret: Vec<u8>,
    key: LessSafeKey,
    iv: [u8; 12],
    pub seq: u64,
}

fn hash(suite: u16) -> (hkdf::Algorithm, usize) {
    if suite == 0x1302 {
        (hkdf::HKDF_SHA384, 48)
    } else {
        (hkdf::HKDF_SHA256, 32)
    }
}

/// HKDF-Expand-Label(secret, label, "", len), RFC 8446 §7.1.
fn expand_label(suite: u16, secret: &[u8], label: &str, len: usize) -> Vec<u8> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let full = format!("tls13 {label}");
    let info: [&[u8]; 4] = [
        &(len as u16).to_be_bytes(),
        &[full.len() as u8],
        full.as_bytes(),
        &[0],
    ];
    let mut out = vec![0; len];
    hkdf::Prk::new_less_safe(hash(suite).0, secret)
        .expand(&info, Len(len))
        .unwrap()
        .fill(&mut out)
        .unwrap();
    out
}

impl Direction {
    pub fn new(suite: u16, secret: &[u8], seq: u64) -> Direction {
        let (alg, key_len): (&'static Algorithm, usize) = match suite {
            0x1301 => (&AES_128_GCM, 16),
            0x1302 => (&AES_256_GCM, 32),
            _ => (&CHACHA20_POLY1305, 32),
        };
        let key = expand_label(suite, secret, "key", key_len);
        let iv = expand_label(suite, secret, "iv", 12);
        Direction {
            suite,
            secret: secret.to_vec(),
            key: LessSafeKey::new(UnboundKey::new(alg, &key).unwrap()),
            iv: iv.try_into().unwrap(),
            seq,
        }
    }

    /// After a KeyUpdate: the next traffic secret, sequence numbers from 0.
    pub fn next(&mut self) {
        let next = expand_label(self.suite, &self.secret, "traffic upd", hash(self.suite).1);
        *self = Direction::new(self.suite, &next, 0);
    }

    fn nonce(&self) -> Nonce {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        Nonce::assume_unique_for_key(n)
    }

    /// One record around `inner` (content, inner content type, padding).
    pub fn seal(&mut self, inner: &[u8]) -> Vec<u8> {
        let len = (inner.len() + 16) as u16;
        let header = [23, 3, 3, (len >> 8) as u8, len as u8];
        let mut body = inner.to_vec();
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(), Aad::from(header), &mut body)
            .unwrap();
        self.seq += 1;
        [&header[..], &body, tag.as_ref()].concat()
    }

    /// Opens the records of `wire` (complete records only): (inner content type, content) each.
    /// A KeyUpdate switches to the next key for the records after it.
    pub fn open_all(&mut self, mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut records = Vec::new();
        while !wire.is_empty() {
            assert!(wire.len() >= 5, "truncated record header in our output");
            assert_eq!(wire[..3], [23, 3, 3], "our record header");
            let len = usize::from(u16::from_be_bytes([wire[3], wire[4]]));
            assert!(
                (17..=(1 << 14) + 17).contains(&len),
                "our record length {len}"
            );
            let header: [u8; 5] = wire[..5].try_into().unwrap();
            let mut body = wire[5..5 + len].to_vec();
            wire = &wire[5 + len..];
            let nonce = self.nonce();
            let plain = self
                .key
                .open_in_place(nonce, Aad::from(header), &mut body)
                .expect("our record opens at the peer");
            self.seq += 1;
            let end = plain.iter().rposition(|&b| b != 0).unwrap();
            let (content_type, content) = (plain[end], plain[..end].to_vec());
            if content_type == 22 {
                assert_eq!(
                    content,
                    [24, 0, 0, 1, 0],
                    "we send only KeyUpdate(not requested)"
                );
                self.next();
            }
            records.push((content_type, content));
        }
        records
    }
}

/// Reads bytes of the script; zeros once it runs out.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> usize {
        usize::from(u16::from_be_bytes([self.byte(), self.byte()]))
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Fuzz entry point (see the module docs).
pub fn tls_record(data: &[u8]) {
    let [mode, rest @ ..] = data else { return };
    if mode % 2 == 0 {
        arbitrary_bytes(*mode, rest);
    } else {
        scripted(*mode, rest);
    }
}

fn layer(mode: u8) -> (RecordLayer, Direction) {
    let suite = SUITES[usize::from(mode / 2) % 3];
    let len = hash(suite).1;
    // Our sending side starts just below the 2^22 records after which we change keys, sometimes.
    let tx_seq = if mode & 0x40 != 0 {
        (1 << 22) - u64::from(mode >> 3 & 7)
    } else {
        0
    };
    let rx_seq = records_rx_seq(mode);
    let records = RecordLayer::with_secrets(
        suite,
        &CLIENT_SECRET[..len],
        &SERVER_SECRET[..len],
        rx_seq,
        tx_seq,
    )
    .unwrap();
    (
        records,
        Direction::new(suite, &SERVER_SECRET[..len], tx_seq),
    )
}

/// What feeding a stream produced.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    plaintext: Vec<u8>,
    result: Result<Received, String>,
}

/// Feeds `stream` in reads cycling through `sizes`; stops at the first error. Checks what goes out.
fn feed(
    records: &mut RecordLayer,
    server: &mut Direction,
    stream: &[u8],
    sizes: &[usize],
    mut between_reads: impl FnMut(&mut RecordLayer, &mut Vec<u8>),
) -> (Outcome, Vec<(u8, Vec<u8>)>) {
    let (mut plaintext, mut out) = (Vec::new(), Vec::new());
    let mut sent = Vec::new();
    let mut result = Ok(Received::Open);
    let mut rest = stream;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (read, tail) = rest.split_at(size.clamp(1, rest.len()));
        rest = tail;
        let before = plaintext.len();
        match records.receive(read, &mut plaintext, &mut out) {
            Ok(r) => result = Ok(r),
            Err(failure) => {
                let opened = server.open_all(&out);
                check_failure(&failure, &opened);
                sent.extend(opened);
                result = Err(format!("{failure:?}"));
                break;
            }
        }
        assert!(plaintext.len() >= before);
        sent.extend(server.open_all(&out));
        out.clear();
        between_reads(records, &mut out);
        sent.extend(server.open_all(&out));
        out.clear();
    }
    (Outcome { plaintext, result }, sent)
}

/// A refusal is specific, and its alert is the last record out.
fn check_failure(failure: &TlsFailure, opened: &[(u8, Vec<u8>)]) {
    match failure {
        TlsFailure::Record(RecordError::Internal) => panic!("internal error on peer input"),
        TlsFailure::Record(e) => {
            assert_eq!(
                opened.last(),
                Some(&(21, vec![2, u8::from(e.alert())])),
                "the alert for {e:?}"
            );
        }
        // A fatal alert from the peer: no alert answers it.
        TlsFailure::Peer(_) => assert!(opened.iter().all(|(t, _)| *t != 21)),
        other => panic!("not a record-layer failure: {other:?}"),
    }
}

fn arbitrary_bytes(mode: u8, data: &[u8]) {
    let [size, stream @ ..] = data else { return };
    let (mut records, mut server) = layer(mode);
    let (whole, _) = feed(&mut records, &mut server, stream, &[usize::MAX], |_, _| {});
    let (mut records, mut server) = layer(mode);
    let sizes = [usize::from(*size) + 1, 5, 1, 300];
    let (split, _) = feed(&mut records, &mut server, stream, &sizes, |_, _| {});
    assert_eq!(whole, split, "outcome depends on read sizes {sizes:?}");
    // Arbitrary bytes do not decrypt.
    assert!(whole.plaintext.is_empty());
}

fn scripted(mode: u8, data: &[u8]) {
    let mut script = Script(data);
    let (mut records, mut server) = layer(mode);
    let len = hash(SUITES[usize::from(mode / 2) % 3]).1;
    let mut client = Direction::new(
        SUITES[usize::from(mode / 2) % 3],
        &CLIENT_SECRET[..len],
        records_rx_seq(mode),
    );
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    let mut closed = false;
    let mut requested = false;
    for _ in 0..48 {
        if script.is_empty() {
            break;
        }
        let op = script.byte();
        match op % 12 {
            0..=4 => {
                let len = match op / 12 % 4 {
                    0 => script.u16() % ((1 << 14) + 1),
                    _ => usize::from(script.byte()),
                };
                let content: Vec<u8> = (0..len).map(|i| (i * 7 + op as usize) as u8).collect();
                let padding = match script.byte() % 4 {
                    0 => (1 << 14) - len,
                    1 => usize::from(script.byte()).min((1 << 14) - len),
                    _ => 0,
                };
                if !closed {
                    expected.extend_from_slice(&content);
                }
                wire.extend(client.seal(&[&content[..], &[23], &vec![0; padding]].concat()));
            }
            5 | 6 => {
                let request = u8::from(op % 12 == 6);
                let message = [24, 0, 0, 1, request];
                if script.byte() % 2 == 0 {
                    wire.extend(client.seal(&[&message[..], &[22]].concat()));
                } else {
                    let at = usize::from(script.byte() % 4) + 1;
                    wire.extend(client.seal(&[&message[..at], &[22]].concat()));
                    wire.extend(client.seal(&[&message[at..], &[22]].concat()));
                }
                client.next();
                requested |= request == 1 && !closed;
            }
            7 => wire.extend(client.seal(&[1, 90, 21])),
            8 => wire.extend(client.seal(&[23])),
            9 => {
                wire.extend(client.seal(&[1, 0, 21]));
                closed = true;
            }
            _ => {}
        }
    }
    let garble = script.byte();
    let garbled = garble % 4 == 0 && !wire.is_empty();
    if garbled {
        let at = (usize::from(garble) << 8 | usize::from(script.byte())) * 131 % wire.len();
        wire[at] ^= script.byte() | 1;
    }
    let sizes = [
        script.u16() % MAX_RECORD + 1,
        usize::from(script.byte()) + 1,
        MAX_RECORD * 2,
        7,
    ];
    // Between reads we send: small chunks, sometimes many records' worth.
    let mut sent_data = Vec::new();
    let mut round = 0_usize;
    let (outcome, opened) = feed(&mut records, &mut server, &wire, &sizes, |records, out| {
        round += 1;
        let chunk: Vec<u8> = (0..round * 37 % 20_000).map(|i| i as u8).collect();
        let pieces = [
            &chunk[..chunk.len() / 3],
            &b"frame"[..],
            &chunk[chunk.len() / 3..],
        ];
        records
            .seal(pieces.iter().copied(), out)
            .expect("sealing never fails");
        sent_data.extend(pieces.concat());
    });
    assert!(
        expected.starts_with(&outcome.plaintext),
        "delivered bytes the client did not send"
    );
    let received: Vec<u8> = opened
        .iter()
        .filter(|(t, _)| *t == 23)
        .flat_map(|(_, c)| c.clone())
        .collect();
    assert_eq!(received, sent_data, "what we sent, as the peer reads it");
    if !garbled {
        assert_eq!(
            outcome.plaintext, expected,
            "an untouched stream is delivered whole"
        );
        let want = if closed {
            Received::PeerClosed
        } else {
            Received::Open
        };
        assert_eq!(outcome.result, Ok(want));
        if requested {
            assert!(
                opened.iter().any(|(t, _)| *t == 22),
                "a requested KeyUpdate is answered"
            );
        }
    }
}

fn records_rx_seq(mode: u8) -> u64 {
    u64::from(mode >> 7) << 40
}
