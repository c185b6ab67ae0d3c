//! Slow consumers: a reader that stops reading (`stalled`) next to one that keeps up. Conflation keeps
//! only the latest waiting value of each symbol; past `--slow-grace` (or at once with `--slow-policy
//! close`) the slow reader is closed with 1013, the others are unaffected, and the backlog returns to 0.

use std::collections::HashMap;

use super::sim::{self, ServerFrame, Sim};
use crate::protocol::CloseCode;
use crate::runtime::core::SlowPolicy;
use crate::runtime::stats::WorkerStats;

const SUBSCRIBE_BOTH: &str = r#"{"op":"subscribe","symbols":["EFERT","LUCK"]}"#;
/// Bytes of one tick frame as sent (`"EFERT 0001"`: 2 header bytes + 10).
const FRAME: usize = 12;

fn payload(symbol: &str, i: u32) -> String {
    format!("{symbol:<5} {i:04}")
}

/// A sim with two subscribers of EFERT and LUCK (fast, slow); the slow one has stopped reading.
fn fast_and_slow(policy: SlowPolicy, max_backlog: usize, grace_ms: u64) -> (Sim, u32, u32) {
    let mut settings = sim::settings();
    settings.slow_policy = policy;
    settings.max_backlog = max_backlog;
    settings.slow_grace_ms = grace_ms;
    let mut sim = Sim::new(settings);
    let fast = sim.open_ws();
    let slow = sim.open_ws();
    for slot in [fast, slow] {
        sim.send_text(slot, SUBSCRIBE_BOTH);
        let ack = sim.texts(slot);
        assert!(ack[0].contains(r#""type":"subscribed""#), "{ack:?}");
    }
    sim.client_mut(slow).stalled = true;
    (sim, fast, slow)
}

/// Per symbol, the values received are strictly increasing (none stale after a newer one, no
/// reordering); returns the last value of each symbol.
fn check_order(texts: &[String]) -> HashMap<String, u32> {
    let mut last: HashMap<String, u32> = HashMap::new();
    for text in texts {
        let (symbol, value) = text.split_once(' ').expect("`SYMBOL n`");
        let value: u32 = value.trim().parse().expect("a number");
        let symbol = symbol.trim().to_string();
        if let Some(&before) = last.get(&symbol) {
            assert!(
                value > before,
                "{symbol}: {value} after {before} in {texts:?}"
            );
        }
        last.insert(symbol, value);
    }
    last
}

#[test]
fn a_stalled_reader_gets_the_latest_value_of_each_symbol_and_a_fast_one_everything() {
    let (mut sim, fast, slow) = fast_and_slow(SlowPolicy::Conflate, 256, 5_000);
    for i in 1..=200 {
        sim.tick("EFERT", &payload("EFERT", i));
        sim.tick("LUCK", &payload("LUCK", i));
        sim.advance(10); // 2 s in all: within the grace
    }
    let expected: Vec<String> = (1..=200)
        .flat_map(|i| [payload("EFERT", i), payload("LUCK", i)])
        .collect();
    assert_eq!(
        sim.texts(fast),
        expected,
        "the fast reader gets every tick, in order"
    );
    assert!(WorkerStats::get(&sim.stats().conflated) > 0);
    let backlog = sim.core.backlog();
    assert!(
        backlog > 0 && backlog <= 256,
        "backlog {backlog} within --max-backlog"
    );
    sim.advance(250);
    assert_eq!(
        WorkerStats::get(&sim.stats().backlog_bytes),
        backlog as u64,
        "the gauge, at upkeep"
    );

    sim.client_mut(slow).stalled = false;
    sim.run();
    let got = sim.texts(slow);
    assert!(got.len() < 400, "conflated: {} frames", got.len());
    let last = check_order(&got);
    assert_eq!(
        last["EFERT"], 200,
        "the latest value, never a stale one: {got:?}"
    );
    assert_eq!(last["LUCK"], 200, "{got:?}");
    assert!(!sim.is_closed(slow), "within the grace: still open");
    assert_eq!(WorkerStats::get(&sim.stats().slow_consumers), 0);
    assert_eq!(sim.core.backlog(), 0);
    sim.advance(250);
    assert_eq!(WorkerStats::get(&sim.stats().backlog_bytes), 0);
    // Caught up: it gets live ticks again, one by one.
    sim.tick("EFERT", &payload("EFERT", 201));
    assert_eq!(sim.texts(slow), [payload("EFERT", 201)]);
    assert_eq!(sim.texts(fast), [payload("EFERT", 201)]);
}

#[test]
fn a_reader_over_its_backlog_past_the_grace_is_closed_with_1013_by_its_timer() {
    let grace = 2_000;
    let (mut sim, fast, slow) = fast_and_slow(SlowPolicy::Conflate, 256, grace);
    // Ticks until the slow reader's backlog passes the limit (each a few ms apart).
    let mut i = 0;
    let over_since = loop {
        i += 1;
        sim.tick("EFERT", &payload("EFERT", i));
        sim.advance(3);
        let outbox = sim.core.conns()[slow as usize].outbox.as_ref();
        if let Some(since) = outbox.and_then(|o| o.over_limit_since_ms) {
            break since;
        }
        assert!(i < 100, "never over the limit");
    };
    assert!(i as usize >= 256 / FRAME, "over the limit after {i} ticks");
    // No more ticks: the grace timer alone closes it.
    let mut closed_at = None;
    while sim.now_us / 1000 < over_since + grace + 1_000 {
        sim.advance(50);
        if closed_at.is_none() && WorkerStats::get(&sim.stats().slow_consumers) == 1 {
            closed_at = Some(sim.now_us / 1000);
        }
    }
    let closed_at = closed_at.expect("closed as a slow consumer");
    assert!(
        closed_at > over_since + grace && closed_at <= over_since + grace + 50,
        "over the limit at {over_since} ms, closed at {closed_at} ms (grace {grace} ms)"
    );
    // The fast reader is unaffected and keeps getting ticks after the close.
    let fast_texts = sim.texts(fast);
    assert_eq!(fast_texts.len(), i as usize);
    assert_eq!(fast_texts.last(), Some(&payload("EFERT", i)));
    for j in i + 1..=i + 5 {
        sim.tick("EFERT", &payload("EFERT", j));
    }
    assert_eq!(sim.texts(fast).len(), 5);

    // The slow reader reads again: what waited (in order, the latest last), then the 1013.
    sim.client_mut(slow).stalled = false;
    sim.run();
    let frames = sim.frames(slow);
    assert_eq!(
        sim::close_of(&frames),
        Some((Some(CloseCode::TRY_AGAIN_LATER), "slow consumer".into()))
    );
    assert!(
        matches!(frames.last(), Some(ServerFrame::Close(..))),
        "the close comes last"
    );
    let texts: Vec<String> = frames
        .into_iter()
        .filter_map(|f| match f {
            ServerFrame::Text(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(
        check_order(&texts)["EFERT"],
        i,
        "no tick after the close was queued"
    );
    sim.answer_close(slow, 1013);
    assert!(sim.is_closed(slow));
    assert_eq!(sim.core.backlog(), 0);
    sim.advance(250);
    assert_eq!(WorkerStats::get(&sim.stats().backlog_bytes), 0);
    assert_eq!(WorkerStats::get(&sim.stats().open), 1, "the fast reader");
}

#[test]
fn with_policy_close_a_reader_is_closed_with_1013_as_it_passes_the_backlog() {
    let (mut sim, fast, slow) = fast_and_slow(SlowPolicy::Close, 256, 10_000);
    let (mut i, mut closed_at) = (0, 0);
    while WorkerStats::get(&sim.stats().slow_consumers) == 0 {
        i += 1;
        assert!(i < 100, "never closed");
        sim.advance(1);
        closed_at = sim.now_us / 1000;
        sim.tick("EFERT", &payload("EFERT", i));
    }
    // Closed by the tick that would have taken it past the limit: no grace.
    assert_eq!(i as usize, 256 / FRAME + 1, "closed at tick {i}");
    assert_eq!(closed_at, i as u64, "at once, not after the grace");
    assert_eq!(WorkerStats::get(&sim.stats().conflated), 0);
    // It never reads again: the close timeout ends it and what waited is dropped.
    for j in i + 1..=i + 10 {
        sim.tick("EFERT", &payload("EFERT", j));
        sim.advance(100);
    }
    assert_eq!(
        sim.texts(fast).len(),
        i as usize + 10,
        "the fast reader gets every tick"
    );
    assert!(
        sim.core.backlog() > 0,
        "the close frame waits behind the stalled send"
    );
    sim.advance_by_steps(5_000, 250);
    assert!(sim.is_closed(slow), "closed at the close timeout");
    assert_eq!(WorkerStats::get(&sim.stats().close_timeouts), 1);
    assert_eq!(sim.core.backlog(), 0);
    sim.advance(250);
    assert_eq!(WorkerStats::get(&sim.stats().backlog_bytes), 0);
    sim.tick("EFERT", &payload("EFERT", 999));
    assert_eq!(sim.texts(fast), [payload("EFERT", 999)]);
}

#[test]
fn with_policy_drop_a_stalled_reader_loses_ticks_but_never_reorders_them() {
    let (mut sim, fast, slow) = fast_and_slow(SlowPolicy::Drop, 256, 5_000);
    for i in 1..=100 {
        sim.tick("EFERT", &payload("EFERT", i));
        sim.tick("LUCK", &payload("LUCK", i));
    }
    assert_eq!(sim.texts(fast).len(), 200);
    assert!(WorkerStats::get(&sim.stats().dropped) > 0);
    assert_eq!(WorkerStats::get(&sim.stats().conflated), 0);
    sim.client_mut(slow).stalled = false;
    sim.run();
    let got = sim.texts(slow);
    check_order(&got);
    assert!(
        got.len() * FRAME <= 256 + FRAME,
        "at most the backlog: {got:?}"
    );
    assert_eq!(sim.core.backlog(), 0);
}
