//! Slow consumers and coalescing, as docs/config.md states them: `--slow-policy drop` drops the ticks of a
//! client over `--max-backlog` (counted in /metrics) and keeps it connected; `--slow-policy close` closes it
//! with 1013 at once (long before `--slow-grace`); `--coalesce-delay` delivers every tick, in order, each at
//! most the delay late. Real redis-server, real `ringcast serve`, raw sockets.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn slow_server(prefix: &str, policy: &str) -> (ringcast::cli::redis_server::RedisServer, Server) {
    fed_server("1", prefix, &slow_args(policy))
}

fn slow_args(policy: &str) -> [&str; 10] {
    [
        "--max-backlog",
        "8192",
        "--send-buffer",
        "4096",
        "--slow-policy",
        policy,
        // Far beyond the test: what happens here is the policy's doing, not the grace period's.
        "--slow-grace",
        "60s",
        "--close-timeout",
        "5s",
    ]
}

/// Publish batches of 1 KB ticks (`seq` numbered, 4 symbols) until `metric` counts at least one, then 3
/// more batches; returns the ticks published, in order.
fn flood_until(
    server: &Server,
    con: &mut redis::Connection,
    prefix: &str,
    metric: &str,
) -> Vec<String> {
    let pad = "p".repeat(1000);
    let mut published = Vec::new();
    let mut after = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while after != Some(0) {
        assert!(
            Instant::now() < deadline,
            "{metric} still 0 after {} ticks",
            published.len()
        );
        let mut pipe = redis::pipe();
        for sym in 0..4 {
            let tick = format!(
                r#"{{"symbol":"S{sym}","seq":{},"pad":"{pad}"}}"#,
                published.len()
            );
            pipe.cmd("PUBLISH")
                .arg(format!("{prefix}ticks"))
                .arg(&tick)
                .ignore();
            published.push(tick);
        }
        let () = pipe.query(con).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        after = match after {
            None if server.metric(metric) >= 1.0 => Some(3),
            None => None,
            Some(n) => Some(n - 1),
        };
    }
    published
}

#[test]
fn slow_policy_drop_drops_ticks_and_keeps_the_connection() {
    let (redis, server) = slow_server("d:", "drop");
    let mut stuck = small_window_client(&server, "S0,S1,S2,S3");
    let mut con = redis_con(&redis.url());
    let published = flood_until(&server, &mut con, "d:", "ringcast_dropped_frames_total");
    assert_eq!(
        server.metric("ringcast_conflated_frames_total"),
        0.0,
        "drop, not conflate"
    );
    assert_eq!(
        server.metric("ringcast_slow_consumers_total"),
        0.0,
        "not closed"
    );

    // It reads what waited: ticks in publish order, with the dropped ones missing, and no Close.
    stuck
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = Vec::new();
    while let Some((_, opcode, payload)) = read_frame(&mut stuck) {
        assert_eq!(opcode, 0x1, "only ticks: the connection is not closed");
        got.push(String::from_utf8(payload).unwrap());
    }
    let mut rest = published.iter();
    for tick in &got {
        assert!(
            rest.any(|p| p == tick),
            "ticks arrive in publish order, unchanged"
        );
    }
    assert!(
        !got.is_empty() && got.len() < published.len(),
        "dropped: got {} of {}",
        got.len(),
        published.len()
    );
    let dropped = server.metric("ringcast_dropped_frames_total");
    assert_eq!(
        dropped as usize,
        published.len() - got.len(),
        "every missing tick is counted"
    );

    // Caught up, it gets live ticks again.
    stuck
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let last = r#"{"symbol":"S2","seq":"last"}"#;
    publish_tick(&mut con, "d:", last);
    assert_eq!(read_text(&mut stuck), last);
}

#[test]
fn slow_policy_close_closes_with_1013_at_once() {
    let (redis, server, log) = fed_server_logged("1", "c:", &slow_args("close"));
    let mut stuck = small_window_client(&server, "S0,S1,S2,S3");
    let mut con = redis_con(&redis.url());
    let started = Instant::now();
    flood_until(&server, &mut con, "c:", "ringcast_slow_consumers_total");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "closed by the policy, not by the 60 s grace period"
    );
    assert_eq!(server.metric("ringcast_dropped_frames_total"), 0.0);
    assert_eq!(server.metric("ringcast_conflated_frames_total"), 0.0);
    // Reading now, it finds the Close behind the ticks that were already queued.
    assert_eq!(read_close_code(&mut stuck), Some(1013), "try again later");
    // A refusal like the others: logged at info with its reason, counted by code.
    server.refusal_counted_and_logged(&log, 1013, 1.0);
    assert!(
        log.text().contains("reason=\"slow consumer\""),
        "{}",
        log.text()
    );
}

#[test]
fn coalesce_delay_delivers_every_tick_in_order_within_the_delay() {
    const DELAY_MS: u64 = 300;
    // What a loaded 2-core test box may add to a publish → receive trip, beyond the delay.
    const MARGIN_MS: u64 = 700;
    let delay = format!("{DELAY_MS}ms");
    let (redis, server) = fed_server("1", "k:", &["--coalesce-delay", &delay]);
    let mut client = server.ws();
    subscribe(&mut client, "K0,K1,K2");

    // Three bursts of 10 ticks, 50 ms apart within a burst, a pause between bursts.
    let total = 30;
    let reader = std::thread::spawn(move || {
        (0..total)
            .map(|_| (read_text(&mut client), Instant::now()))
            .collect::<Vec<_>>()
    });
    let mut con = redis_con(&redis.url());
    let mut sent = Vec::new();
    for i in 0..total {
        let tick = format!(r#"{{"symbol":"K{}","seq":{i}}}"#, i % 3);
        sent.push((tick.clone(), Instant::now()));
        publish_tick(&mut con, "k:", &tick);
        std::thread::sleep(Duration::from_millis(if i % 10 == 9 { 400 } else { 50 }));
    }
    let got = reader.join().expect("every tick arrives");
    let texts: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    let expected: Vec<&str> = sent.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(texts, expected, "all ticks, in order");
    let worst = sent
        .iter()
        .zip(&got)
        .map(|((_, at), (_, seen))| seen.duration_since(*at))
        .max()
        .unwrap();
    assert!(
        worst <= Duration::from_millis(DELAY_MS + MARGIN_MS),
        "a tick waited {worst:?} (delay {DELAY_MS} ms)"
    );
}
