//! The worker core, tested in memory: no sockets, no ring, a simulated clock (see `sim.rs`).
//!
//! To add a test: build a `Sim` (`Sim::new(sim::settings())`, changing the settings you need), open
//! clients (`open_ws`, or `connect` + `write` for raw HTTP), drive it (`send_text`, `tick`, `feed`,
//! `advance`, `hang_up`, `begin_shutdown`) and assert on what the clients read (`frames`, `texts`,
//! `read_http`), on `is_closed`, and on the worker's counters (`stats()`). Every step already checks
//! the core's invariants.

// Some helpers are there for the tests still to come (slow readers, per-address limits).
#[allow(dead_code)]
mod sim;
#[allow(dead_code)]
mod sim_tls;

mod invariants;
mod memory;
mod property;
mod tls;

use sim::{SUBSCRIBE_EFERT, ServerFrame, Sim};

mod admission;
mod auth;
mod fetch;
mod health;
mod heartbeat;
mod histograms;
mod proxy;
mod shutdown;
mod slow;

use crate::protocol::{CloseCode, OpCode};
use crate::runtime::stats::WorkerStats;

#[test]
fn a_client_connects_and_upgrades() {
    let mut sim = Sim::new(sim::settings());
    let slot = sim.open_ws();
    assert_eq!(WorkerStats::get(&sim.stats().open), 1);
    assert_eq!(WorkerStats::get(&sim.stats().accepted), 1);
    assert!(!sim.is_closed(slot));
    assert!(sim.frames(slot).is_empty(), "nothing but the 101 yet");
}

#[test]
fn a_subscriber_gets_the_snapshot_then_live_ticks_in_order() {
    let mut sim = Sim::new(sim::settings());
    sim.feed(sim::snapshot(&[("EFERT", "e0"), ("LUCK", "l0")]));
    let slot = sim.open_ws();
    sim.send_text(slot, SUBSCRIBE_EFERT);
    let texts = sim.texts(slot);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].contains(r#""type":"subscribed""#), "{}", texts[0]);
    assert_eq!(texts[1], "e0", "the latest value follows the ack");
    for i in 1..=5 {
        sim.tick("EFERT", &format!("e{i}"));
        sim.tick("LUCK", &format!("l{i}"));
    }
    assert_eq!(sim.texts(slot), ["e1", "e2", "e3", "e4", "e5"]);
}

#[test]
fn a_tick_in_the_snapshot_and_then_live_is_sent_once() {
    // Ingest subscribes, then reads the hash: a tick published in between is in the snapshot and comes
    // again on the stream. A client that subscribed in between gets it once (the storm harness counted
    // it `duplicated`); the next live ticks, and a later identical live tick, are delivered.
    let mut sim = Sim::new(sim::settings());
    sim.feed(sim::snapshot(&[("EFERT", "e7")]));
    let slot = sim.open_ws();
    sim.send_text(slot, SUBSCRIBE_EFERT);
    assert_eq!(
        sim.texts(slot)[1..],
        ["e7"],
        "the snapshot value after the ack"
    );
    sim.tick("EFERT", "e7");
    sim.tick("EFERT", "e8");
    sim.tick("EFERT", "e8");
    assert_eq!(
        sim.texts(slot),
        ["e8", "e8"],
        "e7 once; live repeats are not the snapshot's copy"
    );
}

#[test]
fn a_ping_is_answered_with_a_pong_carrying_its_payload() {
    let mut sim = Sim::new(sim::settings());
    let slot = sim.open_ws();
    sim.send_frame(slot, OpCode::Ping, b"hi");
    assert_eq!(sim.frames(slot), [ServerFrame::Pong(b"hi".to_vec())]);
}

#[test]
fn a_silent_client_is_pinged_then_closed_at_the_idle_timeout() {
    let mut settings = sim::settings();
    settings.ping_interval_s = 20;
    settings.idle_timeout_s = 60;
    let mut sim = Sim::new(settings);
    let slot = sim.open_ws();
    sim.advance_by_steps(25_000, 250);
    assert!(
        sim.frames(slot).contains(&ServerFrame::Ping(Vec::new())),
        "pinged after the ping interval"
    );
    assert!(!sim.is_closed(slot));
    sim.advance_by_steps(40_000, 250);
    assert!(sim.is_closed(slot), "closed at the idle timeout");
    assert_eq!(WorkerStats::get(&sim.stats().idle_timeouts), 1);
    assert_eq!(WorkerStats::get(&sim.stats().open), 0);
}

#[test]
fn a_shutdown_closes_every_client_with_1012_and_completes() {
    let mut sim = Sim::new(sim::settings());
    let slots: Vec<u32> = (0..4).map(|_| sim.open_ws()).collect();
    sim.begin_shutdown();
    sim.advance_by_steps(1_000, 100);
    for &slot in &slots {
        let frames = sim.frames(slot);
        assert!(
            matches!(
                frames.last(),
                Some(ServerFrame::Close(Some(CloseCode::SERVICE_RESTART), _))
            ),
            "slot {slot}: {frames:?}"
        );
        // The client answers the close; the server ends the connection.
        sim.answer_close(slot, 1012);
        assert!(sim.is_closed(slot));
    }
    sim.advance(250);
    assert!(sim.stopped, "the worker stops once every client is gone");
}

#[test]
fn an_upgrade_during_shutdown_is_refused_with_503() {
    let mut sim = Sim::new(sim::settings());
    sim.begin_shutdown();
    let slot = sim.connect(None);
    sim.write(slot, sim::UPGRADE.as_bytes());
    let head = sim.read_http(slot);
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
}
