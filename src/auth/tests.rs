use serde_json::json;

use super::*;
use crate::protocol::handshake::{HeadLimits, parse_request};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_700_000_000;

fn cfg() -> AuthConfig {
    AuthConfig {
        secrets: vec![SECRET.to_vec()],
        ..AuthConfig::default()
    }
}

fn token(claims: serde_json::Value) -> String {
    sign_hs256(&claims, SECRET)
}

fn upgrade(extra: &str) -> String {
    format!(
        "GET /{extra} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    )
}

fn auth(head: &str, cfg: &AuthConfig) -> Result<(Identity, Option<String>), AuthError> {
    let req = parse_request(head.as_bytes(), &HeadLimits::default()).expect("valid head");
    authenticate(&req, cfg, NOW).map(|(id, echo)| (id, echo.map(str::to_owned)))
}

#[test]
fn defaults() {
    let cfg = AuthConfig::default();
    assert_eq!(cfg.leeway_s, 30);
    assert_eq!(cfg.cookie_name, "ringcast_token");
    assert_eq!(cfg.expiry_warning_s, 60);
    assert!(cfg.secrets.is_empty() && cfg.audience.is_none());
}

#[test]
fn authenticates_from_the_query() {
    let t = token(json!({"sub": "alice", "exp": NOW + 60, "symbols": ["EFERT"]}));
    let head = format!("{}\r\n", upgrade(&format!("?token={t}")));
    let (identity, echo) = auth(&head, &cfg()).expect("valid token");
    assert_eq!(identity.user, "alice");
    assert_eq!(identity.expires_at, NOW + 60);
    assert!(identity.allows("EFERT") && !identity.allows("LUCK"));
    assert_eq!(echo, None);
}

#[test]
fn authenticates_from_a_cookie_with_a_configured_name() {
    let t = token(json!({"sub": "bob", "exp": NOW + 60}));
    let head = format!("{}Cookie: sid=1; rc={t}\r\n\r\n", upgrade(""));
    assert_eq!(auth(&head, &cfg()), Err(AuthError::Missing));
    let named = AuthConfig {
        cookie_name: "rc".into(),
        ..cfg()
    };
    let (identity, _) = auth(&head, &named).expect("valid token");
    assert_eq!(identity.user, "bob");
    assert!(identity.allows("ANYTHING"));
}

#[test]
fn authenticates_from_the_subprotocol_and_echoes_the_real_one() {
    let t = token(json!({"sub": "carol", "exp": NOW + 60}));
    let head = format!(
        "{}Sec-WebSocket-Protocol: ringcast.v1, token.{t}\r\n\r\n",
        upgrade("")
    );
    let (identity, echo) = auth(&head, &cfg()).expect("valid token");
    assert_eq!(identity.user, "carol");
    assert_eq!(echo.as_deref(), Some(SUBPROTOCOL));
}

#[test]
fn refusals() {
    assert_eq!(
        auth(&format!("{}\r\n", upgrade("")), &cfg()),
        Err(AuthError::Missing)
    );
    let expired = token(json!({"sub": "alice", "exp": NOW - 31}));
    assert_eq!(
        auth(
            &format!("{}\r\n", upgrade(&format!("?token={expired}"))),
            &cfg()
        ),
        Err(AuthError::Expired { exp: NOW - 31 })
    );
    let other = sign_hs256(
        &json!({"sub": "alice", "exp": NOW + 60}),
        b"another secret of at least 32 bytes!",
    );
    assert_eq!(
        auth(
            &format!("{}\r\n", upgrade(&format!("?token={other}"))),
            &cfg()
        ),
        Err(AuthError::BadSignature)
    );
    let with_aud = AuthConfig {
        audience: Some("ringcast".into()),
        ..cfg()
    };
    let t = token(json!({"sub": "alice", "exp": NOW + 60}));
    assert_eq!(
        auth(
            &format!("{}\r\n", upgrade(&format!("?token={t}"))),
            &with_aud
        ),
        Err(AuthError::WrongAudience)
    );
}

#[test]
fn secrets_list_for_rotation() {
    let a = "a".repeat(32);
    let b = "b".repeat(40);
    assert_eq!(
        AuthConfig::parse_secrets(&format!("{a}, {b}")),
        Ok(vec![a.clone().into_bytes(), b.into_bytes()])
    );
    let err = AuthConfig::parse_secrets(&format!("{a},short")).expect_err("short secret");
    assert!(err.contains("#2") && err.contains("5 bytes"), "{err}");
    assert!(AuthConfig::parse_secrets("").is_err());
    assert!(AuthConfig::parse_secrets(&format!("{a},")).is_err());
}

#[test]
fn user_channel() {
    let id = Identity {
        user: "42".into(),
        expires_at: 0,
        symbols: None,
    };
    assert_eq!(id.user_channel("psx:"), "psx:user:42");
}
