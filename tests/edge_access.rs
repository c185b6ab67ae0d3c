//! Who may connect, over real sockets: origin allow-list, tokens at the upgrade (query, cookie,
//! subprotocol), expiry on an open socket with and without refresh, symbol patterns, per-user messages,
//! admission limits (per address, handshake rate), the inbound message rate, and access to /metrics.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

fn token(sub: &str, exp: u64, symbols: Option<&[&str]>) -> String {
    signed_token(SECRET.as_bytes(), sub, exp, symbols)
}

fn status(head: &str) -> u16 {
    status_of(head.as_bytes())
}

#[test]
fn origins_and_tokens_at_the_upgrade() {
    // The HTTP statuses of refused tokens (`--auth-refusal http`); the default close is in
    // tests/auth_refusal.rs.
    let server = Server::start(&[
        "--workers",
        "1",
        "--auth-refusal",
        "http",
        "--auth-secret",
        SECRET,
        "--origins",
        "https://*.example.com",
    ]);
    let good = token("u1", now_s() + 600, None);
    let origin = "Origin: https://app.example.com\r\n";
    assert_eq!(
        status(
            &upgrade(
                &server,
                &format!("/?token={good}"),
                "Origin: https://evil.test\r\n"
            )
            .1
        ),
        403
    );
    let (_, head) = upgrade(&server, "/", origin);
    assert_eq!(status(&head), 401, "{head}");
    assert!(head.contains("WWW-Authenticate: Bearer"), "{head}");
    let (_, head) = upgrade(&server, "/?token=not.a.jwt", origin);
    assert_eq!(status(&head), 401);
    assert!(head.contains("invalid_token"), "{head}");
    let expired = token("u1", now_s() - 3600, None);
    assert_eq!(
        status(&upgrade(&server, &format!("/?token={expired}"), origin).1),
        401
    );
    let forged = signed_token(&[9u8; 32], "u1", now_s() + 600, None);
    assert_eq!(
        status(&upgrade(&server, &format!("/?token={forged}"), origin).1),
        401
    );
    // The three places a browser can put its token.
    assert_eq!(
        status(&upgrade(&server, &format!("/?token={good}"), origin).1),
        101
    );
    assert_eq!(
        status(
            &upgrade(
                &server,
                "/",
                &format!("{origin}Cookie: a=b; ringcast_token={good}\r\n")
            )
            .1
        ),
        101
    );
    let (_, head) = upgrade(
        &server,
        "/",
        &format!("{origin}Sec-WebSocket-Protocol: ringcast.v1, token.{good}\r\n"),
    );
    assert_eq!(status(&head), 101);
    assert!(
        head.contains("Sec-WebSocket-Protocol: ringcast.v1"),
        "{head}"
    );
}

#[test]
fn token_expiry_on_an_open_socket_with_and_without_refresh() {
    let server = Server::start(&[
        "--workers",
        "1",
        "--auth-secret",
        SECRET,
        "--auth-leeway",
        "0s",
        "--auth-warning",
        "2s",
    ]);
    let exp = now_s() + 3;
    let (mut lapsing, head) = upgrade(&server, &format!("/?token={}", token("u1", exp, None)), "");
    assert_eq!(status(&head), 101);
    let (mut renewing, head) = upgrade(&server, &format!("/?token={}", token("u1", exp, None)), "");
    assert_eq!(status(&head), 101);
    for s in [&mut lapsing, &mut renewing] {
        let warn = read_reply(s);
        assert_eq!(
            (warn["type"].as_str(), warn["status"].as_str()),
            (Some("auth"), Some("expiring"))
        );
    }
    let fresh = token("u1", now_s() + 600, None);
    renewing
        .write_all(&frame(
            true,
            0x1,
            format!(r#"{{"op":"auth","token":"{fresh}"}}"#).as_bytes(),
        ))
        .unwrap();
    let ok = read_reply(&mut renewing);
    assert_eq!(ok["status"], "ok");
    // A token for someone else is refused and changes nothing.
    let other = token("u2", now_s() + 600, None);
    renewing
        .write_all(&frame(
            true,
            0x1,
            format!(r#"{{"op":"auth","token":"{other}"}}"#).as_bytes(),
        ))
        .unwrap();
    let err = read_reply(&mut renewing);
    assert_eq!(err["error"], "auth_failed");
    assert_eq!(
        read_close_code(&mut lapsing),
        Some(4001),
        "closed at expiry"
    );
    // The renewed one is still open past the old expiry.
    std::thread::sleep(Duration::from_millis(1500));
    renewing.write_all(&frame(true, 0x9, b"alive?")).unwrap();
    let (_, opcode, payload) = read_frame(&mut renewing).unwrap();
    assert_eq!((opcode, payload.as_slice()), (0xA, &b"alive?"[..]));
}

#[test]
fn symbol_patterns_and_per_user_messages() {
    let (redis, server) = fed_server("2", "a:", &["--auth-secret", SECRET]);
    let (mut u1, _) = upgrade(
        &server,
        &format!("/?token={}", token("u1", now_s() + 600, Some(&["EF*"]))),
        "",
    );
    let (mut u1b, _) = upgrade(
        &server,
        &format!("/?token={}", token("u1", now_s() + 600, None)),
        "",
    );
    let (mut u2, _) = upgrade(
        &server,
        &format!("/?token={}", token("u2", now_s() + 600, None)),
        "",
    );
    u1.write_all(&frame(true, 0x1, b"LUCK")).unwrap();
    let err: serde_json::Value = serde_json::from_str(&read_text(&mut u1)).unwrap();
    assert_eq!(err["error"], "forbidden_symbol");
    subscribe(&mut u1, "EFERT");
    let mut con = redis_con(&redis.url());
    let _: i64 = redis::cmd("PUBLISH")
        .arg("a:user:u1")
        .arg(r#"{"type":"note","text":"for u1"}"#)
        .query(&mut con)
        .unwrap();
    assert_eq!(read_text(&mut u1), r#"{"type":"note","text":"for u1"}"#);
    assert_eq!(
        read_text(&mut u1b),
        r#"{"type":"note","text":"for u1"}"#,
        "every connection of the user"
    );
    u2.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(read_frame(&mut u2).is_none(), "nothing for another user");
}

#[test]
fn admission_limits_and_message_rate() {
    let server = Server::start(&[
        "--workers",
        "1",
        "--max-conns-per-ip",
        "2",
        "--max-msgs-per-s",
        "5",
    ]);
    let a = server.ws();
    let _b = server.ws();
    let (_, head) = upgrade(&server, "/", "");
    assert_eq!(status(&head), 503, "{head}");
    assert!(head.contains("Retry-After:"), "{head}");
    drop(a);
    // The server frees the slot once it sees the close: retry (each refusal is a 503) until it has.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut c = loop {
        let (c, head) = upgrade(&server, "/", "");
        if status(&head) == 101 {
            break c;
        }
        assert_eq!(status(&head), 503, "{head}");
        assert!(
            std::time::Instant::now() < deadline,
            "a slot freed by a close is reusable: still 503 after 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // A flood of messages: closed with 1008.
    let mut flood = Vec::new();
    for _ in 0..40 {
        flood.extend(frame(true, 0x1, b"EFERT"));
    }
    c.write_all(&flood).unwrap();
    assert_eq!(read_close_code(&mut c), Some(1008));
    // A ping flood counts the same.
    let pinged = Server::start(&["--workers", "1", "--max-msgs-per-s", "5"]);
    let mut p = pinged.ws();
    let mut pings = Vec::new();
    for _ in 0..40 {
        pings.extend(frame(true, 0x9, b"?"));
    }
    p.write_all(&pings).unwrap();
    assert_eq!(read_close_code(&mut p), Some(1008), "ping flood");

    let limited = Server::start(&["--workers", "1", "--handshake-rate", "2"]);
    let codes: Vec<u16> = (0..6)
        .map(|_| status(&upgrade(&limited, "/", "").1))
        .collect();
    assert!(codes.contains(&101) && codes.contains(&503), "{codes:?}");
}

#[test]
fn metrics_can_require_a_token() {
    let server = Server::start(&["--workers", "1", "--echo", "--metrics-token", "m3trics"]);
    assert_eq!(server.get("/metrics").0, 403);
    let (status, body) = server.get("/metrics?token=m3trics");
    assert_eq!(status, 200);
    assert!(body.contains("ringcast_connections_open"));
}
