//! The few plain-HTTP routes served on the WebSocket port, and the decision to upgrade.

pub mod page;

use crate::auth::{self, AuthConfig, AuthError, AuthRefusal, Identity, OriginPolicy};
use crate::protocol::handshake::{self, HttpError, Request, Upgrade};
use crate::protocol::response::Head;

/// What `GET /metrics` answers: Prometheus text, rendered on each scrape from the stats its renderer was
/// handed (`server::Metrics`: every worker's counters and ingest's). The routes and the worker's core
/// know only this.
pub trait Exposition: Send + Sync + std::fmt::Debug {
    fn render(&self) -> String;
    /// Whether the feed gives ticks (Redis Cluster: some shard streams), for `/readyz`: `None` without a
    /// feed (the echo profile).
    fn feed_up(&self) -> Option<bool>;
}

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
    /// `GET /healthz`: liveness, 200 while the process serves (503 once draining).
    Health,
    /// `GET /readyz`: readiness, 200 only while the feed gives ticks (Redis Cluster: some shard
    /// streams) and the process is not draining (503 with
    /// the reason otherwise): what a load balancer checks before sending clients.
    Ready,
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
    /// Missing, bad or expired token, `--auth-refusal http`: 401.
    Unauthorized(AuthError),
    /// Missing, bad or expired token, `--auth-refusal close`: a `101` (echoing the subprotocol a
    /// browser needs answered) and at once a Close with [`AuthError::close_code`]; the connection never
    /// opens for messages.
    RefuseToken {
        upgrade: Upgrade,
        protocol: Option<String>,
        err: AuthError,
    },
}

/// Decide a request: plain routes, then the upgrade rules (RFC 6455), then Origin (403), then the token
/// (101 + close 4001/4003, or 401 with `--auth-refusal http`). `now_s`: seconds since the Unix epoch.
pub fn route(req: &Request<'_>, gate: &Gate, now_s: u64) -> Route {
    if req.method == "GET" && req.header("upgrade").is_none() {
        match req.path() {
            "/healthz" => return Route::Health,
            "/readyz" => return Route::Ready,
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
            Err(err) => match cfg.refusal {
                AuthRefusal::Http => Route::Unauthorized(err),
                AuthRefusal::Close => Route::RefuseToken {
                    upgrade,
                    protocol: refusal_protocol(req, cfg).map(str::to_owned),
                    err,
                },
            },
        },
    }
}

/// The subprotocol a refused upgrade's `101` echoes: the one a valid token would have got (the token
/// came from the subprotocol list), else `ringcast.v1` when offered. A browser that offered
/// subprotocols fails a `101` that names none, and would see 1006 instead of the close code.
fn refusal_protocol<'a>(req: &Request<'a>, cfg: &AuthConfig) -> Option<&'a str> {
    if let Some(echo) =
        auth::token_from_request(req, &cfg.cookie_name).and_then(|s| s.echo_protocol)
    {
        return Some(echo);
    }
    req.headers_named("sec-websocket-protocol")
        .filter_map(|value| std::str::from_utf8(value).ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .find(|entry| *entry == auth::SUBPROTOCOL)
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
    Head::new(200, out).text(b"ok\n");
}

/// The `/readyz` answer when ready.
pub fn write_ready(out: &mut Vec<u8>) {
    Head::new(200, out).text(b"ready\n");
}

/// The `/metrics` response.
pub fn write_metrics(metrics: &dyn Exposition, out: &mut Vec<u8>) {
    Head::new(200, out)
        .close()
        .header("Content-Type", "text/plain; version=0.0.4")
        .body(metrics.render().as_bytes());
}

/// `503 Service Unavailable` (a graceful shutdown has begun, or an admission limit refused the
/// upgrade), with `Retry-After` when given, and `reason` as a one-line body.
pub fn write_unavailable(reason: &str, retry_after_s: Option<u64>, out: &mut Vec<u8>) {
    let head = Head::new(503, out);
    let head = match retry_after_s {
        Some(s) => head.header("Retry-After", s.to_string()),
        None => head,
    };
    head.text(format!("{reason}\n").as_bytes());
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
        // Default `--auth-refusal close`: a 101, then 4001 (expired) or 4003.
        assert!(matches!(
            decide(&upgrade(&expired, "https://a.example.com"), &gate),
            Route::RefuseToken {
                err: AuthError::Expired { .. },
                protocol: None,
                ..
            }
        ));
        assert!(matches!(
            decide(&upgrade("", "https://a.example.com"), &gate),
            Route::RefuseToken {
                err: AuthError::Missing,
                ..
            }
        ));
        let offered = upgrade("", "https://a.example.com").replace(
            "Host: x\r\n",
            "Host: x\r\nSec-WebSocket-Protocol: ringcast.v1, token.bad\r\n",
        );
        assert!(matches!(
            decide(&offered, &gate),
            Route::RefuseToken { err: AuthError::Malformed(_), protocol: Some(p), .. } if p == "ringcast.v1"
        ));
        let http = Gate {
            auth: gate.auth.clone().map(|cfg| AuthConfig {
                refusal: AuthRefusal::Http,
                ..cfg
            }),
            origins: OriginPolicy::parse("https://*.example.com").unwrap(),
            ..Gate::default()
        };
        assert!(matches!(
            decide(&upgrade(&expired, "https://a.example.com"), &http),
            Route::Unauthorized(AuthError::Expired { .. })
        ));
        assert!(matches!(
            decide(&upgrade(&good, "https://evil.com"), &http),
            Route::Forbidden(_)
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
    fn responses_are_exact() {
        let mut out = Vec::new();
        write_health(&mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\
              Content-Length: 3\r\n\r\nok\n"
        );
        out.clear();
        write_unavailable("too many handshakes", Some(3), &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\nConnection: close\r\n\
              Content-Type: text/plain\r\nContent-Length: 20\r\n\r\ntoo many handshakes\n"
        );
        out.clear();
        write_unavailable("draining", None, &mut out);
        assert!(out.starts_with(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"));
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
