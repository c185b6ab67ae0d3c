//! Our TLS 1.3 record layer (src/tls/record.rs) against a real rustls client, in memory: the switch
//! from rustls after the handshake, KeyUpdate both ways, records split anywhere, and every record a
//! client may not send after the handshake (crafted with the client's own keys, which rustls hands
//! out with `enable_secret_extraction`), each refused with its alert.

mod common;
#[allow(dead_code)]
#[path = "tls_adapter/support.rs"]
mod support;

use std::io::Write;
use std::sync::Arc;

use aws_lc_rs::aead::{
    AES_128_GCM, AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey,
};
use ringcast::tls::{RecordError, TlsAcceptor, TlsFailure, TlsSession};
use rustls::version::{TLS12, TLS13};
use rustls::{AlertDescription, ClientConfig, ConnectionTrafficSecrets};
use support::{DevCert, Link, client_config};

fn tls13_link() -> (DevCert, TlsAcceptor, Link) {
    let cert = DevCert::ecdsa();
    let acceptor = TlsAcceptor::new(&cert.config()).unwrap();
    let link = Link::connected(
        &client_config(&[&cert], &[&TLS13]),
        acceptor.session().unwrap(),
    );
    (cert, acceptor, link)
}

#[test]
fn tls13_moves_to_the_record_layer_and_tls12_stays_with_rustls() {
    let cert = DevCert::ecdsa();
    let acceptor = TlsAcceptor::new(&cert.config()).unwrap();
    for (version, ours) in [(&TLS13, true), (&TLS12, false)] {
        let mut link = Link::connected(
            &client_config(&[&cert], &[version]),
            acceptor.session().unwrap(),
        );
        assert_eq!(link.server.on_record_layer(), ours, "{version:?}");
        assert_eq!(link.server.alpn(), Some(&b"http/1.1"[..]));
        link.echo_check("after the switch");
    }
}

#[test]
fn key_update_requested_by_the_client_is_answered_and_both_directions_rekey() {
    let (_cert, _acceptor, mut link) = tls13_link();
    for round in 0..3 {
        // rustls sends KeyUpdate(update_requested) and switches its sending key.
        link.client.refresh_traffic_keys().unwrap();
        link.client_send(format!("after client update {round}").as_bytes());
        assert_eq!(
            std::mem::take(&mut link.at_server),
            format!("after client update {round}").as_bytes()
        );
        // Our answer (a KeyUpdate, then the new key) went out in `pump`; the client reads our data
        // only if we switched keys in step.
        assert!(link.client_error.is_none(), "{:?}", link.client_error);
        link.server_send(format!("after server update {round}").as_bytes());
        assert_eq!(
            std::mem::take(&mut link.at_client),
            format!("after server update {round}").as_bytes()
        );
    }
}

#[test]
fn records_split_at_every_byte_and_joined_in_one_read() {
    let (_cert, _acceptor, mut link) = tls13_link();
    let big: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
    for message in [&b"small"[..], &big, b"tail"] {
        link.client.writer().write_all(message).unwrap();
    }
    let mut wire = Vec::new();
    while link.client.wants_write() {
        link.client.write_tls(&mut wire).unwrap();
    }
    let expected = [&b"small"[..], &big, b"tail"].concat();
    // One byte at a time.
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    for byte in wire.chunks(1) {
        link.server.receive(byte, &mut plain, &mut out).unwrap();
    }
    assert!(plain == expected && out.is_empty());
    // All of it again, in one read.
    for message in [&b"small"[..], &big, b"tail"] {
        link.client.writer().write_all(message).unwrap();
    }
    let mut wire = Vec::new();
    while link.client.wants_write() {
        link.client.write_tls(&mut wire).unwrap();
    }
    plain.clear();
    link.server.receive(&wire, &mut plain, &mut out).unwrap();
    assert!(plain == expected && out.is_empty());
}

#[test]
fn large_and_many_frames_round_trip_in_16_kib_records() {
    let (_cert, _acceptor, mut link) = tls13_link();
    let frames: Vec<Vec<u8>> = (0..300).map(|i| vec![i as u8; 100 + i]).collect();
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let mut out = Vec::new();
    link.server.encrypt_vectored(&refs, &mut out).unwrap();
    let plain = frames.concat();
    // 74,850 bytes: 5 records of at most 16 KiB, 22 bytes of overhead each.
    assert_eq!(out.len(), plain.len() + plain.len().div_ceil(16384) * 22);
    link.client_receive(&out);
    assert!(link.client_error.is_none(), "{:?}", link.client_error);
    assert!(link.at_client == plain);
}

#[test]
fn a_tampered_record_is_bad_record_mac_and_the_alert_reaches_the_client() {
    let (_cert, _acceptor, mut link) = tls13_link();
    link.client.writer().write_all(b"hello").unwrap();
    let mut wire = Vec::new();
    link.client.write_tls(&mut wire).unwrap();
    *wire.last_mut().unwrap() ^= 1;
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    let err = link
        .server
        .receive(&wire, &mut plain, &mut out)
        .unwrap_err();
    assert!(
        matches!(err, TlsFailure::Record(RecordError::BadRecordMac)),
        "{err:?}"
    );
    assert!(plain.is_empty());
    link.client_receive(&out);
    assert!(
        matches!(
            link.client_error,
            Some(rustls::Error::AlertReceived(AlertDescription::BadRecordMac))
        ),
        "{:?}",
        link.client_error
    );
    // The session is finished: more bytes are ignored.
    out.clear();
    link.server.receive(&wire, &mut plain, &mut out).unwrap();
    assert!(out.is_empty() && plain.is_empty());
}

/// The client's traffic keys, taken from rustls after the handshake, sealing whatever we like.
struct RawClient {
    tx: (LessSafeKey, [u8; 12], u64),
    rx: (LessSafeKey, [u8; 12], u64),
}

impl RawClient {
    /// A connected TLS 1.3 link, then the client turned into raw keys.
    fn connect() -> (TlsSession, RawClient) {
        let cert = DevCert::ecdsa();
        let acceptor = TlsAcceptor::new(&cert.config()).unwrap();
        let mut cfg: ClientConfig = (*client_config(&[&cert], &[&TLS13])).clone();
        cfg.enable_secret_extraction = true;
        let link = Link::connected(&Arc::new(cfg), acceptor.session().unwrap());
        let secrets = link.client.dangerous_extract_secrets().unwrap();
        let key = |(seq, s): (u64, ConnectionTrafficSecrets)| {
            let (alg, key, iv) = match s {
                ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&AES_128_GCM, key, iv),
                ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&AES_256_GCM, key, iv),
                ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                    (&CHACHA20_POLY1305, key, iv)
                }
                _ => unreachable!(),
            };
            let key = LessSafeKey::new(UnboundKey::new(alg, key.as_ref()).unwrap());
            (key, iv.as_ref().try_into().unwrap(), seq)
        };
        let raw = RawClient {
            tx: key(secrets.tx),
            rx: key(secrets.rx),
        };
        (link.server, raw)
    }

    fn nonce(iv: &[u8; 12], seq: u64) -> Nonce {
        let mut n = *iv;
        for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        Nonce::assume_unique_for_key(n)
    }

    /// One record: `inner` is content, inner content type and padding, as it goes under the AEAD.
    fn seal(&mut self, inner: &[u8]) -> Vec<u8> {
        let len = (inner.len() + 16) as u16;
        let header = [23, 3, 3, (len >> 8) as u8, len as u8];
        let mut body = inner.to_vec();
        let (key, iv, seq) = &mut self.tx;
        let tag = key
            .seal_in_place_separate_tag(Self::nonce(iv, *seq), Aad::from(header), &mut body)
            .unwrap();
        *seq += 1;
        [&header[..], &body, tag.as_ref()].concat()
    }

    /// The server's records: (inner content type, content) each.
    fn open(&mut self, mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut records = Vec::new();
        while !wire.is_empty() {
            let len = usize::from(u16::from_be_bytes([wire[3], wire[4]]));
            let header: [u8; 5] = wire[..5].try_into().unwrap();
            let mut body = wire[5..5 + len].to_vec();
            wire = &wire[5 + len..];
            let (key, iv, seq) = &mut self.rx;
            let plain = key
                .open_in_place(Self::nonce(iv, *seq), Aad::from(header), &mut body)
                .unwrap();
            *seq += 1;
            let end = plain.iter().rposition(|&b| b != 0).unwrap();
            records.push((plain[end], plain[..end].to_vec()));
        }
        records
    }
}

#[test]
fn padding_and_empty_records_are_accepted() {
    let (mut server, mut client) = RawClient::connect();
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    let mut wire = client.seal(&[b"pad".as_slice(), &[23], &[0; 100]].concat());
    wire.extend(client.seal(&[23])); // empty application data
    wire.extend(client.seal(&[b"more".as_slice(), &[23]].concat()));
    wire.extend(client.seal(&[1, 90, 21])); // warning user_canceled: no effect
    server.receive(&wire, &mut plain, &mut out).unwrap();
    assert_eq!(plain, b"padmore");
    assert!(out.is_empty());
    // A KeyUpdate split across two records (legal), update_not_requested: no answer.
    let mut wire = client.seal(&[24, 0, 22]);
    wire.extend(client.seal(&[0, 1, 0, 22]));
    server.receive(&wire, &mut plain, &mut out).unwrap();
    assert!(out.is_empty());
    // The server now opens with the next key: a record under the old one no longer decrypts.
    let err = server
        .receive(
            &client.seal(&[b"old key".as_slice(), &[23]].concat()),
            &mut plain,
            &mut out,
        )
        .unwrap_err();
    assert!(
        matches!(err, TlsFailure::Record(RecordError::BadRecordMac)),
        "{err:?}"
    );
    // close_notify: closed, later bytes ignored.
    let (mut server, mut client) = RawClient::connect();
    out.clear();
    server
        .receive(&client.seal(&[1, 0, 21]), &mut plain, &mut out)
        .unwrap();
    assert!(server.peer_closed() && out.is_empty());
    server.receive(b"garbage", &mut plain, &mut out).unwrap();
}

#[test]
fn records_a_client_may_not_send_are_refused_with_their_alert() {
    let new_session_ticket = [4, 0, 0, 5, 0, 0, 0, 0, 0, 22].to_vec();
    let client_hello = [1, 0, 0, 0, 22].to_vec();
    let key_update_then_more = [24, 0, 0, 1, 0, b'x', 22].to_vec();
    let bad_key_update = [24, 0, 0, 1, 7, 22].to_vec();
    let cases: Vec<(&str, Vec<u8>, RecordError)> = vec![
        (
            "NewSessionTicket from a client",
            new_session_ticket,
            RecordError::UnexpectedHandshake { msg_type: 4 },
        ),
        (
            "ClientHello (renegotiation)",
            client_hello,
            RecordError::UnexpectedHandshake { msg_type: 1 },
        ),
        (
            "KeyUpdate not at the end of its record",
            key_update_then_more,
            RecordError::KeyUpdateNotAtRecordEnd,
        ),
        (
            "KeyUpdate request 7",
            bad_key_update,
            RecordError::BadKeyUpdateRequest { value: 7 },
        ),
        (
            "inner plaintext of zeros only",
            vec![0; 8],
            RecordError::UnexpectedRecord { content_type: 0 },
        ),
        (
            "unknown inner content type",
            vec![1, 2, 3, 25],
            RecordError::UnexpectedRecord { content_type: 25 },
        ),
        (
            "three-byte alert",
            vec![2, 40, 0, 21],
            RecordError::Malformed,
        ),
        (
            "empty handshake record",
            vec![22],
            RecordError::UnexpectedRecord { content_type: 22 },
        ),
        (
            "inner plaintext over 16 KiB",
            [vec![b'x'; 16385], vec![23]].concat(),
            RecordError::RecordOverflow,
        ),
    ];
    for (what, inner, expected) in cases {
        let (mut server, mut client) = RawClient::connect();
        let (mut plain, mut out) = (Vec::new(), Vec::new());
        let err = server
            .receive(&client.seal(&inner), &mut plain, &mut out)
            .unwrap_err();
        assert!(
            matches!(&err, TlsFailure::Record(e) if *e == expected),
            "{what}: {err:?}"
        );
        assert_eq!(
            client.open(&out),
            vec![(21, vec![2, u8::from(expected.alert())])],
            "{what}: the alert"
        );
    }
}

#[test]
fn unencrypted_and_oversized_records_are_refused() {
    for (what, wire, expected) in [
        (
            "plaintext handshake record",
            vec![22, 3, 3, 0, 4, 24, 0, 0, 1],
            RecordError::UnexpectedRecord { content_type: 22 },
        ),
        (
            "change_cipher_spec after the handshake",
            vec![20, 3, 3, 0, 1, 1],
            RecordError::UnexpectedRecord { content_type: 20 },
        ),
        (
            "ciphertext over 2^14 + 256",
            vec![23, 3, 3, 0x41, 0x01],
            RecordError::RecordOverflow,
        ),
        (
            "too short for a tag",
            [vec![23, 3, 3, 0, 10], vec![0; 10]].concat(),
            RecordError::BadRecordMac,
        ),
    ] {
        let (mut server, mut client) = RawClient::connect();
        let (mut plain, mut out) = (Vec::new(), Vec::new());
        let err = server.receive(&wire, &mut plain, &mut out).unwrap_err();
        assert!(
            matches!(&err, TlsFailure::Record(e) if *e == expected),
            "{what}: {err:?}"
        );
        assert_eq!(
            client.open(&out),
            vec![(21, vec![2, u8::from(expected.alert())])]
        );
    }
}

#[test]
fn a_fatal_alert_from_the_client_is_a_peer_failure() {
    let (mut server, mut client) = RawClient::connect();
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    let err = server
        .receive(&client.seal(&[2, 40, 21]), &mut plain, &mut out)
        .unwrap_err();
    assert!(
        matches!(err, TlsFailure::Peer(AlertDescription::HandshakeFailure)),
        "{err:?}"
    );
    assert!(out.is_empty(), "no alert answers an alert");
}
