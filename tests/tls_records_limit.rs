//! Key changes at the real limits of our TLS 1.3 record layer (src/tls/record.rs), against rustls
//! in memory: our own KeyUpdate after 2^22 records, and the client's KeyUpdates (requested and not)
//! after 2^22 records each way. Release only (`cargo test --release`, as tests/run.sh runs it): each
//! test seals and opens millions of records.

mod common;
#[allow(dead_code)]
#[path = "tls_adapter/support.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use ringcast::tls::{TlsAcceptor, TlsSession};
use rustls::ClientConfig;
use rustls::version::TLS13;
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

/// The per-record nonce: the IV XOR the sequence number (RFC 8446 §5.3).
fn nonce(iv: &[u8; 12], seq: u64) -> Nonce {
    let mut n = *iv;
    for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
        *b ^= s;
    }
    Nonce::assume_unique_for_key(n)
}

/// The records we send under one key before our KeyUpdate (record.rs, `KEY_UPDATE_AFTER`).
const LIMIT: usize = 1 << 22;
const BATCH: usize = 1 << 16;

/// The inner lengths of the records in `wire`.
fn record_lengths(mut wire: &[u8]) -> Vec<usize> {
    let mut lengths = Vec::new();
    while !wire.is_empty() {
        let len = usize::from(u16::from_be_bytes([wire[3], wire[4]]));
        lengths.push(len - 16);
        wire = &wire[5 + len..];
    }
    lengths
}

/// Our own KeyUpdate at the real limit: 2^22 + 2^16 one-byte records sealed by us and read by a
/// rustls client (its own record layer follows our KeyUpdate), then the client's KeyUpdate
/// (update_requested) at that count, answered, and data both ways.
///
/// The real limit, not a test-visible one: the test command runs `cargo test --release`, where this
/// took 14 s (4.26M records sealed by us and opened by rustls) on the shared 2-core VM at load 7, in
/// parallel with the next test and a fuzz build; in a debug build it would take minutes, hence the
/// early return there (no debug run of this file is in the test command).
#[test]
fn our_key_update_after_2_22_records_is_read_by_rustls() {
    if cfg!(debug_assertions) {
        eprintln!("skipped: 4M records, run with --release (as tests/run.sh does)");
        return;
    }
    let started = Instant::now();
    let (_cert, _acceptor, mut link) = tls13_link();
    let mut key_updates = Vec::new();
    let mut records = 0;
    let mut wire = Vec::new();
    for _ in 0..LIMIT / BATCH + 1 {
        wire.clear();
        for _ in 0..BATCH {
            link.server.encrypt(b"x", &mut wire).unwrap();
        }
        for len in record_lengths(&wire) {
            match len {
                // A one-byte record: content and inner type.
                2 => {}
                // KeyUpdate: four bytes of header, one of request, inner type.
                6 => key_updates.push(records),
                other => panic!("a record of {other} bytes"),
            }
            records += 1;
        }
        link.client_receive(&wire);
        assert!(link.client_error.is_none(), "{:?}", link.client_error);
        assert!(link.at_client.len() == BATCH && link.at_client.iter().all(|&b| b == b'x'));
        link.at_client.clear();
    }
    // Our sending sequence number started at the count of session tickets sent (a few).
    assert_eq!(key_updates.len(), 1, "{key_updates:?}");
    assert!(
        (LIMIT - 8..LIMIT).contains(&key_updates[0]),
        "{key_updates:?}"
    );
    for round in 0..2 {
        link.client.refresh_traffic_keys().unwrap();
        link.echo_check(&format!("client KeyUpdate {round} after 2^22 records"));
    }
    eprintln!("{records} records in {:?}", started.elapsed());
}

/// The client's direction at high counts, with a raw client whose keys come from rustls (the traffic
/// secrets through its key log, the sequence numbers through secret extraction) and whose KeyUpdates
/// follow RFC 8446 §7.2 with HKDF written here: 2^22 records from the client, its KeyUpdate
/// (update_not_requested), 2^22 + 2^16 records from us (our KeyUpdate, which the client follows),
/// then its KeyUpdate (update_requested), which we answer. Release only, as above (22 s for 8.5M
/// records at load 7; the test's own sealing and opening is half of it).
#[test]
fn client_key_updates_keep_working_at_high_counts() {
    if cfg!(debug_assertions) {
        eprintln!("skipped: 8M records, run with --release (as tests/run.sh does)");
        return;
    }
    let started = Instant::now();
    let (mut server, mut client) = KeyedClient::connect();
    let (mut plain, mut out) = (Vec::new(), Vec::new());
    let one = client.tx.seal(b"c\x17");
    assert!(server.receive(&one, &mut plain, &mut out).is_ok() && plain == b"c");
    // 2^22 records from the client.
    for _ in 0..LIMIT / BATCH {
        let wire: Vec<u8> = (0..BATCH).flat_map(|_| client.tx.seal(b"c\x17")).collect();
        plain.clear();
        server.receive(&wire, &mut plain, &mut out).unwrap();
        assert!(plain.len() == BATCH && out.is_empty());
    }
    // KeyUpdate(update_not_requested): no answer, and the next records open with the next key.
    let mut wire = client.tx.seal(&[24, 0, 0, 1, 0, 22]);
    client.tx.next();
    wire.extend(client.tx.seal(b"after update_not_requested\x17"));
    plain.clear();
    server.receive(&wire, &mut plain, &mut out).unwrap();
    assert!(plain == b"after update_not_requested" && out.is_empty());
    // 2^22 + 2^16 records from us: the client follows our KeyUpdate.
    let mut updates = 0;
    for _ in 0..LIMIT / BATCH + 1 {
        out.clear();
        for _ in 0..BATCH {
            server.encrypt(b"s", &mut out).unwrap();
        }
        let records = client.rx.open_all(&mut client.rx_updates, &out);
        assert!(
            records
                .iter()
                .all(|(t, c)| (*t, &c[..]) == (23, b"s") || *t == 22)
        );
        updates += records.iter().filter(|(t, _)| *t == 22).count();
    }
    assert_eq!(updates, 1);
    // KeyUpdate(update_requested) at these counts: answered with our KeyUpdate, then our data.
    out.clear();
    let wire = client.tx.seal(&[24, 0, 0, 1, 1, 22]);
    client.tx.next();
    plain.clear();
    server.receive(&wire, &mut plain, &mut out).unwrap();
    server.encrypt(b"after the answer", &mut out).unwrap();
    let records = client.rx.open_all(&mut client.rx_updates, &out);
    assert_eq!(
        records,
        vec![
            (22, vec![24, 0, 0, 1, 0]),
            (23, b"after the answer".to_vec())
        ]
    );
    let wire = client.tx.seal(b"and the client's\x17");
    plain.clear();
    server.receive(&wire, &mut plain, &mut out).unwrap();
    assert_eq!(plain, b"and the client's");
    eprintln!("done in {:?}", started.elapsed());
}

/// The traffic secrets a rustls client logs (SSLKEYLOGFILE format: label, secret).
#[derive(Debug, Default)]
struct Secrets(Mutex<Vec<(String, Vec<u8>)>>);

impl rustls::KeyLog for Secrets {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        self.0
            .lock()
            .unwrap()
            .push((label.to_string(), secret.to_vec()));
    }
}

/// One direction of a TLS_AES_128_GCM_SHA256 connection, from its traffic secret.
struct Traffic {
    secret: Vec<u8>,
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
}

/// HKDF-Expand-Label(secret, label, "", len) with SHA-256 (RFC 8446 §7.1).
fn expand_label(secret: &[u8], label: &str, len: usize) -> Vec<u8> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let label = format!("tls13 {label}");
    let info: [&[u8]; 4] = [
        &(len as u16).to_be_bytes(),
        &[label.len() as u8],
        label.as_bytes(),
        &[0],
    ];
    let mut out = vec![0; len];
    hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, secret)
        .expand(&info, Len(len))
        .unwrap()
        .fill(&mut out)
        .unwrap();
    out
}

impl Traffic {
    fn new(secret: &[u8], seq: u64) -> Traffic {
        let key = expand_label(secret, "key", 16);
        Traffic {
            secret: secret.to_vec(),
            key: LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key).unwrap()),
            iv: expand_label(secret, "iv", 12).try_into().unwrap(),
            seq,
        }
    }

    fn next(&mut self) {
        *self = Traffic::new(&expand_label(&self.secret, "traffic upd", 32), 0);
    }

    fn seal(&mut self, inner: &[u8]) -> Vec<u8> {
        let len = (inner.len() + 16) as u16;
        let header = [23, 3, 3, (len >> 8) as u8, len as u8];
        let mut body = inner.to_vec();
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce(&self.iv, self.seq), Aad::from(header), &mut body)
            .unwrap();
        self.seq += 1;
        [&header[..], &body, tag.as_ref()].concat()
    }

    /// Our records, following our KeyUpdates (counted in `updates`).
    fn open_all(&mut self, updates: &mut usize, mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut records = Vec::new();
        while !wire.is_empty() {
            let len = usize::from(u16::from_be_bytes([wire[3], wire[4]]));
            let header: [u8; 5] = wire[..5].try_into().unwrap();
            let mut body = wire[5..5 + len].to_vec();
            wire = &wire[5 + len..];
            let plain = self
                .key
                .open_in_place(nonce(&self.iv, self.seq), Aad::from(header), &mut body)
                .expect("our record opens with the key the client derived");
            self.seq += 1;
            let end = plain.iter().rposition(|&b| b != 0).unwrap();
            let record = (plain[end], plain[..end].to_vec());
            if record.0 == 22 {
                assert_eq!(record.1, [24, 0, 0, 1, 0]);
                *updates += 1;
                self.next();
            }
            records.push(record);
        }
        records
    }
}

/// A client that did its handshake with rustls and then seals and opens records itself.
struct KeyedClient {
    tx: Traffic,
    rx: Traffic,
    rx_updates: usize,
}

impl KeyedClient {
    fn connect() -> (TlsSession, KeyedClient) {
        let cert = DevCert::ecdsa();
        let acceptor = TlsAcceptor::new(&cert.config()).unwrap();
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: vec![rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256],
            ..rustls::crypto::aws_lc_rs::default_provider()
        };
        let base = client_config(&[&cert], &[&TLS13]);
        let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&TLS13])
            .unwrap()
            .with_root_certificates(root_store(&cert))
            .with_no_client_auth();
        cfg.alpn_protocols = base.alpn_protocols.clone();
        cfg.enable_secret_extraction = true;
        let log = Arc::new(Secrets::default());
        cfg.key_log = log.clone();
        let link = Link::connected(&Arc::new(cfg), acceptor.session().unwrap());
        assert!(link.server.on_record_layer());
        #[allow(deprecated)]
        let extracted = link.client.dangerous_extract_secrets().unwrap();
        let secret = |label: &str| {
            let logged = log.0.lock().unwrap();
            logged.iter().find(|(l, _)| l == label).unwrap().1.clone()
        };
        let client = KeyedClient {
            tx: Traffic::new(&secret("CLIENT_TRAFFIC_SECRET_0"), extracted.tx.0),
            rx: Traffic::new(&secret("SERVER_TRAFFIC_SECRET_0"), extracted.rx.0),
            rx_updates: 0,
        };
        (link.server, client)
    }
}

fn root_store(cert: &DevCert) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.leaf()).unwrap();
    roots
}
