//! Unit tests of the record layer (`record.rs`) with fixed secrets: a mirror layer (the same
//! secrets, swapped) is the client, and records are crafted with its keys. The RFC 8446 §5 rules the
//! fuzz target (`fuzz/fuzz_targets/tls_record.rs`) and a reading of the RFC found missing, one test each.

use super::*;

const CLIENT: [u8; 32] = [0xC1; 32];
const SERVER: [u8; 32] = [0x5E; 32];

/// Our layer and its peer: the same traffic secrets, client and server swapped.
fn pair(rx_seq: u64) -> (RecordLayer, RecordLayer) {
    let server = RecordLayer::with_secrets(0x1301, &CLIENT, &SERVER, rx_seq, 0).unwrap();
    let client = RecordLayer::with_secrets(0x1301, &SERVER, &CLIENT, 0, rx_seq).unwrap();
    (server, client)
}

/// One record from `peer` around `inner` (content, inner content type, padding), at its next
/// sequence number.
fn craft(peer: &mut RecordLayer, inner: &[u8]) -> Vec<u8> {
    let seq = peer.tx.seq;
    peer.tx.seq = seq.wrapping_add(1);
    let len = (inner.len() + TAG_LEN) as u16;
    let header = [CONTENT_APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
    let mut body = inner.to_vec();
    let tag = peer
        .tx
        .key
        .seal_in_place_separate_tag(nonce(&peer.tx.iv, seq), Aad::from(header), &mut body)
        .unwrap();
    [&header[..], &body, tag.as_ref()].concat()
}

fn refused(server: &mut RecordLayer, wire: &[u8]) -> (RecordError, Vec<u8>) {
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    match server.receive(wire, &mut plain, &mut out) {
        Err(TlsFailure::Record(e)) => (e, out),
        other => panic!("{other:?}"),
    }
}

/// The records `peer` opens from `wire`: (plaintext, what it answered).
fn opened(peer: &mut RecordLayer, wire: &[u8]) -> (Vec<u8>, Result<Received, TlsFailure>) {
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    let result = peer.receive(wire, &mut plain, &mut out);
    (plain, result)
}

#[test]
fn inner_plaintext_over_2_14_plus_1_counts_its_padding() {
    // RFC 8446 §5.4: the full TLSInnerPlaintext (content, type, padding) is at most 2^14 + 1 bytes.
    let (mut server, mut client) = pair(0);
    let at_limit = [&[7; 100][..], &[23], &vec![0; MAX_PAYLOAD - 100]].concat();
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    server
        .receive(&craft(&mut client, &at_limit), &mut plain, &mut out)
        .unwrap();
    assert_eq!(plain, [7; 100]);
    let over = [&[7; 100][..], &[23], &vec![0; MAX_PAYLOAD - 99]].concat();
    let (e, out) = refused(&mut server, &craft(&mut client, &over));
    assert_eq!(e, RecordError::RecordOverflow);
    assert_eq!(e.alert(), AlertDescription::RecordOverflow);
    // The alert is readable by the peer.
    let (_, result) = opened(&mut client, &out);
    assert!(matches!(
        result,
        Err(TlsFailure::Peer(AlertDescription::RecordOverflow))
    ));
}

#[test]
fn a_key_update_request_other_than_0_or_1_is_illegal_parameter() {
    let (mut server, mut client) = pair(0);
    let (e, _) = refused(&mut server, &craft(&mut client, &[24, 0, 0, 1, 2, 22]));
    assert_eq!(e, RecordError::BadKeyUpdateRequest { value: 2 });
    assert_eq!(e.alert(), AlertDescription::IllegalParameter);
}

#[test]
fn many_key_update_requests_in_one_read_get_one_answer() {
    let (mut server, mut client) = pair(0);
    let mut wire = Vec::new();
    for _ in 0..5 {
        wire.extend(craft(&mut client, &[24, 0, 0, 1, 1, 22]));
        let (_, key) = client.keys.next_tx().unwrap();
        (client.tx.key, client.tx.iv, client.tx.seq) = (key.context().unwrap(), key.iv, 0);
    }
    wire.extend(craft(&mut client, b"after\x17"));
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    server.receive(&wire, &mut plain, &mut out).unwrap();
    assert_eq!(plain, b"after");
    // One record out: the KeyUpdate; the client follows it and reads what we send next.
    assert_eq!(out.len(), HEADER_LEN + 5 + 1 + TAG_LEN);
    server.seal([&b"hello"[..]].into_iter(), &mut out).unwrap();
    let (plain, result) = opened(&mut client, &out);
    assert_eq!(
        (plain, result.unwrap()),
        (b"hello".to_vec(), Received::Open)
    );
}

#[test]
fn a_wrong_outer_type_is_refused_at_its_first_byte() {
    // A change_cipher_spec after the handshake (allowed only before the peer's Finished).
    let (mut server, _) = pair(0);
    let (e, _) = refused(&mut server, &[20]);
    assert_eq!(e, RecordError::UnexpectedRecord { content_type: 20 });
    let (mut server, _) = pair(0);
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    assert_eq!(
        server.receive(&[23, 3], &mut plain, &mut out).unwrap(),
        Received::Open
    );
}

#[test]
fn records_after_close_notify_in_the_same_read_are_ignored() {
    let (mut server, mut client) = pair(0);
    let mut wire = craft(&mut client, b"last\x17");
    wire.extend(craft(&mut client, &[1, ALERT_CLOSE_NOTIFY, CONTENT_ALERT]));
    wire.extend(craft(&mut client, b"ignored\x17"));
    wire.extend(b"\x15garbage");
    let (plain, result) = opened(&mut server, &wire);
    assert_eq!(
        (plain, result.unwrap()),
        (b"last".to_vec(), Received::PeerClosed)
    );
    // We may still send (TLS 1.3 closes each direction on its own).
    let mut out = Vec::new();
    server.seal([&b"bye"[..]].into_iter(), &mut out).unwrap();
    server.close_notify(&mut out).unwrap();
    let (plain, result) = opened(&mut client, &out);
    assert_eq!(
        (plain, result.unwrap()),
        (b"bye".to_vec(), Received::PeerClosed)
    );
}

#[test]
fn zero_length_alerts_and_alerts_inside_a_split_handshake_are_refused() {
    let (mut server, mut client) = pair(0);
    let (e, _) = refused(&mut server, &craft(&mut client, &[CONTENT_ALERT]));
    assert_eq!(
        (e, e.alert()),
        (RecordError::Malformed, AlertDescription::DecodeError)
    );
    let (mut server, mut client) = pair(0);
    let mut wire = craft(&mut client, &[24, 0, 22]);
    wire.extend(craft(&mut client, &[1, ALERT_CLOSE_NOTIFY, CONTENT_ALERT]));
    let (e, _) = refused(&mut server, &wire);
    assert_eq!(e, RecordError::UnexpectedRecord { content_type: 21 });
}

#[test]
fn a_refused_record_leaves_only_what_came_before_it() {
    let (mut server, mut client) = pair(0);
    let mut wire = craft(&mut client, b"good\x17");
    wire.extend(craft(
        &mut client,
        &[b'x'; MAX_PAYLOAD + 1]
            .iter()
            .chain(&[23])
            .copied()
            .collect::<Vec<_>>(),
    ));
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    let err = server.receive(&wire, &mut plain, &mut out).unwrap_err();
    assert!(
        matches!(err, TlsFailure::Record(RecordError::RecordOverflow)),
        "{err:?}"
    );
    assert_eq!(plain, b"good");
}

#[test]
fn the_receiving_sequence_number_never_wraps() {
    // RFC 8446 §5.3: a sequence number must not wrap; a peer that did not change keys in 2^64 - 1
    // records is stopped (internal_error: it cannot happen with a real peer, whose AEAD limits are
    // far lower).
    let (mut server, mut client) = pair(u64::MAX - 1);
    let (plain, result) = opened(&mut server, &craft(&mut client, b"last\x17"));
    assert_eq!((plain, result.unwrap()), (b"last".to_vec(), Received::Open));
    let (e, _) = refused(&mut server, &craft(&mut client, b"wraps\x17"));
    assert_eq!(e, RecordError::Internal);
}

#[test]
fn our_key_update_comes_at_2_22_records_and_the_peer_follows() {
    let (mut server, mut client) = pair(0);
    server.tx.seq = KEY_UPDATE_AFTER - 2;
    client.rx_seq = KEY_UPDATE_AFTER - 2;
    let mut out = Vec::new();
    for chunk in [&b"a"[..], b"b", b"c"] {
        server.seal([chunk].into_iter(), &mut out).unwrap();
    }
    // Two records under the old key, the KeyUpdate, one under the new key (sequence number 1 next).
    assert_eq!(server.tx.seq, 1);
    assert_eq!(out.len(), 3 * (RECORD_OVERHEAD + 1) + RECORD_OVERHEAD + 5);
    let (plain, result) = opened(&mut client, &out);
    assert_eq!((plain, result.unwrap()), (b"abc".to_vec(), Received::Open));
}

#[test]
fn caught_secrets_replace_rustls_key_schedule_only_when_they_derive_its_ivs() {
    use super::super::record_keys::{Cipher, Secrets};
    let current = Secrets::new(Cipher::Aes128Gcm, &CLIENT, &SERVER).unwrap();
    let (rx, tx) = (
        current.current(true).unwrap(),
        current.current(false).unwrap(),
    );
    assert!(Secrets::matching(&CLIENT, &SERVER, &rx, &tx).is_some());
    // Swapped, or one direction already moved on (a KeyUpdate rustls followed): rustls' schedule stays.
    assert!(Secrets::matching(&SERVER, &CLIENT, &rx, &tx).is_none());
    assert!(Secrets::matching(&[0xC2; 32], &SERVER, &rx, &tx).is_none());
    assert!(Secrets::matching(&CLIENT, &[0x5F; 32], &rx, &tx).is_none());
    // A secret of the wrong length for the suite's hash (SHA-384 is 48 bytes).
    assert!(Secrets::matching(&[0xC1; 48], &[0x5E; 48], &rx, &tx).is_none());
}
