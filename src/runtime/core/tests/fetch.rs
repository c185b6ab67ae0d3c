//! Fetches: a subscribe to a symbol the worker may have evicted (`--max-symbols`) asks ingest for its
//! stored latest tick — one request per symbol while it is pending — and ingest's answer
//! (`FeedEvent::Latest`) reaches every subscriber. The core only emits the request (`next_fetch`); its
//! driver (here the sim) hands it to ingest and reports whether that worked.

use super::sim::{self, SUBSCRIBE_EFERT, Sim};
use crate::fanout::{FeedEvent, Symbol, prepare_text};
use crate::runtime::stats::WorkerStats;

/// A sim that asks ingest for values, whose map of one symbol has evicted EFERT for LUCK.
fn evicted_efert() -> Sim {
    let mut settings = sim::settings();
    settings.fetch_latest = true;
    settings.max_symbols = 1;
    let mut sim = Sim::new(settings);
    sim.tick("EFERT", "e0");
    sim.tick("LUCK", "l0");
    sim
}

#[test]
fn a_subscribe_to_an_evicted_symbol_asks_ingest_once_and_the_answer_follows_the_ack() {
    let mut sim = evicted_efert();
    let (a, b) = (sim.open_ws(), sim.open_ws());
    sim.send_text(a, SUBSCRIBE_EFERT);
    sim.send_text(b, SUBSCRIBE_EFERT);
    assert_eq!(
        sim.fetches,
        [Symbol::from("EFERT")],
        "one request while pending"
    );
    assert_eq!(WorkerStats::get(&sim.stats().symbol_fetches), 1);
    for slot in [a, b] {
        let texts = sim.texts(slot);
        assert_eq!(texts.len(), 1, "{texts:?}");
        assert!(texts[0].contains(r#""unknown":["EFERT"]"#), "{}", texts[0]);
    }
    sim.feed(FeedEvent::Latest {
        symbol: Symbol::from("EFERT"),
        frame: Some(prepare_text(b"e0")),
    });
    assert_eq!(sim.texts(a), ["e0"]);
    assert_eq!(sim.texts(b), ["e0"]);
    let c = sim.open_ws();
    sim.send_text(c, SUBSCRIBE_EFERT);
    assert_eq!(sim.texts(c)[1], "e0", "the value is at hand now");
    assert_eq!(sim.fetches.len(), 1);
}

#[test]
fn a_fetch_ingest_did_not_get_is_not_pending() {
    let mut sim = evicted_efert();
    sim.fetch_fails = true;
    let (a, b) = (sim.open_ws(), sim.open_ws());
    sim.send_text(a, SUBSCRIBE_EFERT);
    sim.send_text(b, SUBSCRIBE_EFERT);
    assert_eq!(sim.fetches.len(), 2, "each subscribe asks again");
    assert_eq!(WorkerStats::get(&sim.stats().symbol_fetches), 0);
}

#[test]
fn without_a_feed_nothing_is_fetched() {
    let mut settings = sim::settings();
    settings.max_symbols = 1;
    let mut sim = Sim::new(settings);
    sim.tick("EFERT", "e0");
    sim.tick("LUCK", "l0");
    let a = sim.open_ws();
    sim.send_text(a, SUBSCRIBE_EFERT);
    assert!(sim.fetches.is_empty());
}
