//! Server-side CPU of one TLS handshake, in process (no sockets, no HTTP): a rustls client against the
//! sans-IO adapter in memory, timing only the server's `TlsSession::receive` calls (ClientHello to
//! Finished, the session tickets included). Full handshakes per key-exchange group, and resumed ones
//! (TLS 1.3 tickets from a `--tls-ticket-keys` file). A measurement, not a check: it is `#[ignore]`d;
//! run it with
//! `cargo test --release --test tls_handshake_cost -- --ignored --nocapture` (perf/RESULTS.md,
//! "Handshakes per core", has the figures and the socket-level ones). `one_kind` is the target for an
//! instruction profile (callgrind) of one kind of handshake.

mod common;
#[allow(dead_code)]
#[path = "tls_adapter/support.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcast::tls::{KxGroups, TlsAcceptor, TlsConfig};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore};
use support::{DevCert, TempDir};

/// A client offering `group` only and the cipher suites in a browser's order (Chrome, Firefox and
/// Safari offer TLS13_AES_128_GCM_SHA256 first; rustls' own client default puts AES-256 first), or
/// with `HS_SUITE=aes256` in the environment rustls' order. The server follows the client's order.
fn client(cert: &DevCert, group: &str, resume: bool) -> Arc<ClientConfig> {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    let cipher_suites = match std::env::var("HS_SUITE").as_deref() {
        Ok("aes256") => vec![cs::TLS13_AES_256_GCM_SHA384, cs::TLS13_AES_128_GCM_SHA256],
        _ => vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
        ],
    };
    let provider = rustls::crypto::CryptoProvider {
        kx_groups: KxGroups::parse(group).unwrap().to_vec(),
        cipher_suites,
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    let mut roots = RootCertStore::empty();
    roots.add(cert.leaf()).unwrap();
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(cfg)
}

/// One handshake; the server's time in `receive` and the kind of handshake.
fn handshake(acceptor: &TlsAcceptor, cfg: &Arc<ClientConfig>) -> (Duration, HandshakeKind) {
    let mut server = acceptor.session().unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(Arc::clone(cfg), name).unwrap();
    let (mut plain, mut spent) = (Vec::new(), Duration::ZERO);
    for _ in 0..10 {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).unwrap();
        }
        if to_server.is_empty() && !server.is_handshaking() {
            break;
        }
        let mut to_client = Vec::new();
        let t = Instant::now();
        server
            .receive(&to_server, &mut plain, &mut to_client)
            .unwrap();
        spent += t.elapsed();
        let mut data = &to_client[..];
        while !data.is_empty() {
            client.read_tls(&mut data).unwrap();
            client.process_new_packets().unwrap();
        }
    }
    assert!(!server.is_handshaking() && !client.is_handshaking());
    (spent, client.handshake_kind().unwrap())
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn server_cpu_per_handshake() {
    let cert = DevCert::ecdsa();
    let dir = TempDir::new("cost");
    let keys = dir.0.join("keys");
    std::fs::write(&keys, (0..80u8).collect::<Vec<_>>()).unwrap();
    const N: usize = 2000;
    for group in ["X25519MLKEM768", "x25519", "secp256r1"] {
        let acceptor = TlsAcceptor::new(&TlsConfig {
            ticket_keys: Some(keys.clone()),
            groups: KxGroups::parse(group).unwrap(),
            ..TlsConfig::new(cert.cert(), cert.key())
        })
        .unwrap();
        for resume in [false, true] {
            let cfg = client(&cert, group, resume);
            let want = if resume {
                HandshakeKind::Resumed
            } else {
                HandshakeKind::Full
            };
            handshake(&acceptor, &cfg); // warm-up, and the first ticket
            let mut times: Vec<Duration> = (0..N)
                .map(|_| {
                    let (t, kind) = handshake(&acceptor, &cfg);
                    assert_eq!(kind, want);
                    t
                })
                .collect();
            let median = median(&mut times);
            println!(
                "{group:<15} {:<8} server CPU per handshake: median {:>6.1} µs = {:>6.0}/s per core (p10 {:.1} µs, p90 {:.1} µs)",
                if resume { "resumed" } else { "full" },
                median.as_secs_f64() * 1e6,
                1.0 / median.as_secs_f64(),
                times[N / 10].as_secs_f64() * 1e6,
                times[N * 9 / 10].as_secs_f64() * 1e6
            );
        }
    }
    // The parts: one key exchange (the server's share and the shared secret, as in every handshake,
    // resumed ones too) and one session ticket sealed and opened (two are sealed per handshake).
    for group in ["X25519MLKEM768", "x25519", "secp256r1"] {
        let kx = KxGroups::parse(group).unwrap().to_vec()[0];
        let client_share = kx.start().unwrap().pub_key().to_vec();
        let median = median_time(N, || {
            kx.start_and_complete(&client_share).unwrap();
        });
        println!(
            "{group:<15} server key exchange: median {:>6.1} µs",
            median.as_secs_f64() * 1e6
        );
    }
    let ticketer = ringcast::tls::FileTicketer::load(&keys).unwrap();
    let state = [7u8; 160];
    let median = median_time(N, || {
        use rustls::server::ProducesTickets;
        let ticket = ticketer.encrypt(&state).unwrap();
        ticketer.decrypt(&ticket).unwrap();
    });
    println!(
        "ticket (160 B state) sealed + opened: median {:.1} µs",
        median.as_secs_f64() * 1e6
    );
}

/// One kind of handshake, `HS_N` times (default 200), for an instruction profile of the server side:
/// `HS_GROUP` (default x25519), `HS_RESUME=1` for resumed ones, `HS_SUITE=aes256` for rustls' client
/// suite order. Under callgrind, count only the server:
/// `valgrind --tool=callgrind --toggle-collect='*TlsSession*receive*' <test binary> --ignored --exact one_kind`
/// (the per-handshake figure is the total over `HS_N + 1`, the warm-up included).
#[test]
#[ignore = "a profile target: run under callgrind, see the comment"]
fn one_kind() {
    let cert = DevCert::ecdsa();
    let dir = TempDir::new("cost1");
    let keys = dir.0.join("keys");
    std::fs::write(&keys, (0..80u8).collect::<Vec<_>>()).unwrap();
    let group = std::env::var("HS_GROUP").unwrap_or_else(|_| "x25519".into());
    let resume = std::env::var("HS_RESUME").is_ok_and(|v| v == "1");
    let n: usize = std::env::var("HS_N").map_or(200, |v| v.parse().unwrap());
    let acceptor = TlsAcceptor::new(&TlsConfig {
        ticket_keys: Some(keys),
        groups: KxGroups::parse(&group).unwrap(),
        ..TlsConfig::new(cert.cert(), cert.key())
    })
    .unwrap();
    let cfg = client(&cert, &group, resume);
    handshake(&acceptor, &cfg);
    for _ in 0..n {
        handshake(&acceptor, &cfg);
    }
}

/// The median time of `n` runs of `f`.
fn median_time(n: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    median(&mut times)
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}
