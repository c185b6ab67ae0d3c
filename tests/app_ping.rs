//! `{"op":"ping"}` (issue 11): an application-level liveness check for browsers, which cannot see
//! WebSocket pings. Answered with `{"type":"pong"}`, and counted against `--max-msgs-per-s` like any
//! message.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn an_application_ping_is_answered_with_a_pong_and_rate_limited() {
    let server = Server::start(&["--workers", "1", "--max-msgs-per-s", "3"]);
    let mut s = server.ws();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    send_text(&mut s, r#"{"op":"ping"}"#);
    assert_eq!(read_reply(&mut s), serde_json::json!({"type": "pong"}));
    // Another message is still served in order after it.
    send_text(&mut s, r#"{"op":"ping","symbols":["A"]}"#);
    assert_eq!(read_reply(&mut s)["error"], "bad_request");
    assert_eq!(server.metric("ringcast_bad_client_messages_total"), 1.0);
    // The burst is 3 messages: the 4th ping within the second closes the connection with 1008.
    for _ in 0..2 {
        send_text(&mut s, r#"{"op":"ping"}"#);
    }
    assert_eq!(read_close_code(&mut s), Some(1008));
    assert_eq!(server.metric("ringcast_rate_limited_total"), 1.0);
}
