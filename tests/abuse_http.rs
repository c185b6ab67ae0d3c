//! Abuse resistance at the door, over real sockets: token times a client chooses cannot wrap a timer,
//! tokens with repeated keys are refused, junk heads are answered at once, a full connection table still
//! answers health checks (and refuses upgrades with 503), and per-address limits hold per process
//! whatever the worker count. (The bad-request rows themselves are in common/cases.rs, run over TCP by
//! edge_http.rs and over TLS by edge_tls.rs.)

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use ringcast::auth::jwt::sign_hs256_raw;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

fn token(payload: &str) -> String {
    sign_hs256_raw(r#"{"alg":"HS256","typ":"JWT"}"#, payload, SECRET.as_bytes())
}

fn status(head: &str) -> u16 {
    status_of(head.as_bytes())
}

/// Nothing arrives on `s` for `quiet` (no frame, no EOF): the connection is open and idle.
fn stays_quiet(s: &mut TcpStream, quiet: Duration) -> bool {
    s.set_read_timeout(Some(quiet)).unwrap();
    let mut b = [0u8; 64];
    let quiet = matches!(s.read(&mut b), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    quiet
}

#[test]
fn a_token_expiring_in_the_far_future_does_not_wrap_its_timers() {
    let server = Server::start(&[
        "--workers",
        "1",
        "--redis",
        "redis://127.0.0.1:1",
        "--auth-secret",
        SECRET,
        "--auth-leeway",
        "30s",
    ]);
    // The close is due at exp + leeway: `(exp + 30 - now) * 1000` just past 2^64 wrapped to a deadline
    // a second or so away (closed 4001 at once). One second of margin for the server's clock reading.
    let wraps = now_s() + (u64::MAX / 1000 + 1) + 1 - 30;
    for exp in [wraps, u64::MAX] {
        let jwt = token(&format!(r#"{{"sub":"u1","exp":{exp}}}"#));
        let (mut s, head) = upgrade(&server, &format!("/?token={jwt}"), "");
        assert_eq!(status(&head), 101, "{head}");
        // No Redis at --redis: a client is told the feed is down right after its 101; then silence.
        assert_eq!(read_text(&mut s), r#"{"type":"feed","status":"down"}"#);
        assert!(
            stays_quiet(&mut s, Duration::from_millis(2500)),
            "exp {exp}: neither warned nor closed"
        );
        s.write_all(&frame(true, 0x9, b"alive?")).unwrap();
        let (_, opcode, payload) = read_frame(&mut s).expect("a pong");
        assert_eq!((opcode, payload.as_slice()), (0xA, &b"alive?"[..]));
    }
    assert_eq!(server.metric("ringcast_token_expired_total"), 0.0);
}

#[test]
fn a_token_with_a_repeated_key_is_refused() {
    let server = Server::start(&["--workers", "1", "--auth-secret", SECRET]);
    let exp = now_s() + 600;
    let good = token(&format!(r#"{{"sub":"u1","exp":{exp}}}"#));
    assert_eq!(
        status(&upgrade(&server, &format!("/?token={good}"), "").1),
        101
    );
    // The last `sub` wins in serde_json; a gateway that logs or checks the first sees another user.
    let two_subs = token(&format!(r#"{{"sub":"u1","exp":{exp},"sub":"admin"}}"#));
    // Refused as any invalid token: a 101, then close 4003 with the reason (`--auth-refusal close`).
    let (mut s, head) = upgrade(&server, &format!("/?token={two_subs}"), "");
    assert_eq!(status(&head), 101, "{head}");
    let (_, opcode, payload) = read_frame(&mut s).expect("a Close");
    assert_eq!((opcode, &payload[..2]), (0x8, &4003u16.to_be_bytes()[..]));
    let reason = String::from_utf8_lossy(&payload[2..]);
    assert!(reason.contains("duplicate key in the payload"), "{reason}");
    let two_algs = sign_hs256_raw(
        r#"{"alg":"none","alg":"HS256"}"#,
        &format!(r#"{{"sub":"u1","exp":{exp}}}"#),
        SECRET.as_bytes(),
    );
    let (mut s, head) = upgrade(&server, &format!("/?token={two_algs}"), "");
    assert_eq!(status(&head), 101, "{head}");
    let (_, opcode, payload) = read_frame(&mut s).expect("a Close");
    assert_eq!((opcode, &payload[..2]), (0x8, &4003u16.to_be_bytes()[..]));
    let reason = String::from_utf8_lossy(&payload[2..]);
    assert!(reason.contains("duplicate key in the header"), "{reason}");
}

#[test]
fn junk_heads_are_answered_at_once_not_at_the_handshake_timeout() {
    let server = Server::start(&["--workers", "1", "--handshake-timeout", "10s"]);
    // Trickled: the 400 comes with the first byte that cannot belong to a request.
    for junk in [
        "GET / HTTP/1.1\n",
        "GET / HTTP/1.1\r\nHost: x\r\nBad Name: y",
    ] {
        let mut s = server.connect();
        let started = Instant::now();
        for b in junk.as_bytes() {
            if s.write_all(std::slice::from_ref(b)).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let resp = read_to_close(&mut s);
        assert_eq!(
            status_of(&resp),
            400,
            "{junk:?}: {}",
            String::from_utf8_lossy(&resp)
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{junk:?}: answered after {:?}",
            started.elapsed()
        );
    }
    assert_eq!(server.metric("ringcast_handshake_timeouts_total"), 0.0);
}

#[test]
fn a_full_connection_table_answers_health_and_refuses_upgrades_with_503() {
    let server = Server::start(&["--workers", "1", "--max-conns-per-worker", "2"]);
    let first = server.ws();
    let _second = server.ws();
    for _ in 0..3 {
        let (_, head) = upgrade(&server, "/", "");
        assert_eq!(status(&head), 503, "{head}");
        assert!(head.contains("Retry-After: "), "{head}");
        assert_eq!(server.get("/healthz").0, 200, "health still answered");
        assert_eq!(server.get("/metrics").0, 200, "metrics still answered");
    }
    assert!(server.metric("ringcast_admission_refused_total") >= 3.0);
    drop(first);
    poll_until(Duration::from_secs(5), "the freed slot is reused", || {
        let (_, head) = upgrade(&server, "/", "");
        let reused = status(&head) == 101;
        if !reused {
            assert_eq!(status(&head), 503, "{head}");
        }
        reused
    });
}

#[test]
fn with_every_slot_taken_new_connections_wait_in_the_backlog_instead_of_being_reset() {
    // One WebSocket slot plus the HTTP reserve (64): 70 silent connections take every slot.
    let server = Server::start(&[
        "--workers",
        "1",
        "--max-conns-per-worker",
        "1",
        "--handshake-timeout",
        "1s",
    ]);
    let silent: Vec<TcpStream> = (0..70).map(|_| server.connect()).collect();
    let mut s = server.connect();
    let started = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let resp = read_to_close(&mut s);
    assert_eq!(
        status_of(&resp),
        200,
        "served once the silent ones timed out, after {:?}: {}",
        started.elapsed(),
        String::from_utf8_lossy(&resp)
    );
    drop(silent);
}

#[test]
fn connections_per_address_are_limited_per_process_not_per_worker() {
    // Each worker has its own SO_REUSEPORT listener: ten connections from one address spread over
    // both (all ten on one worker happens 2 times in 1024).
    let server = Server::start(&["--workers", "2", "--max-conns-per-ip", "3"]);
    let mut held = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let (s, head) = upgrade(&server, "/", "");
        statuses.push(status(&head));
        held.push(s);
    }
    let admitted = statuses.iter().filter(|&&s| s == 101).count();
    assert_eq!(admitted, 3, "{statuses:?}");
    assert!(
        statuses.iter().all(|&s| s == 101 || s == 503),
        "{statuses:?}"
    );
    // A close gives its place back, whichever worker held it.
    held.clear();
    poll_until(Duration::from_secs(5), "places given back", || {
        status(&upgrade(&server, "/", "").1) == 101
    });
}

#[test]
fn the_handshake_rate_is_limited_per_process_not_per_worker() {
    let server = Server::start(&["--workers", "2", "--handshake-rate", "3"]);
    let started = Instant::now();
    let statuses: Vec<u16> = (0..10)
        .map(|_| status(&upgrade(&server, "/", "").1))
        .collect();
    let admitted = statuses.iter().filter(|&&s| s == 101).count() as f64;
    // A burst of one second's worth (3), plus what refilled while the test ran.
    let allowed = 3.0 + (started.elapsed().as_secs_f64() * 3.0).ceil();
    assert!(
        admitted >= 1.0 && admitted <= allowed,
        "{admitted} admitted, {allowed} allowed: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 101 || s == 503),
        "{statuses:?}"
    );
}
