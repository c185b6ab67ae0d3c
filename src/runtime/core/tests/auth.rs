//! Token authentication on the core: a connection is warned before its token expires and closed with
//! 4001 at expiry (exp + leeway) unless it refreshes with `{"op":"auth","token":…}`, which keeps it open
//! with its subscriptions; a bad token at the upgrade is refused (101 + 4003/4001, or 401).

use super::sim::{self, SUBSCRIBE_EFERT, ServerFrame, Sim};
use crate::auth::{AuthConfig, AuthRefusal, sign_hs256};
use crate::protocol::CloseCode;
use crate::runtime::stats::WorkerStats;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
/// The sim's worker started at this Unix time (see `Sim::with_table`).
const START_S: u64 = 1_700_000_000;
const LEEWAY_S: u64 = 10;
const WARNING_S: u64 = 60;

fn auth_sim(refusal: AuthRefusal) -> Sim {
    let mut settings = sim::settings();
    settings.gate.auth = Some(AuthConfig {
        secrets: vec![SECRET.to_vec()],
        leeway_s: LEEWAY_S,
        expiry_warning_s: WARNING_S,
        refusal,
        ..AuthConfig::default()
    });
    // Only the token decides when these connections end.
    settings.ping_interval_s = 3_600;
    settings.idle_timeout_s = 3_600;
    Sim::new(settings)
}

/// A token for `user` expiring `exp_s` after the worker started, signed with `secret`.
fn token(user: &str, exp_s: u64, secret: &[u8]) -> String {
    sign_hs256(
        &serde_json::json!({"sub": user, "exp": START_S + exp_s}),
        secret,
    )
}

/// Upgrade with `token` in the query; returns the slot and the response head.
fn upgrade_with(sim: &mut Sim, token: &str) -> (u32, String) {
    let request = sim::upgrade_to(&format!("/?token={token}"));
    sim.request_from(Some([10, 0, 0, 7].into()), &request)
}

fn open_authenticated(sim: &mut Sim, token: &str) -> u32 {
    let (slot, head) = upgrade_with(sim, token);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    sim.send_text(slot, SUBSCRIBE_EFERT);
    let ack = sim.texts(slot);
    assert!(ack[0].contains(r#""type":"subscribed""#), "{ack:?}");
    slot
}

fn ms(sim: &Sim) -> u64 {
    sim.now_us / 1000
}

/// Whether `at_ms` is at second `s` after the worker started, or within the one 250 ms step of `watch`
/// that follows it.
fn in_the_step_after(at_ms: u64, s: u64) -> bool {
    (s * 1000..=s * 1000 + 250).contains(&at_ms)
}

/// Advance in 250 ms steps until `until_ms`, returning when the client read the expiry warning and
/// the close (code and reason), in ms.
fn watch(
    sim: &mut Sim,
    slot: u32,
    until_ms: u64,
) -> (Option<u64>, Option<(u64, CloseCode, String)>) {
    let (mut warned, mut closed) = (None, None);
    while ms(sim) < until_ms {
        sim.advance(250);
        for frame in sim.frames(slot) {
            match frame {
                ServerFrame::Text(t) if t.contains(r#""status":"expiring""#) => {
                    assert!(warned.is_none(), "warned twice");
                    warned = Some(ms(sim));
                }
                ServerFrame::Close(code, reason) => {
                    closed = Some((ms(sim), code.expect("a close code"), reason));
                }
                _ => {}
            }
        }
    }
    (warned, closed)
}

#[test]
fn a_connection_is_warned_before_its_token_expires_and_closed_with_4001_at_expiry() {
    let mut sim = auth_sim(AuthRefusal::Close);
    let slot = open_authenticated(&mut sim, &token("alice", 120, SECRET));
    let (warned, closed) = watch(&mut sim, slot, 100_000);
    let warned = warned.expect("warned");
    assert!(
        in_the_step_after(warned, 120 - WARNING_S),
        "warned at {warned} ms"
    );
    assert!(
        closed.is_none(),
        "still open between the warning and the expiry"
    );
    sim.tick("EFERT", "e1");
    assert_eq!(sim.texts(slot), ["e1"], "and still getting ticks");

    let (_, closed) = watch(&mut sim, slot, 140_000);
    let (at, code, reason) = closed.expect("closed at expiry");
    let expiry_ms = (120 + LEEWAY_S) * 1000;
    assert!(
        (expiry_ms..=expiry_ms + 250).contains(&at),
        "closed at {at} ms"
    );
    assert_eq!(code, CloseCode::TOKEN_EXPIRED);
    assert_eq!(reason, "token expired");
    assert_eq!(WorkerStats::get(&sim.stats().token_expired), 1);
    sim.tick("EFERT", "e2");
    assert!(sim.texts(slot).is_empty(), "nothing after the close");
    sim.answer_close(slot, 4001);
    assert!(sim.is_closed(slot));
    assert_eq!(WorkerStats::get(&sim.stats().open), 0);
}

#[test]
fn a_refresh_before_expiry_keeps_the_connection_and_its_subscriptions() {
    let mut sim = auth_sim(AuthRefusal::Close);
    let slot = open_authenticated(&mut sim, &token("alice", 120, SECRET));
    let (warned, _) = watch(&mut sim, slot, 90_000);
    assert!(warned.is_some());
    let fresh = token("alice", 600, SECRET);
    sim.send_text(slot, &format!(r#"{{"op":"auth","token":"{fresh}"}}"#));
    let reply = sim.texts(slot);
    assert_eq!(reply.len(), 1, "{reply:?}");
    assert!(reply[0].contains(r#""status":"ok""#), "{reply:?}");
    assert!(reply[0].contains(&format!(r#""expires_at":{}"#, START_S + 600)));
    // Past the old expiry: still open, still subscribed.
    let (warned, closed) = watch(&mut sim, slot, 200_000);
    assert!(
        warned.is_none() && closed.is_none(),
        "the old timers are void"
    );
    sim.tick("EFERT", "e1");
    assert_eq!(sim.texts(slot), ["e1"]);
    assert_eq!(WorkerStats::get(&sim.stats().token_expired), 0);
    // The new token runs its course: warning, then 4001 at its own expiry.
    let (warned, closed) = watch(&mut sim, slot, 620_000);
    let warned = warned.expect("warned again");
    assert!(in_the_step_after(warned, 600 - WARNING_S));
    let (at, code, _) = closed.expect("closed at the new expiry");
    assert!(in_the_step_after(at, 600 + LEEWAY_S));
    assert_eq!(code, CloseCode::TOKEN_EXPIRED);
}

#[test]
fn a_refresh_for_another_user_fails_and_the_old_expiry_stands() {
    let mut sim = auth_sim(AuthRefusal::Close);
    let slot = open_authenticated(&mut sim, &token("alice", 120, SECRET));
    sim.advance(1_000);
    for (bad, why) in [
        (token("mallory", 600, SECRET), "another user"),
        (
            token("alice", 600, b"another secret, 32 bytes or more!"),
            "bad signature",
        ),
    ] {
        sim.send_text(slot, &format!(r#"{{"op":"auth","token":"{bad}"}}"#));
        let reply = sim.texts(slot);
        assert_eq!(reply.len(), 1, "{reply:?}");
        assert!(
            reply[0].contains(r#""error":"auth_failed""#),
            "{why}: {reply:?}"
        );
    }
    let (_, closed) = watch(&mut sim, slot, 140_000);
    let (at, code, _) = closed.expect("closed at the old expiry");
    assert!(in_the_step_after(at, 120 + LEEWAY_S));
    assert_eq!(code, CloseCode::TOKEN_EXPIRED);
}

#[test]
fn a_bad_token_at_the_upgrade_is_refused_with_a_close_after_the_101() {
    let mut sim = auth_sim(AuthRefusal::Close);
    let cases = [
        (
            token("alice", 600, b"another secret, 32 bytes or more!"),
            CloseCode::TOKEN_REFUSED,
            "bad signature",
        ),
        (
            "not-a-jwt".to_string(),
            CloseCode::TOKEN_REFUSED,
            "malformed token",
        ),
        // Expired past the leeway: 4001 (fetch a new token).
        (
            sign_hs256(
                &serde_json::json!({"sub": "alice", "exp": START_S - 100}),
                SECRET,
            ),
            CloseCode::TOKEN_EXPIRED,
            "token expired",
        ),
    ];
    for (i, (bad, code, reason)) in cases.iter().enumerate() {
        let (slot, head) = upgrade_with(&mut sim, bad);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        let frames = sim.frames(slot);
        let (got, why) = sim::close_of(&frames).expect("a close right after the 101");
        assert_eq!(got, Some(*code), "case {i}");
        assert!(why.starts_with(reason), "case {i}: {why}");
        // Nothing the client sends is acted on; it was never a WebSocket connection.
        sim.send_text(slot, SUBSCRIBE_EFERT);
        assert!(sim.frames(slot).is_empty());
        assert_eq!(sim.core.upgraded, 0);
        sim.hang_up(slot);
        assert!(sim.is_closed(slot));
    }
    let (slot, head) = sim.request_from(Some([10, 0, 0, 7].into()), sim::UPGRADE);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let close = sim::close_of(&sim.frames(slot));
    assert_eq!(
        close,
        Some((Some(CloseCode::TOKEN_REFUSED), "no token".into()))
    );
    assert_eq!(WorkerStats::get(&sim.stats().handshake_failed), 4);
}

#[test]
fn with_auth_refusal_http_a_bad_token_gets_401() {
    let mut sim = auth_sim(AuthRefusal::Http);
    let (slot, head) = upgrade_with(
        &mut sim,
        &token("alice", 600, b"another secret, 32 bytes or more!"),
    );
    assert!(head.starts_with("HTTP/1.1 401 "), "{head}");
    assert!(head.contains("WWW-Authenticate: Bearer"), "{head}");
    assert!(head.contains(r#"error="invalid_token""#), "{head}");
    sim.hang_up(slot);
    assert!(sim.is_closed(slot));
    // A good one still gets in.
    let ok = open_authenticated(&mut sim, &token("alice", 600, SECRET));
    assert!(!sim.is_closed(ok));
    assert_eq!(sim.core.upgraded, 1);
}
