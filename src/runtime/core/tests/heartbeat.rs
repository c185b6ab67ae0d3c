//! Heartbeats with traffic: what keeps a connection alive is what the client sends (pings, pongs,
//! commands), not what it receives. A reader that only receives ticks is closed at the idle timeout.

use super::sim::{self, SUBSCRIBE_EFERT, ServerFrame, Sim};
use crate::protocol::OpCode;
use crate::runtime::stats::WorkerStats;

const PING_S: u32 = 20;
const IDLE_S: u32 = 60;

fn heartbeat_sim() -> Sim {
    let mut settings = sim::settings();
    settings.ping_interval_s = PING_S;
    settings.idle_timeout_s = IDLE_S;
    Sim::new(settings)
}

#[test]
fn a_client_that_keeps_sending_is_never_idle_closed_and_a_receive_only_one_is() {
    let mut sim = heartbeat_sim();
    let pinger = sim.open_ws(); // sends a ping every 10 s
    let ponger = sim.open_ws(); // answers the server's pings
    let listener = sim.open_ws(); // only receives ticks
    for slot in [pinger, ponger, listener] {
        sim.send_text(slot, SUBSCRIBE_EFERT);
        sim.texts(slot);
    }
    let mut listener_closed_at = None;
    let mut ticks = 0;
    let mut listener_ticks = 0;
    let mut ponger_pinged = 0;
    let mut listener_pinged = 0;
    // Five minutes, in 250 ms steps, with a tick every second.
    for step in 1..=(300_000u32 / 250) {
        sim.advance(250);
        let now = sim.now_us / 1000;
        if step.is_multiple_of(4) {
            ticks += 1;
            sim.tick("EFERT", &format!("e{ticks}"));
        }
        if now.is_multiple_of(10_000) {
            sim.send_frame(pinger, OpCode::Ping, b"hb");
        }
        for frame in sim.frames(ponger) {
            if let ServerFrame::Ping(payload) = frame {
                ponger_pinged += 1;
                sim.send_frame(ponger, OpCode::Pong, &payload);
            }
        }
        if listener_closed_at.is_none() {
            let frames = sim.frames(listener);
            listener_ticks += frames
                .iter()
                .filter(|f| matches!(f, ServerFrame::Text(_)))
                .count();
            listener_pinged += frames
                .iter()
                .filter(|f| matches!(f, ServerFrame::Ping(_)))
                .count();
            // An idle close is an abort: the peer is presumed gone, so no Close frame is sent.
            assert!(sim::close_of(&frames).is_none(), "{frames:?}");
            if sim.is_closed(listener) {
                listener_closed_at = Some(now);
            }
        }
    }
    let pings: Vec<ServerFrame> = sim.frames(pinger);
    assert!(
        !sim.is_closed(pinger),
        "a client that pings is never idle-closed"
    );
    assert!(!sim.is_closed(ponger), "nor one that answers pings");
    assert!(
        !pings.iter().any(|f| matches!(f, ServerFrame::Ping(_))),
        "an active client is never pinged"
    );
    assert!(
        ponger_pinged > 0,
        "the server pinged the silent-but-answering client"
    );
    // One ping per silence of a ping interval, however often the sweep passes a slot (with three
    // connections it passes each one every upkeep).
    assert!(
        ponger_pinged <= (300 / PING_S) as usize,
        "pinged {ponger_pinged} times in 300 s"
    );
    assert_eq!(
        listener_pinged, 1,
        "one ping, then silence until the idle close"
    );
    // The listener sent nothing after its subscribe (t≈0): closed once silent for the idle timeout,
    // however many ticks it received meanwhile.
    let at = listener_closed_at.expect("the receive-only client is closed");
    let idle_ms = u64::from(IDLE_S) * 1000;
    assert!(
        (idle_ms..=idle_ms + 1_000).contains(&at),
        "closed at {at} ms"
    );
    assert!(
        listener_ticks >= 55,
        "it received {listener_ticks} ticks before"
    );
    assert_eq!(WorkerStats::get(&sim.stats().idle_timeouts), 1);
    assert_eq!(WorkerStats::get(&sim.stats().open), 2);
}
