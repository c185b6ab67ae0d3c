//! HS256 JSON Web Tokens (RFC 7519 in the RFC 7515 compact form), sans-IO: verify against any of
//! several shared secrets (so keys can rotate), check the claims against a time passed in, and sign.
//!
//! Verification order: shape → header (`alg` must be `HS256`, so `none` never reaches the MAC) →
//! signature (constant-time, RustCrypto `hmac`) → only then the payload is parsed → `exp`, `nbf`, `aud`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::error::AuthError;
use super::symbols::SymbolFilter;

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted, in bytes (the whole request head is capped at 8 KiB anyway).
pub const MAX_TOKEN_LEN: usize = 4096;

/// What a token is checked against besides its own claims.
#[derive(Clone, Copy, Debug)]
pub struct Validation<'a> {
    /// Shared secrets; a signature by any one of them verifies.
    pub secrets: &'a [Vec<u8>],
    /// When set, `aud` (a string or an array of strings) must name it.
    pub audience: Option<&'a str>,
    /// Clock-skew allowance applied to `exp` and `nbf`, in seconds.
    pub leeway_s: u64,
}

/// The claims Ringcast uses, from a verified token. Other claims are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// `sub`: the user.
    pub sub: String,
    /// `exp`: expiry, seconds since the Unix epoch (a fractional value is truncated).
    pub exp: u64,
    /// `nbf`: not before, seconds since the Unix epoch.
    pub nbf: Option<u64>,
    /// `symbols`: the symbols the user may subscribe to; `None` means no restriction.
    pub symbols: Option<SymbolFilter>,
}

/// Verify `token` at `now_s` (seconds since the Unix epoch).
pub fn verify(token: &str, validation: &Validation<'_>, now_s: u64) -> Result<Claims, AuthError> {
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::Malformed("token too long"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("expected header.payload.signature"));
    };
    check_header(&decode_object(
        header,
        "header is not base64url JSON",
        "duplicate key in the header",
    )?)?;
    let signature = BASE64URL
        .decode(signature)
        .map_err(|_| AuthError::Malformed("signature is not base64url"))?;
    let signing_input = &token[..header.len() + 1 + payload.len()];
    if !validation
        .secrets
        .iter()
        .any(|secret| signature_matches(secret, signing_input.as_bytes(), &signature))
    {
        return Err(AuthError::BadSignature);
    }
    let payload = decode_object(
        payload,
        "payload is not base64url JSON",
        "duplicate key in the payload",
    )?;
    let claims = parse_claims(&payload)?;
    check_time(&claims, validation.leeway_s, now_s)?;
    check_audience(payload.get("aud"), validation.audience)?;
    Ok(claims)
}

/// Sign `claims` with HS256 (header `{"alg":"HS256","typ":"JWT"}`). For tests and token tooling.
pub fn sign_hs256(claims: &Value, secret: &[u8]) -> String {
    sign_hs256_raw(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &claims.to_string(),
        secret,
    )
}

/// Sign a header and payload given as JSON text, as they are (tests of tokens a JSON library would not
/// write, e.g. with a repeated key).
pub fn sign_hs256_raw(header_json: &str, payload_json: &str, secret: &[u8]) -> String {
    let header = BASE64URL.encode(header_json);
    let payload = BASE64URL.encode(payload_json);
    let signing_input = format!("{header}.{payload}");
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(signing_input.as_bytes());
    let signature = BASE64URL.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Constant-time comparison of the HMAC-SHA256 of `input` under `secret` with `signature`. An empty
/// secret (a misconfiguration anyone could sign with) never matches.
fn signature_matches(secret: &[u8], input: &[u8], signature: &[u8]) -> bool {
    if secret.is_empty() {
        return false;
    }
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return false;
    };
    mac.update(input);
    mac.verify_slice(signature).is_ok()
}

/// Base64url (no padding, canonical) → a JSON object whose keys are all distinct. serde_json would keep
/// the last of two equal keys, while another parser (a gateway's, a log's) may keep the first: a token
/// that reads differently to different readers is refused (RFC 7515 §5.2, RFC 7519 §7.2).
fn decode_object(
    part: &str,
    why: &'static str,
    duplicate: &'static str,
) -> Result<Map<String, Value>, AuthError> {
    let bytes = BASE64URL
        .decode(part)
        .map_err(|_| AuthError::Malformed(why))?;
    let Ok(Members(members)) = serde_json::from_slice(&bytes) else {
        return Err(AuthError::Malformed(why));
    };
    let mut map = Map::new();
    for (key, value) in members {
        if map.insert(key, value).is_some() {
            return Err(AuthError::Malformed(duplicate));
        }
    }
    Ok(map)
}

/// A JSON object's members in order, repeated keys included.
struct Members(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = access.next_entry::<String, Value>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// `alg` must be exactly `HS256`; `typ` is not checked; `crit` extensions are not supported.
fn check_header(header: &Map<String, Value>) -> Result<(), AuthError> {
    if header.get("alg").and_then(Value::as_str) != Some("HS256") || header.contains_key("crit") {
        return Err(AuthError::UnsupportedAlg);
    }
    Ok(())
}

fn parse_claims(claims: &Map<String, Value>) -> Result<Claims, AuthError> {
    let sub = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        _ => return Err(AuthError::Malformed("`sub` must be a non-empty string")),
    };
    let exp = claims
        .get("exp")
        .and_then(numeric_date)
        .ok_or(AuthError::Malformed("`exp` must be a number of seconds"))?;
    let nbf = match claims.get("nbf") {
        None => None,
        Some(value) => Some(
            numeric_date(value).ok_or(AuthError::Malformed("`nbf` must be a number of seconds"))?,
        ),
    };
    let symbols = match claims.get("symbols") {
        None => None,
        Some(Value::Array(items)) => {
            let patterns: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            let patterns = patterns.ok_or(AuthError::Malformed("`symbols` must be strings"))?;
            Some(
                SymbolFilter::parse(patterns)
                    .map_err(|_| AuthError::Malformed("bad pattern in `symbols`"))?,
            )
        }
        Some(_) => return Err(AuthError::Malformed("`symbols` must be an array")),
    };
    Ok(Claims {
        sub,
        exp,
        nbf,
        symbols,
    })
}

/// A JSON NumericDate: non-negative seconds, integer or not (truncated).
fn numeric_date(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        let secs = value.as_f64()?;
        // `as` saturates; negative and non-finite values are refused before it.
        (secs.is_finite() && secs >= 0.0).then_some(secs as u64)
    })
}

/// Valid while `nbf - leeway <= now < exp + leeway`.
fn check_time(claims: &Claims, leeway_s: u64, now_s: u64) -> Result<(), AuthError> {
    if now_s >= claims.exp.saturating_add(leeway_s) {
        return Err(AuthError::Expired { exp: claims.exp });
    }
    if claims
        .nbf
        .is_some_and(|nbf| now_s.saturating_add(leeway_s) < nbf)
    {
        return Err(AuthError::NotYetValid);
    }
    Ok(())
}

/// With an audience configured, `aud` (a string or an array of strings) must name it; without one,
/// `aud` is not checked.
fn check_audience(aud: Option<&Value>, expected: Option<&str>) -> Result<(), AuthError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let named = match aud {
        Some(Value::String(aud)) => aud == expected,
        Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(expected)),
        _ => false,
    };
    if named {
        Ok(())
    } else {
        Err(AuthError::WrongAudience)
    }
}

#[cfg(test)]
mod tests;
