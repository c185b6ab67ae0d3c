//! Who may connect, sans-IO: HS256 JWT authentication on the upgrade (token from the query, a cookie
//! or the subprotocol list), refresh on the open socket, expiry timing, and the Origin allow-list.
//! Time is passed in as seconds since the Unix epoch; nothing here reads a clock or a socket.
//!
//! ```text
//!   upgrade:  Request ──► origin::OriginPolicy::allows ──► authenticate ──► (Identity, echo protocol)
//!                      403 ◄──┘                    401 + WWW-Authenticate ◄──┘
//!   open:     expiry_plan ──► warn at  → expiring_json      {"op":"auth","token":…} ──► refresh
//!                        └──► close at → CLOSE_TOKEN_EXPIRED (4001)   ok → refreshed_json, new plan
//! ```
//! See `docs/auth.md`.

pub mod error;
pub mod jwt;
pub mod origin;
mod session;
mod source;
mod symbols;

pub use error::{AuthError, AuthRefusal};
pub use jwt::sign_hs256;
pub use origin::OriginPolicy;
pub use session::{
    CLOSE_TOKEN_EXPIRED, CLOSE_TOKEN_EXPIRED_REASON, CLOSE_TOKEN_REFUSED, auth_command_token,
    deadline_ms, expiring_json, expiry_plan, refresh, refresh_failed_json, refreshed_json,
};
pub use source::{SUBPROTOCOL, TokenLocation, TokenSource, token_from_request};
pub use symbols::SymbolFilter;

use crate::protocol::handshake::Request;

/// Shortest secret accepted by [`AuthConfig::parse_secrets`]: HS256 keys must be at least as long as
/// the hash output (RFC 7518 §3.2).
pub const MIN_SECRET_LEN: usize = 32;

/// Authentication settings (built by the server from `--auth-secret`, `--auth-audience`, …). `Debug`
/// prints how many secrets there are, never their bytes.
#[derive(Clone)]
pub struct AuthConfig {
    /// Shared HS256 secrets; a token signed by any one verifies (rotate by listing new, old).
    pub secrets: Vec<Vec<u8>>,
    /// When set, tokens must carry this `aud`.
    pub audience: Option<String>,
    /// Clock-skew allowance for `exp` and `nbf`, seconds.
    pub leeway_s: u64,
    /// Cookie that may carry the token.
    pub cookie_name: String,
    /// How long before expiry the client is warned, seconds.
    pub expiry_warning_s: u64,
    /// How an upgrade with a missing, invalid or expired token is refused (`--auth-refusal`).
    pub refusal: AuthRefusal,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("secrets", &format_args!("[*** x {}]", self.secrets.len()))
            .field("audience", &self.audience)
            .field("leeway_s", &self.leeway_s)
            .field("cookie_name", &self.cookie_name)
            .field("expiry_warning_s", &self.expiry_warning_s)
            .field("refusal", &self.refusal)
            .finish()
    }
}

impl Default for AuthConfig {
    /// No secrets (every token fails `BadSignature`), no audience, 30 s leeway,
    /// cookie `ringcast_token`, warning 60 s before expiry, refusals as a `101` and a close.
    fn default() -> Self {
        AuthConfig {
            secrets: Vec::new(),
            audience: None,
            leeway_s: 30,
            cookie_name: "ringcast_token".into(),
            expiry_warning_s: 60,
            refusal: AuthRefusal::Close,
        }
    }
}

impl AuthConfig {
    /// Parse `--auth-secret` / `RINGCAST_AUTH_SECRET`: comma-separated secrets (new first, then the
    /// ones still accepted during a rotation), each at least [`MIN_SECRET_LEN`] bytes.
    pub fn parse_secrets(list: &str) -> Result<Vec<Vec<u8>>, String> {
        let mut secrets = Vec::new();
        for (i, secret) in list.split(',').map(str::trim).enumerate() {
            if secret.len() < MIN_SECRET_LEN {
                return Err(format!(
                    "auth secret #{} is {} bytes; HS256 needs at least {MIN_SECRET_LEN} (RFC 7518 §3.2)",
                    i + 1,
                    secret.len()
                ));
            }
            secrets.push(secret.as_bytes().to_vec());
        }
        Ok(secrets)
    }

    fn validation(&self) -> jwt::Validation<'_> {
        jwt::Validation {
            secrets: &self.secrets,
            audience: self.audience.as_deref(),
            leeway_s: self.leeway_s,
        }
    }
}

/// Who a connection is, from its verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`.
    pub user: String,
    /// The token's `exp`, seconds since the Unix epoch.
    pub expires_at: u64,
    /// The token's `symbols` claim; `None` = every symbol.
    pub symbols: Option<SymbolFilter>,
}

impl Identity {
    /// May this user subscribe to `symbol`?
    pub fn allows(&self, symbol: &str) -> bool {
        self.symbols
            .as_ref()
            .is_none_or(|filter| filter.allows(symbol))
    }

    /// The Redis channel of messages for this user only: `{prefix}user:{user}` (e.g. `psx:user:alice`).
    pub fn user_channel(&self, prefix: &str) -> String {
        format!("{prefix}user:{}", self.user)
    }
}

/// Verify a token on its own (e.g. a future `ringcast token --verify`).
pub fn verify_token(token: &str, cfg: &AuthConfig, now_s: u64) -> Result<Identity, AuthError> {
    let claims = jwt::verify(token, &cfg.validation(), now_s)?;
    Ok(Identity {
        user: claims.sub,
        expires_at: claims.exp,
        symbols: claims.symbols,
    })
}

/// Authenticate an upgrade request: find the token ([`token_from_request`]) and verify it. On success,
/// also the subprotocol the `101` must echo (`Some` only when the token came from the subprotocol list).
/// On error answer with [`AuthError::write_response`] (401).
pub fn authenticate<'a>(
    req: &Request<'a>,
    cfg: &AuthConfig,
    now_s: u64,
) -> Result<(Identity, Option<&'a str>), AuthError> {
    let source = token_from_request(req, &cfg.cookie_name).ok_or(AuthError::Missing)?;
    let identity = verify_token(&source.token, cfg, now_s)?;
    Ok((identity, source.echo_protocol))
}

#[cfg(test)]
mod tests;
