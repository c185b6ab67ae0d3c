//! Authentication on an open socket: when to warn and close, the `{"op":"auth"}` refresh, and the
//! messages that report them.

use serde::Deserialize;

use super::{AuthConfig, AuthError, Identity, verify_token};
use crate::protocol::CloseCode;

/// Close code when the token expired without a refresh (private-use range, RFC 6455 §7.4.2).
pub const CLOSE_TOKEN_EXPIRED: CloseCode = CloseCode::TOKEN_EXPIRED;

/// Close reason sent with [`CLOSE_TOKEN_EXPIRED`].
pub const CLOSE_TOKEN_EXPIRED_REASON: &str = "token expired";

/// Close code of an upgrade whose token is missing or invalid (not expired), with
/// `--auth-refusal close`: the client should stop, not retry with the same token.
pub const CLOSE_TOKEN_REFUSED: CloseCode = CloseCode::TOKEN_REFUSED;

/// When to warn and when to close a connection authenticated as `identity`, in seconds since the
/// Unix epoch: `(warn_at, close_at)`.
///
/// - `close_at` is `exp + leeway_s`: the instant the same token stops verifying, so a token accepted
///   inside the leeway is not closed the moment it was let in;
/// - `warn_at` is `expiry_warning_s` before `exp` (never before `now_s`, never after `close_at`).
///
/// Call again after a successful [`refresh`] and replace both timers.
pub fn expiry_plan(identity: &Identity, cfg: &AuthConfig, now_s: u64) -> (u64, u64) {
    let close_at = identity.expires_at.saturating_add(cfg.leeway_s).max(now_s);
    let warn_at = identity
        .expires_at
        .saturating_sub(cfg.expiry_warning_s)
        .clamp(now_s, close_at);
    (warn_at, close_at)
}

/// The instant `at_s` (seconds since the Unix epoch, from [`expiry_plan`]) on a monotonic millisecond
/// clock that reads `now_ms` at `now_s`. Saturating: a token's `exp` is the client's number (up to
/// `u64::MAX`), and a wrapped product would put its timers in the past and close the connection at once.
pub fn deadline_ms(at_s: u64, now_s: u64, now_ms: u64) -> u64 {
    now_ms.saturating_add(at_s.saturating_sub(now_s).saturating_mul(1000))
}

/// Verify a token sent on an open socket (`{"op":"auth","token":"…"}`) for the connection currently
/// authenticated as `current`: it must verify and name the same user (`sub`), else `WrongSubject`.
/// On success the connection takes the returned identity (new expiry, possibly new `symbols`: drop
/// subscriptions it no longer allows) and answers [`refreshed_json`]; on error it answers
/// [`refresh_failed_json`] and keeps its current identity and timers.
pub fn refresh(
    token: &str,
    current: &Identity,
    cfg: &AuthConfig,
    now_s: u64,
) -> Result<Identity, AuthError> {
    let identity = verify_token(token, cfg, now_s)?;
    if identity.user != current.user {
        return Err(AuthError::WrongSubject);
    }
    Ok(identity)
}

#[derive(Deserialize)]
struct AuthOp {
    op: String,
    #[serde(default)]
    token: Option<serde_json::Value>,
}

/// Is this client text message a refresh (`{"op":"auth","token":"…"}`)? `None` for every other
/// message (pass those to `fanout::command::parse`); `Some(Err(Missing))` for an `auth` op without
/// a non-empty string token. Check this before `command::parse`, which rejects unknown ops.
pub fn auth_command_token(text: &str) -> Option<Result<String, AuthError>> {
    let text = text.trim();
    if !text.starts_with('{') {
        return None;
    }
    let op: AuthOp = serde_json::from_str(text).ok()?;
    if op.op != "auth" {
        return None;
    }
    Some(match op.token {
        Some(serde_json::Value::String(token)) if !token.is_empty() => Ok(token),
        _ => Err(AuthError::Missing),
    })
}

/// `{"type":"auth","status":"expiring","expires_at":<exp>}`, sent at `warn_at`.
pub fn expiring_json(expires_at: u64) -> Vec<u8> {
    status_json("expiring", expires_at)
}

/// `{"type":"auth","status":"ok","expires_at":<exp>}`, the answer to a successful refresh.
pub fn refreshed_json(expires_at: u64) -> Vec<u8> {
    status_json("ok", expires_at)
}

/// `{"type":"error","error":"auth_failed","message":"…"}`, the answer to a failed refresh.
pub fn refresh_failed_json(error: &AuthError) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": "error",
        "error": "auth_failed",
        "message": error.description(),
    }))
    .expect("serialising a JSON value")
}

fn status_json(status: &str, expires_at: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": "auth",
        "status": status,
        "expires_at": expires_at,
    }))
    .expect("serialising a JSON value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::sign_hs256;
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_700_000_000;

    fn cfg() -> AuthConfig {
        AuthConfig {
            secrets: vec![SECRET.to_vec()],
            ..AuthConfig::default()
        }
    }

    fn alice(expires_at: u64) -> Identity {
        Identity {
            user: "alice".into(),
            expires_at,
            symbols: None,
        }
    }

    #[test]
    fn plan_warns_before_and_closes_at_expiry_plus_leeway() {
        assert_eq!(
            expiry_plan(&alice(NOW + 600), &cfg(), NOW),
            (NOW + 540, NOW + 630)
        );
        // Inside the warning window: warn now.
        assert_eq!(expiry_plan(&alice(NOW + 10), &cfg(), NOW), (NOW, NOW + 40));
        // Accepted inside the leeway: both timers are due, never in the past.
        assert_eq!(expiry_plan(&alice(NOW - 40), &cfg(), NOW), (NOW, NOW));
        assert_eq!(
            expiry_plan(&alice(u64::MAX), &cfg(), NOW),
            (u64::MAX - 60, u64::MAX)
        );
    }

    #[test]
    fn deadlines_saturate_instead_of_wrapping() {
        assert_eq!(deadline_ms(NOW + 5, NOW, 1_000), 6_000);
        assert_eq!(deadline_ms(NOW - 5, NOW, 1_000), 1_000, "past: now");
        let (warn, close) = expiry_plan(&alice(u64::MAX), &cfg(), NOW);
        assert_eq!(deadline_ms(close, NOW, 1_000), u64::MAX);
        assert_eq!(deadline_ms(warn, NOW, 1_000), u64::MAX);
        // Just past where `(at - now) * 1000` wraps to a small number.
        let wraps = NOW + u64::MAX / 1000 + 1;
        assert_eq!(deadline_ms(wraps, NOW, 1_000), u64::MAX);
        assert_eq!(deadline_ms(u64::MAX, 0, u64::MAX), u64::MAX);
    }

    #[test]
    fn refresh_keeps_the_user() {
        let token = sign_hs256(&json!({"sub": "alice", "exp": NOW + 3600}), SECRET);
        assert_eq!(
            refresh(&token, &alice(NOW + 10), &cfg(), NOW),
            Ok(alice(NOW + 3600))
        );
        let mallory = sign_hs256(&json!({"sub": "mallory", "exp": NOW + 3600}), SECRET);
        assert_eq!(
            refresh(&mallory, &alice(NOW + 10), &cfg(), NOW),
            Err(AuthError::WrongSubject)
        );
        let expired = sign_hs256(&json!({"sub": "alice", "exp": NOW - 3600}), SECRET);
        assert_eq!(
            refresh(&expired, &alice(NOW + 10), &cfg(), NOW),
            Err(AuthError::Expired { exp: NOW - 3600 })
        );
    }

    #[test]
    fn recognises_only_auth_ops() {
        assert_eq!(
            auth_command_token(r#" {"op":"auth","token":"a.b.c"} "#),
            Some(Ok("a.b.c".into()))
        );
        assert_eq!(
            auth_command_token(r#"{"op":"auth"}"#),
            Some(Err(AuthError::Missing))
        );
        assert_eq!(
            auth_command_token(r#"{"op":"auth","token":5}"#),
            Some(Err(AuthError::Missing))
        );
        assert_eq!(
            auth_command_token(r#"{"op":"subscribe","symbols":["A"]}"#),
            None
        );
        assert_eq!(auth_command_token("EFERT,LUCK"), None);
        assert_eq!(auth_command_token("{not json"), None);
    }

    #[test]
    fn messages_have_the_documented_shape() {
        let expiring: serde_json::Value =
            serde_json::from_slice(&expiring_json(NOW)).expect("JSON");
        assert_eq!(
            expiring,
            json!({"type": "auth", "status": "expiring", "expires_at": NOW})
        );
        let ok: serde_json::Value = serde_json::from_slice(&refreshed_json(7)).expect("JSON");
        assert_eq!(ok, json!({"type": "auth", "status": "ok", "expires_at": 7}));
        let failed: serde_json::Value =
            serde_json::from_slice(&refresh_failed_json(&AuthError::WrongSubject)).expect("JSON");
        assert_eq!(
            failed,
            json!({"type": "error", "error": "auth_failed", "message": "token is for another user"})
        );
        assert_eq!(CLOSE_TOKEN_EXPIRED.0, 4001);
        assert!(CLOSE_TOKEN_EXPIRED.is_valid_on_wire());
    }
}
