//! The two histograms the core keeps: publish→send, observed once per tick carrying `ts` that a worker
//! sends to at least one subscriber (never per delivery, never for a tick nobody here receives); and the
//! per-connection backlog, sampled for each open connection by the heartbeat sweep (at least once per
//! ping interval).

use std::time::{SystemTime, UNIX_EPOCH};

use super::sim::{self, SUBSCRIBE_EFERT, Sim};
use crate::fanout::{FeedEvent, Symbol, prepare_text};

fn tick_with_ts(symbol: &str, ts_us: Option<u64>) -> FeedEvent {
    FeedEvent::Tick {
        symbol: Symbol::from(symbol),
        frame: prepare_text(format!(r#"{{"symbol":"{symbol}"}}"#).as_bytes()),
        ts_us,
    }
}

fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[test]
fn publish_to_send_counts_each_tick_with_ts_once_per_worker_that_sends_it() {
    let mut sim = Sim::new(sim::settings());
    let a = sim.open_ws();
    let b = sim.open_ws();
    for slot in [a, b] {
        sim.send_text(slot, SUBSCRIBE_EFERT);
        sim.texts(slot);
    }
    // Published 1.2 s ago, sent to two subscribers: one observation of about 1.2 s.
    sim.feed(tick_with_ts("EFERT", Some(wall_us() - 1_200_000)));
    assert_eq!(sim.texts(a).len(), 1);
    assert_eq!(sim.texts(b).len(), 1);
    let (counts, sum) = sim.stats().publish_to_send.read();
    assert_eq!(counts.iter().sum::<u64>(), 1, "{counts:?}");
    assert!((1_200_000..1_700_000).contains(&sum), "{sum} µs");
    assert_eq!(counts[14], 1, "in the (1 s, 2.5 s] bucket: {counts:?}");

    // No ts, or nobody here subscribed: nothing observed.
    sim.feed(tick_with_ts("EFERT", None));
    sim.feed(tick_with_ts("LUCK", Some(wall_us())));
    assert_eq!(sim.texts(a).len(), 1);
    let (counts, _) = sim.stats().publish_to_send.read();
    assert_eq!(counts.iter().sum::<u64>(), 1, "{counts:?}");

    // A ts ahead of the edge's clock (skew) counts as no delay rather than a huge one.
    sim.feed(tick_with_ts("EFERT", Some(wall_us() + 60_000_000)));
    let (counts, _) = sim.stats().publish_to_send.read();
    assert_eq!(
        (counts.iter().sum::<u64>(), counts[0]),
        (2, 1),
        "{counts:?}"
    );
}

#[test]
fn the_heartbeat_sweep_samples_each_open_connections_backlog_every_ping_interval() {
    let mut settings = sim::settings();
    settings.ping_interval_s = 2;
    settings.idle_timeout_s = 60;
    let mut sim = Sim::new(settings);
    let slots: Vec<u32> = (0..3).map(|_| sim.open_ws()).collect();
    sim.advance_by_steps(2_000, 250);
    let (counts, sum) = sim.stats().conn_backlog.read();
    let total: u64 = counts.iter().sum();
    // The sweep visits every slot of the table once per ping interval, at least one slot per upkeep
    // (every 250 ms): with fewer slots than upkeeps, a connection is sampled more often.
    assert!(
        total >= 3,
        "every open connection sampled in one ping interval: {counts:?}"
    );
    assert_eq!((counts[0], sum), (total, 0), "nothing waits: the 0 bucket");
    sim.advance_by_steps(2_000, 250);
    let (counts, _) = sim.stats().conn_backlog.read();
    assert!(counts.iter().sum::<u64>() >= total + 3, "{counts:?}");
    drop(slots);
}
