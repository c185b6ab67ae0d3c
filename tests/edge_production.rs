//! Production behaviour over real sockets: heartbeats and the idle timeout, slow consumers (conflation,
//! fast clients unaffected, 1013 after the grace period), and the graceful drain on SIGTERM.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn silent_connections_are_pinged_then_closed_at_the_idle_timeout() {
    let server = Server::start(&[
        "--workers",
        "1",
        "--echo",
        "--ping-interval",
        "1s",
        "--idle-timeout",
        "3s",
    ]);
    let mut alive = server.ws();
    let mut dead = server.ws();
    // The live client answers every ping for 4 s (longer than the idle timeout) and stays open.
    let until = Instant::now() + Duration::from_secs(4);
    let mut pings = 0;
    while Instant::now() < until {
        let (_, opcode, payload) = read_frame(&mut alive).expect("a ping");
        assert_eq!(opcode, 0x9, "only pings arrive on a silent connection");
        alive.write_all(&frame(true, 0xA, &payload)).unwrap();
        pings += 1;
    }
    assert!(pings >= 2, "pinged about once a second, got {pings}");
    alive.write_all(&frame(true, 0x1, b"still here")).unwrap();
    loop {
        let (_, opcode, payload) = read_frame(&mut alive).unwrap();
        if opcode == 0x1 {
            assert_eq!(payload, b"still here");
            break;
        }
    }
    // The silent one (it never answered a ping) has been closed.
    assert!(
        closed_within(&mut dead, Duration::from_secs(3)),
        "idle connection not closed"
    );
    assert!(server.metric("ringcast_idle_timeouts_total") >= 1.0);
    assert!(server.metric("ringcast_pings_total") >= 2.0);
}

#[test]
fn sigterm_drains_clients_with_1012_and_exits() {
    let mut server = Server::start(&[
        "--workers",
        "2",
        "--echo",
        "--drain-window",
        "1s",
        "--close-timeout",
        "1s",
    ]);
    let mut clients: Vec<TcpStream> = (0..8).map(|_| server.ws()).collect();
    server.signal("TERM");
    // The draining process stops listening at once (the signal is handled asynchronously: poll, well
    // within the window): health checks and new clients are refused, so a load balancer moves on.
    let deadline = Instant::now() + Duration::from_millis(900);
    while TcpStream::connect_timeout(&server.addr, Duration::from_millis(200)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting connections 900 ms after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for c in &mut clients {
        assert_eq!(
            read_close_code(c),
            Some(1012),
            "clients are told to reconnect elsewhere"
        );
        c.write_all(&frame(true, 0x8, &1000u16.to_be_bytes()))
            .unwrap();
    }
    assert_eq!(
        server.wait_exit(Duration::from_secs(5)),
        Some(0),
        "exits once drained"
    );
}

#[test]
fn a_slow_client_gets_current_ticks_and_fast_clients_are_not_slowed() {
    let (redis, server) = fed_server(
        "1",
        "s:",
        &[
            "--max-backlog",
            "1000000",
            "--send-buffer",
            "8192",
            "--slow-grace",
            "60s",
        ],
    );
    let symbols = "S0,S1,S2,S3,S4";
    let mut slow = small_window_client(&server, symbols);
    let mut fast = server.ws();
    subscribe(&mut fast, symbols);
    // 2,000 ticks of ~1.5 KB (3 MB): the slow client overflows its 1 MB backlog many times over, while
    // the fast one, reading all along, never comes near it even on a loaded machine.
    let (per_symbol, pad) = (400, "x".repeat(1500));
    let total = per_symbol * 5;
    // The fast client reads on its own thread while ticks are published; `received` counts its ticks.
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = received.clone();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::with_capacity(total);
        while got.len() < total {
            match read_frame(&mut fast) {
                Some((_, 0x1, p)) => got.push(String::from_utf8(p).unwrap()),
                other => panic!("fast client: after {} ticks got {other:?}", got.len()),
            }
            counter.store(got.len(), std::sync::atomic::Ordering::Relaxed);
        }
        got
    });
    let mut con = redis_con(&redis.url());
    let mut published = Vec::with_capacity(total);
    for seq in 0..per_symbol {
        let mut pipe = redis::pipe();
        for sym in 0..5 {
            let tick = format!(r#"{{"symbol":"S{sym}","seq":{seq},"pad":"{pad}"}}"#);
            pipe.cmd("PUBLISH").arg("s:ticks").arg(&tick).ignore();
            published.push(tick);
        }
        let () = pipe.query(&mut con).unwrap();
        // A feed, not a flood: the next batch goes out once the fast client is within 100 ticks (150 KB,
        // far under its 1 MB backlog) of the feed, however loaded the machine is.
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.load(std::sync::atomic::Ordering::Relaxed) + 100 < published.len() {
            assert!(Instant::now() < deadline, "the fast client stalled");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let got = reader.join().unwrap();
    assert_eq!(got, published, "the fast client got every tick, in order");
    // Memory stays bounded while the slow client is not reading: its backlog is full (it fell behind by
    // ~3 MB), yet held at --max-backlog (plus at most the tick that crossed it). The gauge is refreshed
    // every 250 ms, so it may still count the fast client's last ticks: poll it, against a deadline.
    let bounded = 900_000.0..=1_000_000.0 + 2_000.0;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let backlog = server.metric("ringcast_backlog_bytes");
        if bounded.contains(&backlog) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "backlog {backlog} B while the slow client is not reading; --max-backlog is 1,000,000"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The slow client now reads what waited for it: fewer ticks, ending on the latest of each symbol.
    slow.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut last_seq = [-1i64; 5];
    let mut count = 0;
    while let Some((_, 0x1, payload)) = read_frame(&mut slow) {
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        let sym = v["symbol"].as_str().unwrap()[1..].parse::<usize>().unwrap();
        let seq = v["seq"].as_i64().unwrap();
        assert!(
            seq > last_seq[sym],
            "never an older value after a newer one"
        );
        last_seq[sym] = seq;
        count += 1;
    }
    assert_eq!(
        last_seq,
        [per_symbol as i64 - 1; 5],
        "converged to the latest value of every symbol"
    );
    assert!(count < total, "conflated: {count} of {total}");
    assert!(server.metric("ringcast_conflated_frames_total") > 0.0);
}

#[test]
fn a_client_over_its_backlog_past_the_grace_period_is_closed_with_1013() {
    let (redis, server) = fed_server(
        "1",
        "g:",
        &[
            "--max-backlog",
            "8192",
            "--send-buffer",
            "4096",
            "--slow-grace",
            "1s",
            "--close-timeout",
            "10s",
        ],
    );
    let mut stuck = small_window_client(&server, "G0,G1,G2,G3,G4,G5,G6,G7");
    let mut con = redis_con(&redis.url());
    let pad = "y".repeat(2000);
    // Ticks go out (the client never reads) until the server closes it as a slow consumer: past its
    // 8 KB backlog for over the 1 s grace.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("ringcast_slow_consumers_total") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "not closed as a slow consumer within 10 s"
        );
        let mut pipe = redis::pipe();
        for sym in 0..8 {
            pipe.cmd("PUBLISH")
                .arg("g:ticks")
                .arg(format!(r#"{{"symbol":"G{sym}","pad":"{pad}"}}"#))
                .ignore();
        }
        let () = pipe.query(&mut con).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    // Reading now, the client gets what was queued, then the Close frame: 1013 (try again later).
    // The close timeout (10 s) leaves it the time to read that far.
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        assert!(Instant::now() < deadline, "no Close frame within 10 s");
        match read_frame(&mut stuck) {
            Some((_, 0x8, payload)) => {
                assert!(payload.len() >= 2, "Close frame without a code");
                break u16::from_be_bytes([payload[0], payload[1]]);
            }
            Some((_, 0x1, _)) => {}
            other => panic!("expected ticks then a Close frame, got {other:?}"),
        }
    };
    assert_eq!(code, 1013, "a slow consumer is told to try again later");
}
