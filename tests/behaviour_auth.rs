//! Client messages and access rules as docs/protocol.md and docs/auth.md state them: `too_many_symbols` past
//! `--max-symbols-per-conn` and `bad_request` for a binary message, each leaving the connection open; a
//! refreshed token with a narrower `symbols` claim drops the subscriptions it no longer allows; with
//! `--origins` and `--require-origin`, an upgrade without `Origin` is refused with 403.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef-behaviour";

fn token(sub: &str, symbols: &[&str]) -> String {
    signed_token(SECRET.as_bytes(), sub, now_s() + 600, Some(symbols))
}

fn error_code(v: &serde_json::Value) -> (Option<&str>, Option<&str>) {
    (v["type"].as_str(), v["error"].as_str())
}

#[test]
fn too_many_symbols_and_binary_messages_get_errors_and_the_connection_stays() {
    let (redis, server) = fed_server("1", "m:", &["--max-symbols-per-conn", "3"]);
    let mut ws = server.ws();
    subscribe(&mut ws, "A1,A2");
    send_text(&mut ws, r#"{"op":"subscribe","symbols":["A3","A4"]}"#);
    let err = read_reply(&mut ws);
    assert_eq!(
        error_code(&err),
        (Some("error"), Some("too_many_symbols")),
        "{err}"
    );
    assert!(err["message"].is_string(), "{err}");

    ws.write_all(&frame(true, 0x2, b"A3")).unwrap();
    let err = read_reply(&mut ws);
    assert_eq!(
        error_code(&err),
        (Some("error"), Some("bad_request")),
        "binary: {err}"
    );
    assert!(err["message"].is_string(), "{err}");

    // Still open and serving: the third symbol is within the limit, and ticks flow.
    send_text(&mut ws, "A3");
    assert_eq!(
        read_reply(&mut ws)["type"],
        "subscribed",
        "exactly 3 symbols are allowed"
    );
    let mut con = redis_con(&redis.url());
    // The refused subscribe applied nothing: no A4 tick (published first) reaches the client.
    publish_tick(&mut con, "m:", r#"{"symbol":"A4","price":"9.00"}"#);
    let tick = r#"{"symbol":"A3","price":"1.00"}"#;
    publish_tick(&mut con, "m:", tick);
    assert_eq!(read_text(&mut ws), tick);
}

#[test]
fn a_narrower_refreshed_token_drops_the_subscriptions_it_no_longer_allows() {
    let (redis, server) = fed_server("1", "n:", &["--auth-secret", SECRET]);
    let (mut ws, head) = upgrade(
        &server,
        &format!("/?token={}", token("alice", &["EFERT", "LUCK"])),
        "",
    );
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    subscribe(&mut ws, "EFERT,LUCK");
    let mut con = redis_con(&redis.url());
    let luck0 = r#"{"symbol":"LUCK","seq":0}"#;
    publish_tick(&mut con, "n:", luck0);
    assert_eq!(
        read_text(&mut ws),
        luck0,
        "subscribed to LUCK before the refresh"
    );

    send_text(
        &mut ws,
        &format!(
            r#"{{"op":"auth","token":"{}"}}"#,
            token("alice", &["EFERT"])
        ),
    );
    let ok = read_reply(&mut ws);
    assert_eq!(
        (ok["type"].as_str(), ok["status"].as_str()),
        (Some("auth"), Some("ok")),
        "{ok}"
    );

    // LUCK is no longer delivered; EFERT still is (the LUCK tick, published first, would arrive first).
    let luck1 = r#"{"symbol":"LUCK","seq":1}"#;
    let efert1 = r#"{"symbol":"EFERT","seq":1}"#;
    publish_tick(&mut con, "n:", luck1);
    publish_tick(&mut con, "n:", efert1);
    assert_eq!(
        read_text(&mut ws),
        efert1,
        "no LUCK tick after the narrower token"
    );
    // And it cannot subscribe to LUCK again under that token.
    send_text(&mut ws, "LUCK");
    assert_eq!(read_reply(&mut ws)["error"], "forbidden_symbol");
}

#[test]
fn require_origin_refuses_upgrades_without_an_origin() {
    let origins = "https://app.example.com";
    let strict = Server::start(&[
        "--workers",
        "1",
        "--echo",
        "--origins",
        origins,
        "--require-origin",
    ]);
    let (_, head) = upgrade(&strict, "/", "");
    assert_eq!(status_of(head.as_bytes()), 403, "no Origin: {head}");
    let (_, head) = upgrade(&strict, "/", "Origin: https://app.example.com\r\n");
    assert_eq!(status_of(head.as_bytes()), 101, "an allowed Origin: {head}");
    let (_, head) = upgrade(&strict, "/", "Origin: https://evil.example.org\r\n");
    assert_eq!(status_of(head.as_bytes()), 403, "another Origin: {head}");

    // It applies with --origins only (docs/config.md): alone it refuses nothing.
    let alone = Server::start(&["--workers", "1", "--echo", "--require-origin"]);
    let (_, head) = upgrade(&alone, "/", "");
    assert_eq!(
        status_of(head.as_bytes()),
        101,
        "--require-origin without --origins: {head}"
    );

    // Without --require-origin, requests without Origin (curl, native apps) are allowed.
    let lenient = Server::start(&["--workers", "1", "--echo", "--origins", origins]);
    let (mut ws, head) = upgrade(&lenient, "/", "");
    assert_eq!(status_of(head.as_bytes()), 101, "{head}");
    send_text(&mut ws, "hi");
    ws.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(read_text(&mut ws), "hi");
}
