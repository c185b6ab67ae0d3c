//! Behind a load balancer: `--proxy-protocol` (the PROXY header names the client; only
//! `--trusted-proxies` may connect, and only with a valid header) and `X-Forwarded-For` from trusted
//! proxies. Per-address limits count the client named, not the proxy.

use std::net::{IpAddr, SocketAddr};

use super::sim::{self, Sim, UPGRADE};
use crate::protocol::proxy;
use crate::runtime::core::WorkerSettings;
use crate::runtime::stats::WorkerStats;

const PROXY: [u8; 4] = [127, 0, 0, 1];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn behind_proxy(max_per_ip: u32) -> WorkerSettings {
    let mut settings = sim::settings();
    settings.proxy_protocol = true;
    settings.trusted_proxies = "127.0.0.0/8".parse().unwrap();
    settings.max_conns_per_ip = max_per_ip;
    settings
}

fn v2(client: &str) -> Vec<u8> {
    let client: SocketAddr = format!("{client}:40000").parse().unwrap();
    let mut out = Vec::new();
    proxy::encode_v2(
        client,
        "127.0.0.1:3001".parse().unwrap(),
        &[0x04, 0, 1, 0],
        &mut out,
    );
    out
}

/// A connection from the proxy announcing `client`, then the upgrade; the response head.
fn upgrade_as(sim: &mut Sim, header: &[u8]) -> (u32, String) {
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(UPGRADE.as_bytes());
    let slot = sim.connect(Some(PROXY.into()));
    sim.write(slot, &bytes);
    (slot, sim.read_http(slot))
}

#[test]
fn the_per_address_limit_counts_the_client_the_proxy_names() {
    let mut sim = Sim::new(behind_proxy(1));
    // v2 in the same write as the upgrade; v1 in its own write.
    let (_, a) = upgrade_as(&mut sim, &v2("203.0.113.1"));
    assert!(a.starts_with("HTTP/1.1 101 "), "{a}");
    let slot = sim.connect(Some(PROXY.into()));
    sim.write(slot, b"PROXY TCP4 203.0.113.2 127.0.0.1 5000 3001\r\n");
    sim.write(slot, UPGRADE.as_bytes());
    let b = sim.read_http(slot);
    assert!(b.starts_with("HTTP/1.1 101 "), "{b}");
    let (_, c) = upgrade_as(&mut sim, &v2("203.0.113.1"));
    assert!(
        c.starts_with("HTTP/1.1 503 "),
        "the second from 203.0.113.1: {c}"
    );
    let per_ip = &sim.settings().per_ip;
    assert_eq!(per_ip.open(ip("203.0.113.1")), 1);
    assert_eq!(per_ip.open(ip("203.0.113.2")), 1);
    assert_eq!(per_ip.open(ip("127.0.0.1")), 0, "the proxy is not counted");
}

#[test]
fn a_header_in_pieces_and_an_ipv6_client() {
    let mut sim = Sim::new(behind_proxy(1));
    let mut bytes = Vec::new();
    proxy::encode_v2(
        "[2001:db8::9]:1".parse().unwrap(),
        "[2001:db8::1]:3001".parse().unwrap(),
        &[],
        &mut bytes,
    );
    bytes.extend_from_slice(UPGRADE.as_bytes());
    let slot = sim.connect(Some(PROXY.into()));
    for byte in &bytes {
        sim.write(slot, std::slice::from_ref(byte));
    }
    let head = sim.read_http(slot);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(sim.settings().per_ip.open(ip("2001:db8::9")), 1);
}

#[test]
fn a_local_header_keeps_the_proxy_address_for_its_health_check() {
    let mut sim = Sim::new(behind_proxy(0));
    let mut bytes = proxy::V2_SIGNATURE.to_vec();
    bytes.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    bytes.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let slot = sim.connect(Some(PROXY.into()));
    sim.write(slot, &bytes);
    let head = sim.read_http(slot);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
}

#[test]
fn untrusted_peers_and_missing_headers_are_closed_unanswered() {
    let mut sim = Sim::new(behind_proxy(0));
    // From outside --trusted-proxies: closed at once, before reading anything.
    let slot = sim.connect_once(Some([192, 0, 2, 1].into()));
    assert!(sim.is_closed(slot));
    assert_eq!(sim.client(slot).sent_total, 0);
    // A trusted peer that sends a plain request (no header): closed, nothing answered.
    let slot = sim.connect(Some(PROXY.into()));
    sim.write(slot, UPGRADE.as_bytes());
    assert!(sim.is_closed(slot));
    assert_eq!(sim.client(slot).sent_total, 0);
    // A malformed header.
    let slot = sim.connect(Some(PROXY.into()));
    sim.write(slot, b"PROXY TCP4 1.2.3.4 nonsense\r\n");
    assert!(sim.is_closed(slot));
    assert_eq!(WorkerStats::get(&sim.stats().handshake_failed), 3);
    assert_eq!(WorkerStats::get(&sim.stats().open), 0);
    // An incomplete header that never completes is closed at the handshake deadline.
    let slot = sim.connect(Some(PROXY.into()));
    sim.write(slot, &v2("203.0.113.1")[..10]);
    assert!(!sim.is_closed(slot));
    sim.advance(sim.settings().handshake_timeout_ms + 2_000);
    assert!(sim.is_closed(slot));
}

#[test]
fn the_header_precedes_the_tls_client_hello() {
    let mut sim = Sim::new_tls(behind_proxy(1));
    sim.preamble = Some(v2("198.51.100.7"));
    let slot = sim.connect(Some(PROXY.into()));
    sim.write(slot, UPGRADE.as_bytes());
    let head = sim.read_http(slot);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(WorkerStats::get(&sim.stats().tls_handshakes), 1);
    assert_eq!(sim.settings().per_ip.open(ip("198.51.100.7")), 1);
}

#[test]
fn x_forwarded_for_is_believed_from_trusted_proxies_only() {
    let mut settings = sim::settings();
    settings.trusted_proxies = "10.0.0.0/8".parse().unwrap();
    settings.max_conns_per_ip = 1;
    let mut sim = Sim::new(settings);
    let with_xff = |xff: &str| {
        UPGRADE.replacen(
            "\r\n\r\n",
            &format!("\r\nX-Forwarded-For: {xff}\r\n\r\n"),
            1,
        )
    };
    // nginx at 10.0.0.2 relays 203.0.113.5 (which claimed to be 1.1.1.1).
    let (_, head) = sim.request_from(Some(ip("10.0.0.2")), &with_xff("1.1.1.1, 203.0.113.5"));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(sim.settings().per_ip.open(ip("203.0.113.5")), 1);
    assert_eq!(sim.settings().per_ip.open(ip("10.0.0.2")), 0);
    // Another client through the same proxy is admitted: the proxy's address is not what is limited.
    let (_, head) = sim.request_from(Some(ip("10.0.0.2")), &with_xff("203.0.113.6"));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // A client that is not a trusted proxy cannot pick its address with the header.
    let (_, head) = sim.request_from(Some(ip("192.0.2.50")), &with_xff("203.0.113.77"));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(sim.settings().per_ip.open(ip("192.0.2.50")), 1);
    assert_eq!(sim.settings().per_ip.open(ip("203.0.113.77")), 0);
}
