//! What a load balancer checks: `/healthz` (liveness) and `/readyz` (readiness: the feed is up and the
//! process is not draining); and a client that connects during a feed outage is told at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::sim::{self, Sim};
use crate::fanout::{FeedEvent, prepare_text};
use crate::http::Exposition;
use crate::ingest::IngestStats;

const DOWN: &str = r#"{"type":"feed","status":"down"}"#;
const UP: &str = r#"{"type":"feed","status":"up"}"#;

/// What `/readyz` reads of a server with a feed: ingest's `redis_up`.
#[derive(Debug)]
struct FeedOf(Arc<IngestStats>);

impl Exposition for FeedOf {
    fn render(&self) -> String {
        String::new()
    }
    fn feed_up(&self) -> Option<bool> {
        Some(self.0.redis_up.load(Ordering::Relaxed))
    }
}

fn get(sim: &mut Sim, path: &str) -> String {
    let (slot, head) = sim.request_from(
        Some([10, 0, 0, 1].into()),
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"),
    );
    let body = String::from_utf8_lossy(&sim.client(slot).inbox).into_owned();
    format!("{head}{body}")
}

fn status(up: bool) -> FeedEvent {
    FeedEvent::Status {
        up,
        frame: prepare_text(if up { UP } else { DOWN }.as_bytes()),
    }
}

#[test]
fn readyz_follows_the_feed_and_the_drain_while_healthz_stays_200() {
    let ingest = Arc::new(IngestStats::default());
    let mut settings = sim::settings();
    settings.metrics = Arc::new(FeedOf(ingest.clone()));
    let mut sim = Sim::new(settings);
    // Not yet connected to Redis.
    let answer = get(&mut sim, "/readyz");
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.ends_with("feed down\n"), "{answer}");
    assert!(get(&mut sim, "/healthz").starts_with("HTTP/1.1 200 "));
    ingest.redis_up.store(true, Ordering::Relaxed);
    let answer = get(&mut sim, "/readyz");
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.ends_with("ready\n"), "{answer}");
    sim.begin_shutdown();
    let answer = get(&mut sim, "/readyz");
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.ends_with("draining\n"), "{answer}");
}

#[test]
fn without_a_feed_readyz_is_200() {
    let mut sim = Sim::new(sim::settings());
    assert!(get(&mut sim, "/readyz").starts_with("HTTP/1.1 200 "));
}

#[test]
fn a_client_connecting_during_a_feed_outage_gets_feed_down_at_once() {
    let mut sim = Sim::new(sim::settings());
    let before = sim.open_ws();
    sim.feed(status(false));
    assert_eq!(sim.texts(before), [DOWN]);
    let during = sim.open_ws();
    assert_eq!(sim.texts(during), [DOWN], "told on connect");
    sim.feed(status(true));
    assert_eq!(sim.texts(before), [UP]);
    assert_eq!(sim.texts(during), [UP]);
    let after = sim.open_ws();
    assert!(
        sim.texts(after).is_empty(),
        "nothing to tell once the feed is up"
    );
}
