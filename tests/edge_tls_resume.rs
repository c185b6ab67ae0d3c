//! wss:// session resumption with a shared ticket-key file (`--tls-ticket-keys`), over real sockets with
//! a real rustls client: resumption across servers and restarts, rotation (the previous key still
//! decrypts, the one before does not), the file watch applying a rotated file without a restart (open
//! connections untouched), bad files refused at start, and `--tls-groups`.

mod common;
#[allow(dead_code)]
#[path = "tls_adapter/support.rs"]
mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, HandshakeKind, NamedGroup, StreamOwned};
use support::{DevCert, client_config};

type Tls = StreamOwned<ClientConnection, std::net::TcpStream>;

/// An 80-byte key, different for each `seed`.
fn key(seed: u8) -> Vec<u8> {
    (0..80u8)
        .map(|i| i.wrapping_mul(31).wrapping_add(seed.wrapping_mul(101)) ^ seed)
        .collect()
}

/// Writes the keys (newest first) as one file, atomically (temp file + rename, as an operator should).
fn write_keys(path: &Path, seeds: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, seeds.iter().flat_map(|&s| key(s)).collect::<Vec<_>>()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn keys_file(dir: &TempDir, name: &str, seeds: &[u8]) -> PathBuf {
    let path = dir.0.join(name);
    write_keys(&path, seeds);
    path
}

fn server(cert: &DevCert, keys: Option<&Path>, extra: &[&str]) -> Server {
    let (c, k) = (cert.cert(), cert.key());
    let mut args = vec![
        "--workers".to_string(),
        "2".into(),
        "--tls-cert".into(),
        c.to_string_lossy().into_owned(),
        "--tls-key".into(),
        k.to_string_lossy().into_owned(),
    ];
    if let Some(keys) = keys {
        args.push("--tls-ticket-keys".into());
        args.push(keys.to_string_lossy().into_owned());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    Server::start_tls(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A TLS 1.3 client with its own ticket store (a fresh one has no ticket).
fn client(cert: &DevCert) -> Arc<ClientConfig> {
    client_config(&[cert], &[&rustls::version::TLS13])
}

fn open(server: &Server, cfg: &Arc<ClientConfig>) -> Tls {
    let conn =
        ClientConnection::new(cfg.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
    let tcp = server.connect();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    StreamOwned::new(conn, tcp)
}

/// `GET /healthz` on `s`; the status. Reading to the end also takes in the tickets the server sent.
fn healthz(s: &mut Tls) -> u16 {
    write!(s, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    status_of(&resp)
}

/// One connection: handshake, `/healthz`; whether the handshake resumed a session.
fn connect(server: &Server, cfg: &Arc<ClientConfig>) -> HandshakeKind {
    let mut s = open(server, cfg);
    assert_eq!(healthz(&mut s), 200);
    s.conn.handshake_kind().expect("handshake done")
}

/// A fresh client that has done one full handshake with `server` and holds its tickets.
fn ticket_from(server: &Server, cert: &DevCert) -> Arc<ClientConfig> {
    let cfg = client(cert);
    assert_eq!(connect(server, &cfg), HandshakeKind::Full);
    cfg
}

#[test]
fn sessions_resume_on_every_server_sharing_the_file_and_across_a_restart() {
    let cert = DevCert::ecdsa();
    let dir = TempDir::new("tickets");
    let keys = keys_file(&dir, "keys", &[1]);
    let a = server(&cert, Some(&keys), &[]);
    let b = server(&cert, Some(&keys), &[]);
    let cfg = ticket_from(&a, &cert);
    assert_eq!(connect(&a, &cfg), HandshakeKind::Resumed, "same server");
    assert_eq!(connect(&b, &cfg), HandshakeKind::Resumed, "another server");
    let restarted_client = ticket_from(&a, &cert);
    drop((a, b));
    let c = server(&cert, Some(&keys), &[]);
    assert_eq!(
        connect(&c, &restarted_client),
        HandshakeKind::Resumed,
        "a ticket from before the restart"
    );

    // Without the file, each process has its own random keys: a full handshake after a restart.
    let plain = server(&cert, None, &[]);
    let cfg = ticket_from(&plain, &cert);
    assert_eq!(connect(&plain, &cfg), HandshakeKind::Resumed);
    drop(plain);
    let plain = server(&cert, None, &[]);
    assert_eq!(connect(&plain, &cfg), HandshakeKind::Full);
}

/// Polls (≤ 15 s) until `served` issues tickets with the key that `probe` (a server with only the
/// new key) decrypts: the file watch has reloaded the rotated file. Returns the client holding it.
fn wait_for_new_key(served: &Server, probe: &Server, cert: &DevCert) -> Arc<ClientConfig> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let cfg = ticket_from(served, cert);
        if connect(probe, &cfg) == HandshakeKind::Resumed {
            return cfg;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated ticket-key file was not applied within 15 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn rotation_by_file_change_keeps_the_previous_key_only() {
    let cert = DevCert::ecdsa();
    let dir = TempDir::new("rotation");
    let keys = keys_file(&dir, "keys", &[1]);
    let only_2 = keys_file(&dir, "only-2", &[2]);
    let only_3 = keys_file(&dir, "only-3", &[3]);
    // The open connection sends its request only at the end, after both reloads (~10 s, more on a
    // loaded box): longer than the default --handshake-timeout, which would close it as a slowloris.
    let s = server(&cert, Some(&keys), &["--handshake-timeout", "120s"]);
    let (probe_2, probe_3) = (
        server(&cert, Some(&only_2), &[]),
        server(&cert, Some(&only_3), &[]),
    );
    // A connection that stays open through both reloads.
    let mut open_conn = open(&s, &client(&cert));
    open_conn.conn.complete_io(&mut open_conn.sock).unwrap();
    let (old_1a, old_1b) = (ticket_from(&s, &cert), ticket_from(&s, &cert));

    // First rotation: key 2 encrypts, key 1 still decrypts.
    write_keys(&keys, &[2, 1]);
    let holds_2 = wait_for_new_key(&s, &probe_2, &cert);
    assert_eq!(
        connect(&s, &old_1a),
        HandshakeKind::Resumed,
        "a ticket of the previous key resumes after one rotation"
    );

    // Second rotation: key 1 is gone.
    write_keys(&keys, &[3, 2]);
    wait_for_new_key(&s, &probe_3, &cert);
    assert_eq!(
        connect(&s, &old_1b),
        HandshakeKind::Full,
        "a ticket two rotations old does not resume (but the client is served)"
    );
    assert_eq!(
        connect(&s, &holds_2),
        HandshakeKind::Resumed,
        "a ticket of key 2 still does"
    );
    assert_eq!(
        healthz(&mut open_conn),
        200,
        "open connections are untouched"
    );
}

/// `ringcast serve` with these extra arguments must exit at start with a message containing `expect`.
fn refused_at_start(cert: &DevCert, extra: &[&str], expect: &[&str]) {
    let (c, k) = (cert.cert(), cert.key());
    let listen = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "serve",
        "--listen",
        &listen,
        "--workers",
        "1",
        "--tls-cert",
        c.to_str().unwrap(),
        "--tls-key",
        k.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut child = ringcast_command(&args, &[("RINGCAST_LOG", "warn")])
        .spawn()
        .unwrap();
    let out = Captured::of(&mut child);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running 10 s after start with {extra:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(50)); // the pipe readers finish
    let text = out.text();
    assert!(!status.success(), "{extra:?}: {text}");
    for e in expect {
        assert!(text.contains(e), "{extra:?}: expected `{e}` in: {text}");
    }
}

#[test]
fn a_bad_ticket_key_file_is_refused_at_start() {
    let cert = DevCert::ecdsa();
    let dir = TempDir::new("bad-keys");
    let path = |name: &str, bytes: &[u8]| {
        let p = dir.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_string_lossy().into_owned()
    };
    let short = path("short", &[7u8; 48]);
    let hex = path("hex", ("ab".repeat(80) + "\n").as_bytes());
    let many = path("many", &(1..=17).flat_map(key).collect::<Vec<_>>());
    let dup = path("dup", &[key(1), key(1)].concat());
    let empty = path("empty", b"");
    let missing = dir.0.join("missing").to_string_lossy().into_owned();
    let flag = "--tls-ticket-keys";
    refused_at_start(
        &cert,
        &[flag, &short],
        &[
            flag,
            &short,
            "48 bytes is not a whole number of 80-byte keys",
        ],
    );
    refused_at_start(&cert, &[flag, &hex], &["looks like text"]);
    refused_at_start(&cert, &[flag, &many], &["17 keys, at most 16"]);
    refused_at_start(&cert, &[flag, &dup], &["keys 1 and 2 have the same name"]);
    refused_at_start(&cert, &[flag, &empty], &["the file is empty"]);
    refused_at_start(
        &cert,
        &[flag, &missing],
        &[&missing, "does not exist", "openssl rand 80"],
    );
    refused_at_start(
        &cert,
        &["--tls-groups", "x25519,x448"],
        &["--tls-groups", "x448"],
    );
}

#[test]
fn key_exchange_groups_are_a_setting() {
    let cert = DevCert::ecdsa();
    let group_of = |server: &Server, cfg: &Arc<ClientConfig>| {
        let mut s = open(server, cfg);
        assert_eq!(healthz(&mut s), 200);
        s.conn.negotiated_key_exchange_group().map(|g| g.name())
    };
    let default = server(&cert, None, &[]);
    assert_eq!(
        group_of(&default, &client(&cert)),
        Some(NamedGroup::X25519MLKEM768),
        "the post-quantum hybrid by default"
    );
    let p256 = server(&cert, None, &["--tls-groups", "secp256r1"]);
    assert_eq!(
        group_of(&p256, &client(&cert)),
        Some(NamedGroup::secp256r1),
        "a default client offers P-256 too (after a HelloRetryRequest)"
    );
    // A client offering only X25519 finds no common group.
    let provider = rustls::crypto::CryptoProvider {
        kx_groups: vec![rustls::crypto::aws_lc_rs::kx_group::X25519],
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.leaf()).unwrap();
    let only = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut s = open(&p256, &Arc::new(only));
    assert!(s.conn.complete_io(&mut s.sock).is_err());
}
