//! Why a token was refused, grouped by cause, with how the upgrade is refused: a `101` and at once a
//! close (4001 expired, 4003 anything else; `--auth-refusal close`, the default: a browser can read a
//! close code, never the status of a failed upgrade) or the `401` response (`--auth-refusal http`).

use std::fmt;

use super::session::{CLOSE_TOKEN_EXPIRED, CLOSE_TOKEN_REFUSED};
use crate::protocol::CloseCode;
use crate::protocol::response::Head;

/// How an upgrade whose token is missing, invalid or expired is refused (`--auth-refusal`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthRefusal {
    /// Accept the upgrade (`101`) and close at once with [`AuthError::close_code`] and
    /// [`AuthError::description`] as the reason; no message from the client is processed.
    #[default]
    Close,
    /// `401 Unauthorized` with `WWW-Authenticate` (for non-browser clients that read the status).
    Http,
}

/// Why authentication failed. At the upgrade, every variant is refused as `--auth-refusal` says: a close
/// with [`AuthError::close_code`] after the `101`, or `401 Unauthorized` (see
/// [`AuthError::write_response`]); on an open socket a failed refresh is reported with
/// [`super::refresh_failed_json`] and the connection stays open until the current token expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No token in the query, the cookie or the subprotocol list (or an `auth` op without one).
    Missing,
    /// Not a compact JWS, not base64url, not JSON, or a required claim is absent or mistyped. The
    /// detail is for logs and the `error_description`; it never contains token bytes.
    Malformed(&'static str),
    /// The signature matches none of the configured secrets.
    BadSignature,
    /// `exp` (plus the leeway) is in the past.
    Expired { exp: u64 },
    /// `nbf` (minus the leeway) is in the future.
    NotYetValid,
    /// An audience is configured and the token's `aud` does not name it.
    WrongAudience,
    /// The header's `alg` is not `HS256` (`none` included), or the header asks for extensions.
    UnsupportedAlg,
    /// A refresh token names another user than the one the connection authenticated as.
    WrongSubject,
}

impl AuthError {
    /// Stable machine-readable reason, for metrics labels and logs.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::Malformed(_) => "malformed_token",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired { .. } => "token_expired",
            AuthError::NotYetValid => "token_not_yet_valid",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::UnsupportedAlg => "unsupported_alg",
            AuthError::WrongSubject => "wrong_subject",
        }
    }

    /// One-line human description (safe to send to the client: no secrets, no token bytes, no `"`).
    pub fn description(self) -> String {
        match self {
            AuthError::Missing => "no token".into(),
            AuthError::Malformed(detail) => format!("malformed token: {detail}"),
            AuthError::BadSignature => "bad signature".into(),
            AuthError::Expired { exp } => format!("token expired at {exp}"),
            AuthError::NotYetValid => "token not yet valid".into(),
            AuthError::WrongAudience => "token is for another audience".into(),
            AuthError::UnsupportedAlg => "unsupported alg (HS256 only)".into(),
            AuthError::WrongSubject => "token is for another user".into(),
        }
    }

    /// HTTP status answering the upgrade (`--auth-refusal http`).
    pub fn status(self) -> u16 {
        401
    }

    /// Close code after the `101` (`--auth-refusal close`), the one mapping from error to code:
    /// 4001 when the token expired (fetch a new one and reconnect), 4003 when it is missing or
    /// invalid in any other way (retrying with the same token cannot help).
    pub fn close_code(self) -> CloseCode {
        match self {
            AuthError::Expired { .. } => CLOSE_TOKEN_EXPIRED,
            AuthError::Missing
            | AuthError::Malformed(_)
            | AuthError::BadSignature
            | AuthError::NotYetValid
            | AuthError::WrongAudience
            | AuthError::UnsupportedAlg
            | AuthError::WrongSubject => CLOSE_TOKEN_REFUSED,
        }
    }

    /// Append the Close frame of a refused token (code [`Self::close_code`], reason
    /// [`Self::description`], at most 123 bytes).
    pub fn write_close(self, out: &mut Vec<u8>) {
        crate::protocol::frame::encode_close(self.close_code(), &self.description(), out);
    }

    /// `WWW-Authenticate` value (RFC 6750 §3): no error code when no token was sent at all (§3.1),
    /// `error="invalid_token"` with a description otherwise.
    pub fn www_authenticate(self) -> String {
        match self {
            AuthError::Missing => format!("Bearer realm=\"{REALM}\""),
            other => format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                quoted_string_safe(&other.description())
            ),
        }
    }

    /// Append the complete `401` response (`WWW-Authenticate`, `Connection: close`, one-line body).
    pub fn write_response(self, out: &mut Vec<u8>) {
        Head::new(401, out)
            .header("WWW-Authenticate", self.www_authenticate())
            .text(format!("{}\n", self.description()).as_bytes());
    }
}

/// The realm named in `WWW-Authenticate`.
pub const REALM: &str = "ringcast";

/// Drop the characters a quoted-string would need escaped (descriptions are ours, this is a guard).
fn quoted_string_safe(text: &str) -> String {
    text.chars()
        .filter(|&c| c != '"' && c != '\\' && (c == ' ' || c.is_ascii_graphic()))
        .collect()
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.description(), self.reason())
    }
}

impl std::error::Error for AuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_stable_and_distinct() {
        let all = [
            AuthError::Missing,
            AuthError::Malformed("x"),
            AuthError::BadSignature,
            AuthError::Expired { exp: 1 },
            AuthError::NotYetValid,
            AuthError::WrongAudience,
            AuthError::UnsupportedAlg,
            AuthError::WrongSubject,
        ];
        let mut reasons: Vec<_> = all.iter().map(|e| e.reason()).collect();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), all.len());
        assert_eq!(AuthError::Expired { exp: 9 }.reason(), "token_expired");
        assert!(all.iter().all(|e| e.status() == 401));
    }

    #[test]
    fn close_codes_expired_4001_else_4003() {
        assert_eq!(AuthError::Expired { exp: 1 }.close_code().0, 4001);
        for err in [
            AuthError::Missing,
            AuthError::Malformed("x"),
            AuthError::BadSignature,
            AuthError::NotYetValid,
            AuthError::WrongAudience,
            AuthError::UnsupportedAlg,
            AuthError::WrongSubject,
        ] {
            assert_eq!(err.close_code().0, 4003, "{err}");
        }
        let mut out = Vec::new();
        AuthError::BadSignature.write_close(&mut out);
        assert_eq!(out[0], 0x88, "FIN + Close");
        assert_eq!(&out[2..4], &4003u16.to_be_bytes());
        assert_eq!(&out[4..], b"bad signature");
    }

    #[test]
    fn missing_token_gets_a_bare_challenge() {
        assert_eq!(
            AuthError::Missing.www_authenticate(),
            "Bearer realm=\"ringcast\""
        );
    }

    #[test]
    fn bad_token_response_is_a_complete_401() {
        let mut out = Vec::new();
        AuthError::Expired { exp: 1700000000 }.write_response(&mut out);
        let text = String::from_utf8(out).expect("ASCII response");
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        assert!(text.contains(
            "WWW-Authenticate: Bearer realm=\"ringcast\", error=\"invalid_token\", \
             error_description=\"token expired at 1700000000\"\r\n"
        ));
        assert!(text.contains("Connection: close\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(body, "token expired at 1700000000\n");
    }

    #[test]
    fn descriptions_cannot_break_the_quoted_string() {
        assert_eq!(quoted_string_safe("a\"b\\c\r\nd"), "abcd");
    }
}
