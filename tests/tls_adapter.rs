//! The sans-IO TLS adapter (`ringcast::tls`) against a real rustls client, in memory: handshakes
//! (TLS 1.2 / 1.3, ECDSA / RSA), ALPN, data both ways up to 16 MiB, resumption across sessions and
//! reloads, plain HTTP and TLS 1.0/1.1 on the TLS port, peer alerts, reload and its failure modes,
//! and a rough per-connection memory measurement (docs/tls.md).

mod common;
#[path = "tls_adapter/support.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::sync::Arc;

use ringcast::tls::{
    TlsAcceptor, TlsError, TlsFailure, TlsReloader, TlsSession, WorkerTls, plaintext_rejection,
};
use rustls::version::{TLS12, TLS13};
use rustls::{AlertDescription, HandshakeKind, ProtocolVersion};
use support::{DevCert, Link, client_config, legacy_client_hello};

#[test]
fn handshakes_with_ecdsa_and_rsa_over_tls12_and_tls13() {
    for cert in [DevCert::ecdsa(), DevCert::rsa()] {
        let acceptor = TlsAcceptor::new(&cert.config()).unwrap();
        for (version, expected) in [
            (&TLS13, ProtocolVersion::TLSv1_3),
            (&TLS12, ProtocolVersion::TLSv1_2),
        ] {
            let cfg = client_config(&[&cert], &[version]);
            let mut link = Link::connected(&cfg, acceptor.session().unwrap());
            assert_eq!(link.server.protocol_version(), Some(expected));
            assert_eq!(link.client.protocol_version(), Some(expected));
            assert_eq!(link.server.alpn(), Some(&b"http/1.1"[..]));
            assert_eq!(link.client.alpn_protocol(), Some(&b"http/1.1"[..]));
            assert!(!link.server.resumed());
            assert_eq!(link.presented(), cert.leaf());
            link.echo_check("hello");
        }
    }
}

#[test]
fn sixteen_mib_both_ways() {
    let cert = DevCert::ecdsa();
    let acceptor = TlsAcceptor::new(&cert.config()).unwrap();
    let payload: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    for version in [&TLS13, &TLS12] {
        let mut link = Link::connected(
            &client_config(&[&cert], &[version]),
            acceptor.session().unwrap(),
        );
        link.server_send(&payload);
        assert!(std::mem::take(&mut link.at_client) == payload);
        link.client_send(&payload);
        assert!(std::mem::take(&mut link.at_server) == payload);
    }
}

#[test]
fn vectored_encrypt_packs_frames_into_fewer_records() {
    let cert = DevCert::ecdsa();
    let acceptor = TlsAcceptor::new(&cert.config()).unwrap();
    let cfg = client_config(&[&cert], &[&TLS13]);
    let mut link = Link::connected(&cfg, acceptor.session().unwrap());
    let frames: Vec<Vec<u8>> = (0..100)
        .map(|i| format!("tick {i:03} ").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let (mut packed, mut separate) = (Vec::new(), Vec::new());
    link.server.encrypt_vectored(&refs, &mut packed).unwrap();
    for frame in &refs {
        link.server.encrypt(frame, &mut separate).unwrap();
    }
    let plain = frames.concat();
    // TLS 1.3 AES-GCM: 22 bytes of overhead per record (header 5, content type 1, tag 16).
    assert_eq!(packed.len(), plain.len() + 22);
    assert_eq!(separate.len(), plain.len() + 100 * 22);
    link.client_receive(&packed);
    link.client_receive(&separate);
    assert_eq!(link.at_client, [plain.clone(), plain].concat());
}

#[test]
fn ticket_resumes_on_another_session_of_the_same_acceptor() {
    let cert = DevCert::ecdsa();
    let acceptor = TlsAcceptor::new(&cert.config()).unwrap();
    for version in [&TLS13, &TLS12] {
        // One ClientConfig: its resumption store carries the ticket to the second connection.
        let cfg = client_config(&[&cert], &[version]);
        let mut first = Link::connected(&cfg, acceptor.session().unwrap());
        first.echo_check("first");
        assert!(!first.server.resumed());
        // Another session, as another worker would make it from the same shared config.
        let mut second = Link::connected(
            &cfg,
            TlsSession::new(acceptor.server_config().clone()).unwrap(),
        );
        assert!(second.server.resumed(), "{version:?} did not resume");
        assert_eq!(second.client.handshake_kind(), Some(HandshakeKind::Resumed));
        second.echo_check("second");
    }
}

#[test]
fn plain_http_on_the_tls_port_gets_a_400() {
    let cert = DevCert::ecdsa();
    let acceptor = TlsAcceptor::new(&cert.config()).unwrap();
    for request in [
        &b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"P",
        b"OPTIONS * HTTP/1.1\r\n",
    ] {
        let mut server = acceptor.session().unwrap();
        let (mut plain, mut out) = (Vec::new(), Vec::new());
        let err = server.receive(request, &mut plain, &mut out).unwrap_err();
        assert!(matches!(err, TlsFailure::PlaintextOnTlsPort), "{err:?}");
        assert_eq!(out, plaintext_rejection());
        assert!(plain.is_empty());
    }
    let text = String::from_utf8_lossy(plaintext_rejection()).into_owned();
    assert!(text.starts_with("HTTP/1.1 400 ") && text.ends_with("this port speaks TLS (wss://)\n"));
}

#[test]
fn tls10_and_tls11_client_hellos_get_a_protocol_version_alert() {
    let cert = DevCert::ecdsa();
    let acceptor = TlsAcceptor::new(&cert.config()).unwrap();
    for (version, split) in [(0x0301u16, 0), (0x0302, 7), (0x0300, 1)] {
        let hello = legacy_client_hello(version);
        let mut server = acceptor.session().unwrap();
        let (mut plain, mut out) = (Vec::new(), Vec::new());
        // Also in two pieces, the version arriving in the second.
        server
            .receive(&hello[..split], &mut plain, &mut out)
            .unwrap();
        let err = server
            .receive(&hello[split..], &mut plain, &mut out)
            .unwrap_err();
        assert!(
            matches!(err, TlsFailure::ProtocolVersion { offered: Some(v) } if v == version),
            "{err:?}"
        );
        let alert = u8::from(AlertDescription::ProtocolVersion);
        assert_eq!(out, [0x15, 0x03, 0x01, 0x00, 0x02, 0x02, alert]);
        assert!(err.to_string().contains("TLS 1.2 or 1.3 required"), "{err}");
    }
}

#[test]
fn client_rejecting_the_certificate_is_a_peer_alert() {
    let (cert, other) = (DevCert::ecdsa(), DevCert::ecdsa());
    let acceptor = TlsAcceptor::new(&cert.config()).unwrap();
    let mut link = Link::new(
        &client_config(&[&other], &[&TLS13]),
        acceptor.session().unwrap(),
    );
    // The client finds an anchor with the same subject (CN=localhost) but the signature does not
    // verify: it says decrypt_error (an unknown issuer would be unknown_ca).
    let err = link.pump().unwrap_err();
    assert!(matches!(err, TlsFailure::Peer(_)), "{err:?}");
    assert!(link.client_error.is_some());
}

#[test]
fn no_common_alpn_fails_the_handshake_with_an_alert() {
    let cert = DevCert::ecdsa();
    let acceptor = TlsAcceptor::new(&cert.config()).unwrap();
    let mut cfg = (*client_config(&[&cert], &[&TLS13])).clone();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let mut link = Link::new(&Arc::new(cfg), acceptor.session().unwrap());
    let err = link.pump().unwrap_err();
    assert!(matches!(err, TlsFailure::Handshake(_)), "{err:?}");
    assert!(
        matches!(
            link.client_error,
            Some(rustls::Error::AlertReceived(
                AlertDescription::NoApplicationProtocol
            ))
        ),
        "{:?}",
        link.client_error
    );
    // A client offering no ALPN at all is served, with no protocol negotiated.
    let mut cfg = (*client_config(&[&cert], &[&TLS13])).clone();
    cfg.alpn_protocols.clear();
    let link = Link::connected(&Arc::new(cfg), acceptor.session().unwrap());
    assert_eq!(link.server.alpn(), None);
}

#[test]
fn close_notify_both_ways() {
    let cert = DevCert::ecdsa();
    let acceptor = TlsAcceptor::new(&cert.config()).unwrap();
    let mut link = Link::connected(
        &client_config(&[&cert], &[&TLS13]),
        acceptor.session().unwrap(),
    );
    let mut out = Vec::new();
    link.server.send_close_notify(&mut out);
    link.client_receive(&out);
    assert!(link.client_error.is_none());
    link.client.send_close_notify();
    link.pump().unwrap();
    assert!(link.server.peer_closed());
}

#[test]
fn reload_serves_the_new_certificate_to_new_sessions_only() {
    let (old, new) = (DevCert::ecdsa(), DevCert::ecdsa());
    let live = DevCert::ecdsa(); // the configured paths; we copy `old`, then `new` over them
    copy_pair(&old, &live);
    let reloader = Arc::new(TlsReloader::new(&live.config()).unwrap());
    let mut worker = WorkerTls::new(Arc::clone(&reloader));
    let cfg = client_config(&[&old, &new], &[&TLS13]);

    let mut before = Link::connected(&cfg, worker.session().unwrap());
    assert_eq!(before.presented(), old.leaf());
    assert!(!reloader.changed_on_disk());

    copy_pair(&new, &live);
    assert!(reloader.changed_on_disk());
    reloader.reload().unwrap();
    assert!(!reloader.changed_on_disk());
    assert_eq!(reloader.generation(), 1);

    // A fresh client (no ticket: a resumed session keeps the identity it was started with).
    let fresh = client_config(&[&old, &new], &[&TLS13]);
    let mut after = Link::connected(&fresh, worker.session().unwrap());
    assert_eq!(after.presented(), new.leaf());
    assert!(!after.server.resumed());
    after.echo_check("after");
    before.echo_check("before, still open");
    // The ticket key survived the reload: a session from before resumes after it.
    let resumed = Link::connected(&cfg, worker.session().unwrap());
    assert!(resumed.server.resumed());
}

#[test]
fn failed_reload_keeps_the_old_configuration() {
    let (good, live) = (DevCert::ecdsa(), DevCert::ecdsa());
    copy_pair(&good, &live);
    let reloader = Arc::new(TlsReloader::new(&live.config()).unwrap());
    let mut worker = WorkerTls::new(Arc::clone(&reloader));
    let cfg = client_config(&[&good], &[&TLS13]);

    std::fs::write(live.cert(), b"-----BEGIN CERTIFICATE-----\ntruncated").unwrap();
    assert!(reloader.changed_on_disk());
    let err = reloader.reload().unwrap_err();
    assert!(matches!(err, TlsError::BadPem { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&live.cert().display().to_string()),
        "{err}"
    );
    // Reported once, not on every timer tick until the file changes again.
    assert!(!reloader.changed_on_disk());
    assert_eq!(reloader.generation(), 0);
    let mut link = Link::connected(&cfg, worker.session().unwrap());
    assert_eq!(link.presented(), good.leaf());
    link.echo_check("old config");

    std::fs::copy(good.cert(), live.cert()).unwrap();
    std::fs::remove_file(live.key()).unwrap();
    assert!(reloader.changed_on_disk());
    let err = reloader.reload().unwrap_err();
    assert!(matches!(err, TlsError::MissingFile { .. }), "{err:?}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    Link::connected(&cfg, worker.session().unwrap()).echo_check("still old");
}

#[test]
fn load_errors_name_the_problem() {
    let (a, b, rsa) = (DevCert::ecdsa(), DevCert::ecdsa(), DevCert::rsa());
    let load = |cert: std::path::PathBuf, key: std::path::PathBuf| {
        TlsAcceptor::new(&ringcast::tls::TlsConfig::new(cert, key)).unwrap_err()
    };
    let err = load(a.cert(), b.key());
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("does not belong"), "{err}");
    assert!(matches!(
        load(rsa.cert(), a.key()),
        TlsError::KeyMismatch { .. }
    ));
    let err = load(a.key(), a.cert());
    assert!(
        matches!(
            err,
            TlsError::NoCertificate {
                looks_like_key: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("swapped"), "{err}");
    let err = load(a.cert(), a.dir.0.join("nope.pem"));
    assert!(matches!(err, TlsError::MissingFile { .. }), "{err:?}");
}

/// Copies `from`'s cert and key over `to`'s (in place: same inodes, new contents and mtime).
fn copy_pair(from: &DevCert, to: &DevCert) {
    std::fs::copy(from.cert(), to.cert()).unwrap();
    std::fs::copy(from.key(), to.key()).unwrap();
}

// ---- rough memory per connection (printed; docs/tls.md quotes it) ----

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static NET: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = NET.try_with(|n| n.set(n.get() + delta));
    }
}

// SAFETY: forwards to System unchanged; only counts sizes on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` with this thread's allocations counted into NET.
fn counted<T>(f: impl FnOnce() -> T) -> T {
    COUNTING.set(true);
    let r = f();
    COUNTING.set(false);
    r
}

/// Like `Link::pump`, but counting only the server's allocations that outlive each call.
fn counted_pump(link: &mut Link) {
    loop {
        let mut to_server = Vec::new();
        while link.client.wants_write() {
            link.client.write_tls(&mut to_server).unwrap();
        }
        if to_server.is_empty() {
            return;
        }
        let (mut plain, mut out) = (Vec::new(), Vec::new());
        counted(|| link.server.receive(&to_server, &mut plain, &mut out)).unwrap();
        let (plain_copy, out_copy) = (plain.clone(), out.clone());
        counted(|| drop((plain, out)));
        link.at_server.extend_from_slice(&plain_copy);
        link.client_receive(&out_copy);
    }
}

/// The "Memory per connection" table of docs/tls.md: row label → (TLS 1.3, TLS 1.2) bytes.
fn documented_memory() -> Vec<(String, [isize; 2])> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/tls.md")).unwrap();
    let section = doc
        .split("## Memory per connection")
        .nth(1)
        .expect("docs/tls.md has a 'Memory per connection' section");
    let bytes = |cell: &str| -> isize {
        let digits: String = cell.chars().filter(char::is_ascii_digit).collect();
        assert!(cell.trim().ends_with(" B"), "not a byte count: {cell:?}");
        digits.parse().unwrap()
    };
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter(|l| !l.starts_with("|---") && !l.starts_with("| |"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 3, "row {l:?}");
            (cells[0].to_string(), [bytes(cells[1]), bytes(cells[2])])
        })
        .collect()
}

#[test]
fn memory_per_connection() {
    let cert = DevCert::ecdsa();
    let acceptor = TlsAcceptor::new(&cert.config()).unwrap();
    let documented = documented_memory();
    let doc = |label: &str, column: usize| -> isize {
        documented
            .iter()
            .find(|(l, _)| l.starts_with(label))
            .unwrap_or_else(|| panic!("docs/tls.md has no row {label:?}: {documented:?}"))
            .1[column]
    };
    for (column, version) in [&TLS13, &TLS12].into_iter().enumerate() {
        let cfg = client_config(&[&cert], &[version]);
        NET.set(0);
        let server = counted(|| acceptor.session().unwrap());
        let fresh = NET.get();
        let mut link = Link::new(&cfg, server);
        counted_pump(&mut link);
        let handshaken = NET.get();
        link.client.writer().write_all(&[b'x'; 200]).unwrap();
        counted_pump(&mut link);
        let idle = NET.get();
        link.client.writer().write_all(&[b'x'; 16 * 1024]).unwrap();
        counted_pump(&mut link);
        let after_big = NET.get();
        link.client.writer().write_all(&[b'x'; 200]).unwrap();
        counted_pump(&mut link);
        let idle_again = NET.get();
        let session = link.server;
        counted(|| drop(session));
        let after_drop = NET.get();
        println!(
            "{version:?}: size_of TlsSession {} B; heap: new {fresh} B, after handshake {handshaken} B, idle after a 200 B message {idle} B, after a 16 KiB message {after_big} B, after another 200 B {idle_again} B, after drop {after_drop} B",
            size_of::<TlsSession>(),
        );
        // The figures docs/tls.md states, exactly (a rustls upgrade that changes them updates the doc).
        let measured = [
            (
                "`size_of::<TlsSession>()`",
                size_of::<TlsSession>() as isize,
            ),
            ("heap, new session", fresh),
            ("heap, after the handshake", handshaken),
            ("heap, idle after a 200 B client message", idle),
            ("heap, right after a 16 KiB client message", after_big),
        ];
        for (label, value) in measured {
            assert_eq!(
                value,
                doc(label, column),
                "{version:?} {label}: measured {value} B, docs/tls.md says {} B",
                doc(label, column)
            );
        }
        // No record-sized buffer left behind: a 16 KiB message leaves exactly the idle footprint.
        assert_eq!(
            after_big,
            idle,
            "{version:?}: a 16 KiB message left {} B behind",
            after_big - idle
        );
        assert_eq!(idle_again, idle, "{version:?}: idle after the big message");
        // Nothing leaks; a TLS 1.2 session leaves its entry (~200 B) in the shared session cache.
        if column == 0 {
            assert_eq!(after_drop, 0, "TLS 1.3 session leaks {after_drop} B");
        } else {
            assert!(
                (150..=250).contains(&after_drop),
                "TLS 1.2: {after_drop} B left after drop; docs/tls.md says ~200 B in the session cache"
            );
        }
    }
}
