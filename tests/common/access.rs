//! What a client presents at the door: HS256 tokens signed with a test's secret, upgrades with extra
//! headers.

use std::io::Write;
use std::net::TcpStream;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Server, read_head, upgrade_request};

/// Seconds since the Unix epoch (what a token's `exp` counts).
pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token for `sub`, expiring at `exp`, signed with `secret`; with a `symbols` claim when given.
pub fn signed_token(secret: &[u8], sub: &str, exp: u64, symbols: Option<&[&str]>) -> String {
    let mut claims = serde_json::json!({"sub": sub, "exp": exp});
    if let Some(s) = symbols {
        claims["symbols"] = serde_json::json!(s);
    }
    ringcast::auth::sign_hs256(&claims, secret)
}

/// Send a WebSocket upgrade to `target` with `extra` header lines (each ending in CRLF; may be empty);
/// returns the stream and the response head.
pub fn upgrade(server: &Server, target: &str, extra: &str) -> (TcpStream, String) {
    upgrade_then(server, target, extra, &[])
}

/// `upgrade`, with `then` (e.g. a first frame) sent in the same write as the request.
pub fn upgrade_then(
    server: &Server,
    target: &str,
    extra: &str,
    then: &[u8],
) -> (TcpStream, String) {
    let mut s = server.connect();
    let mut req = upgrade_request(target)
        .replace("\r\n\r\n", &format!("\r\n{extra}\r\n"))
        .into_bytes();
    req.extend_from_slice(then);
    s.write_all(&req).unwrap();
    let head = read_head(&mut s);
    (s, head)
}
