use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

#[test]
fn sizes_fit_per_connection_state() {
    assert!(std::mem::size_of::<TokenBucket>() <= 24);
    assert_eq!(std::mem::size_of::<MessageRate>(), 8);
}

#[test]
fn bucket_bursts_then_refills_at_the_rate() {
    let mut bucket = TokenBucket::new(10.0, 3.0, 1_000);
    assert!((0..3).all(|_| bucket.try_take(1_000)));
    assert!(!bucket.try_take(1_000));
    assert!(!bucket.try_take(1_099), "0.99 token after 99 ms at 10/s");
    assert!(bucket.try_take(1_100));
    assert!(!bucket.try_take(1_100));
    // A long idle period refills only up to the burst.
    assert!((0..3).all(|_| bucket.try_take(100_000)));
    assert!(!bucket.try_take(100_000));
}

#[test]
fn bucket_survives_time_going_backwards() {
    let mut bucket = TokenBucket::new(1.0, 1.0, 10_000);
    assert!(bucket.try_take(10_000));
    assert!(!bucket.try_take(5_000), "no refill from the past");
    assert!(!bucket.try_take(0));
    assert!(
        !bucket.try_take(10_500),
        "the step back did not reset the reference point"
    );
    assert!(bucket.try_take(11_000));
}

#[test]
fn bucket_with_zero_or_invalid_rates() {
    let mut frozen = TokenBucket::new(0.0, 2.0, 0);
    assert!(frozen.try_take(0) && frozen.try_take(0));
    assert!(!frozen.try_take(u64::MAX));
    assert_eq!(frozen.ms_until_available(0), u64::MAX);
    let mut nan = TokenBucket::new(f32::NAN, -1.0, 0);
    assert!(!nan.try_take(1_000_000));
}

#[test]
fn bucket_reports_the_wait() {
    let mut bucket = TokenBucket::new(2.0, 1.0, 0);
    assert_eq!(bucket.ms_until_available(0), 0);
    assert!(bucket.try_take(0));
    assert_eq!(bucket.ms_until_available(0), 500);
    assert_eq!(bucket.ms_until_available(400), 100);
    assert_eq!(bucket.ms_until_available(600), 0);
}

#[test]
fn accept_rate_and_retry_after() {
    let mut rate = AcceptRate::new(2, 0);
    assert!(rate.try_accept(0) && rate.try_accept(0));
    assert!(!rate.try_accept(0));
    assert_eq!(rate.retry_after_s(0), 1, "500 ms rounds up to 1 s");
    let mut slow = AcceptRate::new(0, 0);
    assert!(slow.try_accept(0), "a burst of at least one");
    assert!(!slow.try_accept(10_000));
    assert_eq!(slow.retry_after_s(10_000), MAX_RETRY_AFTER_S);
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(text: &str) -> IpAddr {
    IpAddr::V6(text.parse::<Ipv6Addr>().expect("IPv6 literal"))
}

#[test]
fn per_ip_limit_and_release() {
    let mut limiter = PerIpLimiter::default();
    let ip = v4(192, 0, 2, 1);
    assert!(limiter.try_admit(ip, 2) && limiter.try_admit(ip, 2));
    assert!(!limiter.try_admit(ip, 2));
    assert!(
        limiter.try_admit(v4(192, 0, 2, 2), 2),
        "other addresses are separate"
    );
    assert_eq!(limiter.open(ip), 2);
    limiter.release(ip);
    assert!(limiter.try_admit(ip, 2));
    limiter.release(ip);
    limiter.release(ip);
    assert_eq!(limiter.open(ip), 0);
    assert_eq!(limiter.groups(), 1, "empty groups are forgotten");
}

#[test]
fn release_never_underflows() {
    let mut limiter = PerIpLimiter::default();
    let ip = v4(10, 0, 0, 1);
    limiter.release(ip);
    assert_eq!(limiter.open(ip), 0);
    assert_eq!(limiter.groups(), 0);
    assert!(limiter.try_admit(ip, 1));
    limiter.release(ip);
    limiter.release(ip);
    assert!(limiter.try_admit(ip, 1));
    assert!(!limiter.try_admit(ip, 1));
}

#[test]
fn zero_means_no_limit() {
    let mut limiter = PerIpLimiter::default();
    assert!((0..1000).all(|_| limiter.try_admit(v4(10, 0, 0, 1), 0)));
    assert_eq!(limiter.open(v4(10, 0, 0, 1)), 1000);
}

#[test]
fn ipv6_grouped_by_prefix() {
    let mut limiter = PerIpLimiter::default();
    assert!(limiter.try_admit(v6("2001:db8:1:2::1"), 2));
    assert!(limiter.try_admit(v6("2001:db8:1:2:ffff::9"), 2));
    assert!(
        !limiter.try_admit(v6("2001:db8:1:2:dead:beef:0:1"), 2),
        "same /64"
    );
    assert!(limiter.try_admit(v6("2001:db8:1:3::1"), 2), "next /64");
    limiter.release(v6("2001:db8:1:2:abcd::"));
    assert_eq!(limiter.open(v6("2001:db8:1:2::1")), 1);

    let per_address = PerIpLimiter::new(128);
    assert_ne!(
        per_address.group(v6("2001:db8::1")),
        per_address.group(v6("2001:db8::2"))
    );
    let everyone = PerIpLimiter::new(0);
    assert_eq!(everyone.group(v6("2001:db8::1")), v6("::"));
    assert_eq!(PerIpLimiter::new(200).group(v6("::1")), v6("::1"));
}

#[test]
fn ipv4_mapped_counts_as_ipv4() {
    let mut limiter = PerIpLimiter::default();
    assert!(limiter.try_admit(v6("::ffff:192.0.2.7"), 1));
    assert!(!limiter.try_admit(v4(192, 0, 2, 7), 1));
    assert!(
        limiter.try_admit(v4(192, 0, 2, 8), 1),
        "not grouped by /64 of ::ffff:0:0/96"
    );
}

#[test]
fn message_rate_limits_each_connection() {
    let limit = MessageLimit::per_second(5);
    let mut conn = MessageRate::new(&limit, 0);
    assert!((0..5).all(|_| conn.try_take(&limit, 0)));
    assert!(!conn.try_take(&limit, 0));
    assert!(!conn.try_take(&limit, 190));
    assert!(conn.try_take(&limit, 200), "one token per 200 ms at 5/s");
    // A steady 5/s is sustained indefinitely.
    let mut t = 200;
    for _ in 0..100 {
        t += 200;
        assert!(conn.try_take(&limit, t));
    }
}

#[test]
fn message_rate_handles_backwards_time_and_wraparound() {
    let limit = MessageLimit::new(1.0, 1.0);
    let mut conn = MessageRate::new(&limit, 50_000);
    assert!(conn.try_take(&limit, 50_000));
    assert!(
        !conn.try_take(&limit, 10_000),
        "a step back refills nothing"
    );
    assert!(
        conn.try_take(&limit, 11_000),
        "counting restarts from the step back"
    );
    // Past the 32-bit wrap of 10 ms ticks: still counts forward.
    let near_wrap = (u64::from(u32::MAX) - 10) * 10;
    let mut conn = MessageRate::new(&limit, near_wrap);
    assert!(conn.try_take(&limit, near_wrap));
    assert!(!conn.try_take(&limit, near_wrap + 500));
    assert!(conn.try_take(&limit, near_wrap + 1_000));
}

#[test]
fn shared_per_ip_counts_over_every_worker_and_thread() {
    let shared = std::sync::Arc::new(SharedPerIp::default());
    let ip = v4(10, 0, 0, 1);
    // Two "workers" admitting the same client at once: the limit holds for their sum.
    let admitted: u32 = (0..2)
        .map(|_| {
            let shared = shared.clone();
            std::thread::spawn(move || (0..50).filter(|_| shared.try_admit(ip, 10)).count() as u32)
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .sum();
    assert_eq!(admitted, 10);
    assert_eq!(shared.open(ip), 10);
    assert!(shared.try_admit(v4(10, 0, 0, 2), 10), "another address");
    shared.release(ip);
    assert!(
        shared.try_admit(ip, 10),
        "a place given back is taken again"
    );
    // IPv6 grouped by /64 as in PerIpLimiter.
    assert!(shared.try_admit(v6("2001:db8::1"), 1));
    assert!(!shared.try_admit(v6("2001:db8::ffff"), 1));
    shared.release(v6("2001:db8::2"));
    assert_eq!(shared.open(v6("2001:db8::1")), 0);
}

#[test]
fn shared_accept_rate_is_one_bucket() {
    let rate = SharedAcceptRate::new(2, 0);
    assert_eq!(rate.try_accept(0), Ok(()));
    assert_eq!(rate.try_accept(0), Ok(()));
    assert_eq!(
        rate.try_accept(0),
        Err(1),
        "third in the same second: retry after 1 s"
    );
    assert_eq!(rate.try_accept(500), Ok(()), "refilled at 2/s");
}
