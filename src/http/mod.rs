//! The few plain-HTTP routes served on the WebSocket port, and the decision to upgrade.

pub mod metrics;
pub mod page;

use crate::auth::{self, AuthConfig, AuthError, Identity, OriginPolicy};
use crate::protocol::handshake::{self, HttpError, Request, Upgrade};

/// What the upgrade is checked against (built once per worker from the configuration). `Debug` masks the
/// metrics token.
#[derive(Default)]
pub struct Gate {
    pub origins: OriginPolicy,
    /// Token authentication, when enabled.
    pub auth: Option<AuthConfig>,
    /// Access to `/metrics`: a bearer token (`Authorization: Bearer …` or `?token=…`), when set.
    pub metrics_token: Option<String>,
    /// Serve the ticker page and `/ringcast.js` (off with `--no-page`).
    pub page: bool,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("origins", &self.origins)
            .field("auth", &self.auth)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| crate::secret::MASK),
            )
            .finish()
    }
}

/// What to do with a complete request head.
#[derive(Debug)]
pub enum Route {
    /// `GET /healthz`: 200 while serving (load balancers key on it).
    Health,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /` or `/ringcast.js` without an upgrade: the embedded page (or 304, or 404 with `--no-page`).
    Page(page::Response),
    /// A valid WebSocket upgrade, with who it is (when auth is on) and the subprotocol to echo.
    Upgrade {
        upgrade: Upgrade,
        identity: Option<Identity>,
        protocol: Option<String>,
    },
    /// Refused with a precise status.
    Reject(HttpError),
    /// Origin not allowed, or `/metrics` without its token (403).
    Forbidden(&'static str),
    /// Missing, bad or expired token (401).
    Unauthorized(AuthError),
}

/// Decide a request: plain routes, then the upgrade rules (RFC 6455), then Origin (403), then the token
/// (401). `now_s`: seconds since the Unix epoch.
pub fn route(req: &Request<'_>, gate: &Gate, now_s: u64) -> Route {
    if req.method == "GET" && req.header("upgrade").is_none() {
        match req.path() {
            "/healthz" => return Route::Health,
            "/metrics" if metrics_allowed(req, gate) => return Route::Metrics,
            "/metrics" => return Route::Forbidden("metrics need their token"),
            // A request with a WebSocket key is a (broken) upgrade: it gets the upgrade's precise refusal.
            path if req.header("sec-websocket-key").is_none() => {
                if let Some(asset) = page::asset_at(path) {
                    let etag = req.header("if-none-match");
                    return Route::Page(page::respond(asset, gate.page, etag));
                }
            }
            _ => {}
        }
    }
    let upgrade = match handshake::validate_upgrade(req) {
        Ok(upgrade) => upgrade,
        Err(err) => return Route::Reject(err),
    };
    if !gate.origins.allows(req.header("origin")) {
        return Route::Forbidden("origin not allowed");
    }
    match &gate.auth {
        None => Route::Upgrade {
            upgrade,
            identity: None,
            protocol: None,
        },
        Some(cfg) => match auth::authenticate(req, cfg, now_s) {
            Ok((identity, protocol)) => Route::Upgrade {
                upgrade,
                identity: Some(identity),
                protocol: protocol.map(str::to_owned),
            },
            Err(err) => Route::Unauthorized(err),
        },
    }
}

fn metrics_allowed(req: &Request<'_>, gate: &Gate) -> bool {
    let Some(token) = &gate.metrics_token else {
        return true;
    };
    let bearer = req
        .header("authorization")
        .and_then(|v| v.strip_prefix(b"Bearer ".as_slice()));
    bearer == Some(token.as_bytes()) || req.query_param("token") == Some(token.as_str())
}

/// The `/healthz` response.
pub fn write_health(out: &mut Vec<u8>) {
    handshake::write_response(200, "text/plain", b"ok\n", false, out);
}

/// The `/metrics` response.
pub fn write_metrics(metrics: &metrics::Metrics, out: &mut Vec<u8>) {
    handshake::write_response(
        200,
        "text/plain; version=0.0.4",
        metrics.render().as_bytes(),
        false,
        out,
    );
}

/// `503 Service Unavailable` (draining, or an admission limit), with `Retry-After` when given.
pub fn write_unavailable(reason: &str, retry_after_s: Option<u32>, out: &mut Vec<u8>) {
    use std::io::Write;
    let body = format!("{reason}\n");
    let _ = write!(out, "HTTP/1.1 503 Service Unavailable\r\n");
    if let Some(s) = retry_after_s {
        let _ = write!(out, "Retry-After: {s}\r\n");
    }
    let _ = write!(
        out,
        "Connection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::handshake::{HeadLimits, parse_request};

    const UPGRADE: &str = "GET /?token=TOKEN HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nORIGIN\r\n\r\n";

    fn decide(head: &str, gate: &Gate) -> Route {
        let req = parse_request(head.as_bytes(), &HeadLimits::default()).unwrap();
        route(&req, gate, 1_000)
    }

    fn upgrade(token: &str, origin: &str) -> String {
        UPGRADE.replace("TOKEN", token).replace(
            "ORIGIN\r\n",
            &if origin.is_empty() {
                String::new()
            } else {
                format!("Origin: {origin}\r\n")
            },
        )
    }

    #[test]
    fn origin_then_token() {
        let secret = vec![7u8; 32];
        let gate = Gate {
            origins: OriginPolicy::parse("https://*.example.com").unwrap(),
            auth: Some(AuthConfig {
                secrets: vec![secret.clone()],
                ..AuthConfig::default()
            }),
            metrics_token: None,
            page: false,
        };
        let good = auth::sign_hs256(&serde_json::json!({"sub": "u1", "exp": 5_000}), &secret);
        let expired = auth::sign_hs256(&serde_json::json!({"sub": "u1", "exp": 10}), &secret);
        assert!(matches!(
            decide(&upgrade(&good, "https://evil.com"), &gate),
            Route::Forbidden(_)
        ));
        assert!(matches!(
            decide(&upgrade(&expired, "https://a.example.com"), &gate),
            Route::Unauthorized(AuthError::Expired { .. })
        ));
        assert!(matches!(
            decide(&upgrade("", "https://a.example.com"), &gate),
            Route::Unauthorized(_)
        ));
        match decide(&upgrade(&good, "https://a.example.com"), &gate) {
            Route::Upgrade {
                identity: Some(id), ..
            } => assert_eq!(id.user, "u1"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn page_routes() {
        let on = Gate {
            page: true,
            ..Gate::default()
        };
        let get = |head: &str, gate: &Gate| decide(head, gate);
        let plain = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(
            matches!(get(plain, &on), Route::Page(page::Response::Asset(a)) if a == page::INDEX)
        );
        assert!(matches!(
            get(plain, &Gate::default()),
            Route::Page(page::Response::NotFound)
        ));
        // An upgrade, or a broken one (a key without `Upgrade`), is never the page.
        assert!(matches!(get(&upgrade("", ""), &on), Route::Upgrade { .. }));
        let broken = upgrade("", "").replace("Upgrade: websocket\r\n", "");
        assert!(matches!(get(&broken, &on), Route::Reject(_)));
    }

    #[test]
    fn metrics_token() {
        let gate = Gate {
            metrics_token: Some("s3cret".into()),
            ..Gate::default()
        };
        let get = |target: &str, extra: &str| {
            decide(
                &format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n"),
                &gate,
            )
        };
        assert!(matches!(get("/metrics", ""), Route::Forbidden(_)));
        assert!(matches!(get("/metrics?token=s3cret", ""), Route::Metrics));
        assert!(matches!(
            get("/metrics", "Authorization: Bearer s3cret\r\n"),
            Route::Metrics
        ));
        assert!(matches!(get("/healthz", ""), Route::Health));
    }
}
