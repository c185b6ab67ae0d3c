//! TLS connections (wss://) through the core, in memory: a real rustls client on each simulated socket
//! (see `sim_tls.rs`), so the handshake, the sealing of queued frames, partial records, close_notify and
//! the accounting of unsealed frames run as they do on a real socket.

use super::sim::{self, SUBSCRIBE_EFERT, ServerFrame, Sim};
use crate::protocol::{CloseCode, OpCode};
use crate::runtime::stats::WorkerStats;

#[test]
fn a_wss_client_handshakes_upgrades_subscribes_and_gets_ticks_in_order() {
    let mut sim = Sim::new_tls(sim::settings());
    sim.feed(sim::snapshot(&[("EFERT", "e0")]));
    let slot = sim.open_ws();
    assert_eq!(WorkerStats::get(&sim.stats().tls_handshakes), 1);
    let tls = sim.client(slot).tls.as_ref().expect("a TLS client");
    assert!(!tls.conn.is_handshaking());
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    sim.send_text(slot, SUBSCRIBE_EFERT);
    let texts = sim.texts(slot);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].contains(r#""type":"subscribed""#), "{}", texts[0]);
    assert_eq!(texts[1], "e0", "the latest value follows the ack");
    let expected: Vec<String> = (1..=100).map(|i| format!("e{i}")).collect();
    for e in &expected {
        sim.tick("EFERT", e);
    }
    assert_eq!(sim.texts(slot), expected);
    sim.send_frame(slot, OpCode::Ping, b"hi");
    assert_eq!(sim.frames(slot), [ServerFrame::Pong(b"hi".to_vec())]);
    assert_eq!(sim.core.backlog(), 0);
    assert!(sim.client(slot).tls.as_ref().unwrap().error.is_none());
}

#[test]
fn a_slow_tls_reader_gets_partial_records_then_conflated_ticks_then_1013() {
    let mut settings = sim::settings();
    settings.max_backlog = 1024;
    settings.slow_grace_ms = 1_000;
    let mut sim = Sim::new_tls(settings);
    let slot = sim.open_ws();
    sim.send_text(slot, r#"{"op":"subscribe","symbols":["EFERT","LUCK"]}"#);
    sim.texts(slot);
    // A small window: every send completes a few dozen bytes, so records arrive in pieces.
    sim.client_mut(slot).window = 37;
    for i in 0..20 {
        sim.tick("EFERT", &format!("EFERT {i:04}"));
    }
    let expected: Vec<String> = (0..20).map(|i| format!("EFERT {i:04}")).collect();
    assert_eq!(sim.texts(slot), expected, "partial sends lose nothing");
    // It stops reading: past the backlog limit, only the latest value of each symbol waits.
    sim.client_mut(slot).stalled = true;
    for i in 0..400 {
        sim.tick("EFERT", &format!("EFERT {i:04}"));
        sim.tick("LUCK", &format!("LUCK {i:04}"));
    }
    assert!(WorkerStats::get(&sim.stats().conflated) > 0);
    assert!(
        sim.core.backlog() <= 1024 + 512,
        "bounded: {} bytes",
        sim.core.backlog()
    );
    sim.client_mut(slot).stalled = false;
    sim.run();
    let texts = sim.texts(slot);
    assert_eq!(texts.last().map(String::as_str), Some("LUCK 0399"));
    assert!(texts.contains(&"EFERT 0399".to_string()), "{texts:?}");
    for symbol in ["EFERT", "LUCK"] {
        let seen: Vec<&String> = texts.iter().filter(|t| t.starts_with(symbol)).collect();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
    }
    // Stalled again, over the limit past the grace: closed with 1013 (seen once it reads again).
    sim.client_mut(slot).stalled = true;
    for i in 0..200 {
        sim.tick("EFERT", &format!("EFERT {:04}", 400 + i));
        sim.tick("LUCK", &format!("LUCK {:04}", 400 + i));
    }
    sim.advance_by_steps(1_500, 250);
    sim.client_mut(slot).stalled = false;
    sim.run();
    let frames = sim.frames(slot);
    assert!(
        matches!(
            frames.last(),
            Some(ServerFrame::Close(Some(CloseCode::TRY_AGAIN_LATER), _))
        ),
        "{:?}",
        frames.last()
    );
    assert_eq!(WorkerStats::get(&sim.stats().slow_consumers), 1);
    sim.hang_up(slot);
    assert!(sim.is_closed(slot));
    assert_eq!(sim.core.backlog(), 0);
}

#[test]
fn a_close_over_tls_is_answered_then_close_notify_ends_the_stream() {
    let mut sim = Sim::new_tls(sim::settings());
    let slot = sim.open_ws();
    sim.send_frame(slot, OpCode::Close, &1000u16.to_be_bytes());
    assert_eq!(
        sim.frames(slot),
        [ServerFrame::Close(Some(CloseCode::NORMAL), String::new())]
    );
    let client = sim.client(slot);
    assert!(
        client.tls.as_ref().unwrap().peer_closed,
        "close_notify after the last frame"
    );
    assert!(client.write_shut, "then the write side is shut");
    assert!(!client.closed, "lingering until the client closes");
    sim.hang_up(slot);
    assert!(sim.is_closed(slot));
    assert_eq!(WorkerStats::get(&sim.stats().open), 0);
}

#[test]
fn close_notify_from_the_client_ends_the_connection() {
    let mut sim = Sim::new_tls(sim::settings());
    let slot = sim.open_ws();
    sim.close_notify(slot);
    let client = sim.client(slot);
    assert!(client.tls.as_ref().unwrap().peer_closed, "answered in kind");
    assert!(client.write_shut);
    sim.hang_up(slot);
    assert!(sim.is_closed(slot));
}

#[test]
fn the_backlog_gauge_is_exact_after_a_tls_connection_closes_with_unsealed_frames() {
    let mut settings = sim::settings();
    settings.max_backlog = 1 << 20;
    let mut sim = Sim::new_tls(settings);
    let (a, b) = (sim.open_ws(), sim.open_ws());
    for slot in [a, b] {
        sim.send_text(slot, SUBSCRIBE_EFERT);
        sim.texts(slot);
    }
    // `a` stops reading: its first send stays in flight, the ticks after it wait unsealed.
    sim.client_mut(a).stalled = true;
    for i in 0..50 {
        sim.tick("EFERT", &format!("tick {i}"));
    }
    let tls = sim.core.conns()[a as usize].tls.as_ref().expect("TLS");
    assert!(tls.has_plain(), "frames wait unsealed behind the send");
    assert!(sim.core.backlog() > 0);
    sim.hang_up(a);
    assert!(sim.is_closed(a));
    assert_eq!(sim.core.backlog(), 0, "nothing of `a` left in the gauge");
    sim.advance(300);
    assert_eq!(WorkerStats::get(&sim.stats().backlog_bytes), 0);
    sim.tick("EFERT", "after");
    assert_eq!(sim.texts(b).last().map(String::as_str), Some("after"));
}

#[test]
fn the_backlog_gauge_is_exact_after_a_stalled_tls_connection_times_out() {
    let mut settings = sim::settings();
    settings.max_backlog = 1 << 20;
    settings.ping_interval_s = 1;
    settings.idle_timeout_s = 3;
    let mut sim = Sim::new_tls(settings);
    let slot = sim.open_ws();
    sim.send_text(slot, SUBSCRIBE_EFERT);
    sim.client_mut(slot).stalled = true;
    for i in 0..50 {
        sim.tick("EFERT", &format!("tick {i}"));
    }
    assert!(sim.core.backlog() > 0);
    // Silent past the idle timeout: aborted with its send in flight and frames unsealed.
    sim.advance_by_steps(5_000, 250);
    assert!(sim.is_closed(slot));
    assert_eq!(sim.core.backlog(), 0);
}

#[test]
fn plain_http_on_the_tls_port_is_refused() {
    let mut sim = Sim::new_tls(sim::settings());
    let slot = sim.connect_raw();
    sim.write_raw(slot, sim::UPGRADE.as_bytes());
    assert_eq!(WorkerStats::get(&sim.stats().tls_failures), 1);
    let head = sim.read_http(slot);
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(sim.client(slot).write_shut, "answered, then shut");
    sim.hang_up(slot);
    assert!(sim.is_closed(slot));
}

#[test]
// In a debug build rustls's own `debug_assert!(!sent_fatal_alert)` fires when the unbuffered API is asked
// again after its fatal alert within one `process_tls_records` loop; the release run checks the behaviour.
#[cfg_attr(
    debug_assertions,
    ignore = "rustls debug assertion on a second fatal alert (unbuffered API); runs in release"
)]
fn garbage_after_the_close_does_not_write_to_a_shut_socket() {
    let mut sim = Sim::new_tls(sim::settings());
    let slot = sim.open_ws();
    sim.send_frame(slot, OpCode::Close, &1000u16.to_be_bytes());
    assert!(sim.client(slot).write_shut);
    // A record that fails to decrypt, while the server lingers.
    sim.write_raw(slot, b"\x17\x03\x03\x00\x08garbage!");
    sim.hang_up(slot);
    assert!(sim.is_closed(slot));
    assert_eq!(sim.core.backlog(), 0);
}
