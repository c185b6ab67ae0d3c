//! Admission before the upgrade: `--max-conns-per-ip` (the N+1-th upgrade from one address gets 503 +
//! Retry-After; other addresses are not affected; a close frees a place) and `--handshake-rate` (a token
//! bucket: the upgrade over the burst gets 503 until the bucket refills, in simulated time).

use std::net::IpAddr;

use super::sim::{self, Sim};
use crate::admission::SharedAcceptRate;
use crate::runtime::stats::WorkerStats;

fn ip(last: u8) -> IpAddr {
    [10, 0, 0, last].into()
}

/// Upgrade from `peer`: Ok(slot) on 101, Err(head) otherwise (the refused client hangs up).
fn try_upgrade(sim: &mut Sim, peer: IpAddr) -> Result<u32, String> {
    let (slot, head) = sim.request_from(Some(peer), sim::UPGRADE);
    if head.starts_with("HTTP/1.1 101 ") {
        return Ok(slot);
    }
    sim.hang_up(slot);
    assert!(sim.is_closed(slot), "a refused connection is closed");
    Err(head)
}

#[test]
fn the_upgrade_over_the_per_address_limit_gets_503_and_a_close_frees_a_place() {
    let mut settings = sim::settings();
    settings.max_conns_per_ip = 3;
    let mut sim = Sim::new(settings);
    let a: Vec<u32> = (0..3)
        .map(|_| try_upgrade(&mut sim, ip(1)).expect("within the limit"))
        .collect();
    let head = try_upgrade(&mut sim, ip(1)).expect_err("the fourth from one address");
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    assert!(head.contains("\r\nRetry-After: 5\r\n"), "{head}");
    assert_eq!(WorkerStats::get(&sim.stats().admission_refused), 1);
    assert_eq!(
        sim.settings().per_ip.open(ip(1)),
        3,
        "the refusal took no place"
    );
    // Another address is admitted.
    let b = try_upgrade(&mut sim, ip(2)).expect("another address");
    assert_eq!(sim.settings().per_ip.open(ip(2)), 1);
    // One of the first address's connections closes (the client hangs up): its place is free again.
    sim.hang_up(a[1]);
    assert!(sim.is_closed(a[1]));
    assert_eq!(sim.settings().per_ip.open(ip(1)), 2);
    let again = try_upgrade(&mut sim, ip(1)).expect("admitted again after a close");
    try_upgrade(&mut sim, ip(1)).expect_err("and at the limit again");
    // A server-side close (shutdown, slow consumer, ...) frees its place too.
    for slot in [a[0], a[2], again, b] {
        sim.hang_up(slot);
    }
    assert_eq!(sim.settings().per_ip.open(ip(1)), 0);
    assert_eq!(sim.settings().per_ip.open(ip(2)), 0);
    assert_eq!(WorkerStats::get(&sim.stats().admission_refused), 2);
    assert_eq!(WorkerStats::get(&sim.stats().open), 0);
}

#[test]
fn ipv6_addresses_of_one_slash_64_share_the_limit() {
    let mut settings = sim::settings();
    settings.max_conns_per_ip = 2;
    let mut sim = Sim::new(settings);
    let v6 = |s: &str| -> IpAddr { s.parse().expect("an IPv6 address") };
    try_upgrade(&mut sim, v6("2001:db8:1:1::1")).expect("first");
    try_upgrade(&mut sim, v6("2001:db8:1:1::2")).expect("second, same /64");
    let head = try_upgrade(&mut sim, v6("2001:db8:1:1:ffff::9")).expect_err("third of the /64");
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    try_upgrade(&mut sim, v6("2001:db8:1:2::1")).expect("another /64");
}

#[test]
fn the_handshake_rate_refuses_the_upgrade_over_the_burst_until_the_bucket_refills() {
    let mut settings = sim::settings();
    // 4 upgrades a second, bursts of 4; the bucket's clock is the sim's (admission epoch 0).
    settings.accept_rate = Some(SharedAcceptRate::new(4, 0));
    let mut sim = Sim::new(settings);
    for i in 0..4 {
        try_upgrade(&mut sim, ip(i + 1)).expect("within the burst");
    }
    let head = try_upgrade(&mut sim, ip(9)).expect_err("over the burst");
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    assert!(head.contains("\r\nRetry-After: 1\r\n"), "{head}");
    // A token comes back every 250 ms.
    sim.advance(200);
    try_upgrade(&mut sim, ip(9)).expect_err("not yet refilled at 200 ms");
    sim.advance(100);
    try_upgrade(&mut sim, ip(9)).expect("one token back at 300 ms");
    try_upgrade(&mut sim, ip(10)).expect_err("and only one");
    sim.advance(1_000);
    for i in 0..4 {
        try_upgrade(&mut sim, ip(20 + i)).expect("a full burst after a second");
    }
    try_upgrade(&mut sim, ip(30)).expect_err("over the burst again");
    assert_eq!(WorkerStats::get(&sim.stats().admission_refused), 4);
    assert_eq!(sim.core.upgraded, 9);
}
