//! SIGTERM: open clients are closed with 1012 spread evenly over `--drain-window` (so they do not all
//! reconnect at once), new upgrades and health checks get 503, and the worker stops after the last close.

use super::sim::{self, Sim};
use crate::protocol::CloseCode;
use crate::runtime::stats::WorkerStats;

#[test]
fn two_hundred_clients_are_closed_with_1012_spread_over_the_drain_window() {
    const CLIENTS: usize = 200;
    const WINDOW_MS: u64 = 10_000;
    let mut settings = sim::settings();
    settings.shutdown_window_ms = WINDOW_MS;
    settings.idle_timeout_s = 3_600;
    settings.ping_interval_s = 3_600;
    let mut sim = Sim::new(settings);
    let slots: Vec<u32> = (0..CLIENTS).map(|_| sim.open_ws()).collect();
    sim.advance(1_000);
    let start = sim.now_us / 1000;
    sim.begin_shutdown();
    assert_eq!(WorkerStats::get(&sim.stats().shutting_down), 1);

    // Each client answers its close as soon as it reads it; record when (ms after SIGTERM).
    let mut closed_at: Vec<Option<u64>> = vec![None; CLIENTS];
    let mut refused_mid_drain = false;
    while sim.now_us / 1000 < start + WINDOW_MS + 1_000 {
        let now = sim.now_us / 1000 - start;
        for (i, &slot) in slots.iter().enumerate() {
            if closed_at[i].is_some() {
                continue;
            }
            let frames = sim.frames(slot);
            if let Some((code, reason)) = sim::close_of(&frames) {
                assert_eq!(code, Some(CloseCode::SERVICE_RESTART), "client {i}");
                assert_eq!(reason, "server restarting", "client {i}");
                closed_at[i] = Some(now);
                sim.answer_close(slot, 1012);
                assert!(sim.is_closed(slot), "client {i} gone once it answered");
            }
        }
        if !refused_mid_drain && now >= WINDOW_MS / 2 {
            // Mid-drain: a new upgrade is refused (503 + Retry-After), and so is the health check.
            let (refused, head) = sim.request_from(Some([10, 9, 9, 9].into()), sim::UPGRADE);
            assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
            assert!(head.contains("\r\nRetry-After: 5\r\n"), "{head}");
            sim.hang_up(refused);
            let health = "GET /healthz HTTP/1.1\r\nHost: sim\r\n\r\n";
            let (probe, head) = sim.request_from(None, health);
            assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
            sim.hang_up(probe);
            refused_mid_drain = true;
        }
        let remaining = closed_at.iter().filter(|c| c.is_none()).count();
        if remaining > 0 {
            assert!(!sim.stopped, "stopped with {remaining} clients still open");
        }
        sim.advance(50);
    }
    assert!(refused_mid_drain);
    let times: Vec<u64> = closed_at
        .iter()
        .map(|t| t.expect("every client got its 1012"))
        .collect();
    let (first, last) = (*times.iter().min().unwrap(), *times.iter().max().unwrap());
    assert!(
        first < 300,
        "the first close right after SIGTERM: {first} ms"
    );
    assert!(
        (WINDOW_MS - 500..=WINDOW_MS + 300).contains(&last),
        "the last close at the end of the window: {last} ms"
    );
    // Even: each tenth of the window closes about a tenth of the clients (upkeep runs every 250 ms).
    let mut buckets = [0usize; 10];
    for &t in &times {
        buckets[((t * 10 / WINDOW_MS) as usize).min(9)] += 1;
    }
    for (i, &n) in buckets.iter().enumerate() {
        assert!(
            (CLIENTS / 10 - 6..=CLIENTS / 10 + 6).contains(&n),
            "bucket {i}: {n} closes; all: {buckets:?}"
        );
    }
    assert!(sim.stopped, "the worker is done once every client is gone");
    assert_eq!(WorkerStats::get(&sim.stats().open), 0);
    assert_eq!(
        WorkerStats::get(&sim.stats().closed),
        CLIENTS as u64 + 2,
        "the clients, the refused upgrade and the health check"
    );
}

#[test]
fn clients_that_never_answer_are_dropped_at_the_close_timeout_and_the_worker_stops() {
    let mut settings = sim::settings();
    settings.shutdown_window_ms = 2_000;
    let close_timeout = settings.limits.close_timeout_ms;
    let mut sim = Sim::new(settings);
    let slots: Vec<u32> = (0..20).map(|_| sim.open_ws()).collect();
    sim.begin_shutdown();
    let mut stopped_at = None;
    for _ in 0..((2_000 + close_timeout) / 100 + 10) {
        sim.advance(100);
        if sim.stopped && stopped_at.is_none() {
            stopped_at = Some(sim.now_us / 1000);
        }
    }
    for &slot in &slots {
        let close = sim::close_of(&sim.frames(slot));
        assert_eq!(close.map(|c| c.0), Some(Some(CloseCode::SERVICE_RESTART)));
        assert!(
            sim.is_closed(slot),
            "slot {slot}: dropped at its close timeout"
        );
    }
    assert_eq!(WorkerStats::get(&sim.stats().close_timeouts), 20);
    let stopped_at = stopped_at.expect("the worker stops");
    assert!(
        stopped_at <= 2_000 + close_timeout + 250,
        "stopped at {stopped_at} ms: at most window + close timeout"
    );
}
