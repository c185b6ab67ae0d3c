//! Refused tokens a browser can see (issue 11), over real sockets: with the default `--auth-refusal
//! close` an upgrade with a missing, invalid or expired token gets a `101` and at once a Close (4001
//! expired, 4003 otherwise, the reason saying why), never opens for messages and is counted as a
//! refused handshake; `--auth-refusal http` keeps the `401`. Origin refusals stay `403` in both modes.
//! Refusals are logged at the default level (info) with their reason, at most one line a second per
//! reason, the next line counting those left out.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

fn token(exp: u64, secret: &[u8]) -> String {
    signed_token(secret, "u1", exp, None)
}

/// The first frame after the `101` must be a Close: its code and reason.
fn first_frame_is_close(s: &mut TcpStream) -> (u16, String) {
    let (_, opcode, payload) = read_frame(s).expect("a frame after the 101");
    assert_eq!(
        opcode,
        0x8,
        "first frame is not a Close: {:?}",
        String::from_utf8_lossy(&payload)
    );
    assert!(payload.len() >= 2, "a Close with a code");
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    (code, String::from_utf8(payload[2..].to_vec()).unwrap())
}

#[test]
fn refused_tokens_get_a_101_then_a_close_code_a_browser_can_read() {
    let server = Server::start(&[
        "--workers",
        "1",
        "--auth-secret",
        SECRET,
        "--origins",
        "https://*.example.com",
    ]);
    let origin = "Origin: https://app.example.com\r\n";
    let exp = now_s() - 3600;
    // A subscribe in the same packet as the upgrade: never acted on.
    let subscribe = frame(true, 0x1, br#"{"op":"subscribe","symbols":["EFERT"]}"#);

    let (mut s, head) = upgrade_then(
        &server,
        &format!("/?token={}", token(exp, SECRET.as_bytes())),
        origin,
        &subscribe,
    );
    assert_eq!(status_of(head.as_bytes()), 101, "{head}");
    assert_eq!(
        first_frame_is_close(&mut s),
        (4001, format!("token expired at {exp}"))
    );
    assert!(closed_within(&mut s, Duration::from_secs(5)), "then EOF");

    let forged = token(now_s() + 600, &[9u8; 32]);
    let (mut s, head) = upgrade_then(&server, &format!("/?token={forged}"), origin, &subscribe);
    assert_eq!(status_of(head.as_bytes()), 101, "{head}");
    assert_eq!(first_frame_is_close(&mut s), (4003, "bad signature".into()));

    let (mut s, head) = upgrade(&server, "/", origin);
    assert_eq!(status_of(head.as_bytes()), 101, "{head}");
    assert_eq!(first_frame_is_close(&mut s), (4003, "no token".into()));

    // A browser that offered subprotocols needs one answered, or it reports 1006 instead of the code.
    let (mut s, head) = upgrade(
        &server,
        "/",
        &format!("{origin}Sec-WebSocket-Protocol: ringcast.v1, token.not-a-jwt\r\n"),
    );
    assert_eq!(status_of(head.as_bytes()), 101, "{head}");
    assert!(
        head.contains("Sec-WebSocket-Protocol: ringcast.v1\r\n"),
        "{head}"
    );
    let (code, reason) = first_frame_is_close(&mut s);
    assert_eq!(code, 4003);
    assert!(reason.starts_with("malformed token"), "{reason}");

    // Origin refusals stay 403.
    let good = token(now_s() + 600, SECRET.as_bytes());
    let (_, head) = upgrade(
        &server,
        &format!("/?token={good}"),
        "Origin: https://evil.test\r\n",
    );
    assert_eq!(status_of(head.as_bytes()), 403, "{head}");

    // Counted as refused handshakes (4 tokens + 1 origin); the subscribes were never acted on.
    assert_eq!(server.metric("ringcast_handshakes_failed_total"), 5.0);
    assert_eq!(server.metric("ringcast_symbols"), 0.0, "nothing subscribed");
    // A valid token with the same subscribe in the same packet does subscribe (the gauge can move).
    let (_ok, head) = upgrade_then(&server, &format!("/?token={good}"), origin, &subscribe);
    assert_eq!(status_of(head.as_bytes()), 101, "{head}");
    poll_until(Duration::from_secs(5), "EFERT subscribed", || {
        server.metric("ringcast_symbols") == 1.0
    });
}

#[test]
fn auth_refusal_http_keeps_the_401() {
    let server = Server::start(&[
        "--workers",
        "1",
        "--auth-secret",
        SECRET,
        "--auth-refusal",
        "http",
    ]);
    let expired = token(now_s() - 3600, SECRET.as_bytes());
    let (mut s, head) = upgrade(&server, &format!("/?token={expired}"), "");
    assert_eq!(status_of(head.as_bytes()), 401, "{head}");
    assert!(head.contains("error=\"invalid_token\""), "{head}");
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    let (_, head) = upgrade(&server, "/", "");
    assert_eq!(status_of(head.as_bytes()), 401, "{head}");
    assert_eq!(server.metric("ringcast_handshakes_failed_total"), 2.0);
}

#[test]
fn refusals_are_logged_at_the_default_level_and_a_flood_is_rate_limited() {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen = addr.to_string();
    let mut child = ringcast_command(
        &[
            "serve",
            "--listen",
            &listen,
            "--workers",
            "1",
            "--origins",
            "https://app.example.com",
            "--auth-secret",
            SECRET,
        ],
        &[],
    )
    .env_remove("RINGCAST_LOG")
    .spawn()
    .unwrap();
    let out = Captured::of(&mut child);
    let server = Server::adopt(child, addr);
    let started = std::time::Instant::now();
    const FLOOD: usize = 300;
    for _ in 0..FLOOD {
        let (_, head) = upgrade(&server, "/", "Origin: https://evil.test\r\n");
        assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    }
    // A missing token: another reason, logged on its own line although the 403s are being held back.
    let (mut s, head) = upgrade(&server, "/", "Origin: https://app.example.com\r\n");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(first_frame_is_close(&mut s).0, 4003);
    // After a second, the next 403 is logged with the count of those left out.
    std::thread::sleep(Duration::from_millis(1100));
    let (_, head) = upgrade(&server, "/", "Origin: https://evil.test\r\n");
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let elapsed = started.elapsed();
    poll_until(Duration::from_secs(5), "the refusal lines", || {
        out.text().matches("code=4003").count() == 1
            && out
                .text()
                .lines()
                .filter(|l| l.contains("code=403"))
                .count()
                >= 2
    });
    let text = out.text();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("code=403")).collect();
    assert!(
        lines
            .iter()
            .all(|l| l.contains("INFO") && l.contains("refused")),
        "{lines:#?}"
    );
    let bound = elapsed.as_secs() as usize + 2;
    assert!(
        lines.len() <= bound,
        "{} lines for {FLOOD} refusals in {elapsed:?} (bound {bound}): {lines:#?}",
        lines.len()
    );
    let suppressed: usize = lines
        .iter()
        .filter_map(|l| l.split("suppressed=").nth(1))
        .map(|n| n.trim().parse::<usize>().unwrap())
        .sum();
    assert_eq!(
        suppressed + lines.len(),
        FLOOD + 1,
        "every refusal is logged or counted: {lines:#?}"
    );
}

/// Each refusal an operator may meet, provoked against the real binary at the default log level: logged at
/// info (`refused code=…`) and counted by code in `/metrics` (`ringcast_refusals_total{code}`). 1013 (slow
/// consumer) needs a feed: `behaviour_slow.rs`.
#[test]
fn every_refusal_is_logged_at_info_and_counted_by_code() {
    let (server, out) = Server::start_logged(&[
        "--workers",
        "1",
        "--origins",
        "https://app.example.com",
        "--auth-secret",
        SECRET,
        "--max-conns-per-ip",
        "1",
        "--max-msgs-per-s",
        "3",
    ]);
    let origin = "Origin: https://app.example.com\r\n";
    let good = token(now_s() + 600, SECRET.as_bytes());
    for code in [401, 403, 503, 1008, 1013, 4001, 4003] {
        let labels = format!("code=\"{code}\"");
        assert_eq!(
            server.metric_labelled("ringcast_refusals_total", &labels),
            0.0,
            "{code} exported from the start, at 0"
        );
    }

    let (_, head) = upgrade(
        &server,
        &format!("/?token={good}"),
        "Origin: https://evil.test\r\n",
    );
    assert_eq!(status_of(head.as_bytes()), 403, "{head}");
    server.refusal_counted_and_logged(&out, 403, 1.0);

    let (mut s, _) = upgrade(&server, "/", origin);
    assert_eq!(first_frame_is_close(&mut s).0, 4003);
    server.refusal_counted_and_logged(&out, 4003, 1.0);

    let expired = token(now_s() - 3600, SECRET.as_bytes());
    let (mut s, _) = upgrade(&server, &format!("/?token={expired}"), origin);
    assert_eq!(first_frame_is_close(&mut s).0, 4001);
    server.refusal_counted_and_logged(&out, 4001, 1.0);

    // One open connection per address: a second upgrade gets 503.
    let (mut open, head) = upgrade(&server, &format!("/?token={good}"), origin);
    assert_eq!(status_of(head.as_bytes()), 101, "{head}");
    let (_, head) = upgrade(&server, &format!("/?token={good}"), origin);
    assert_eq!(status_of(head.as_bytes()), 503, "{head}");
    server.refusal_counted_and_logged(&out, 503, 1.0);

    // More than 3 messages in the burst: closed with 1008.
    for _ in 0..4 {
        send_text(&mut open, r#"{"op":"ping"}"#);
    }
    open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    loop {
        let (_, opcode, payload) = read_frame(&mut open).expect("pongs, then a Close");
        if opcode == 0x8 {
            assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1008);
            break;
        }
    }
    server.refusal_counted_and_logged(&out, 1008, 1.0);

    // `--auth-refusal http`: a missing token is a 401.
    let (http, out) = Server::start_logged(&[
        "--workers",
        "1",
        "--auth-secret",
        SECRET,
        "--auth-refusal",
        "http",
    ]);
    let (_, head) = upgrade(&http, "/", "");
    assert_eq!(status_of(head.as_bytes()), 401, "{head}");
    http.refusal_counted_and_logged(&out, 401, 1.0);
    assert_eq!(http.metric("ringcast_refusals_total"), 1.0, "nothing else");
}
