//! The few plain-HTTP routes served on the WebSocket port, and the decision to upgrade.

pub mod metrics;

use crate::protocol::handshake::{self, HttpError, Request, Upgrade};

/// What to do with a complete request head.
#[derive(Debug)]
pub enum Route {
    /// `GET /healthz`: 200 while serving (load balancers key on it).
    Health,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// A valid WebSocket upgrade.
    Upgrade(Upgrade),
    /// Refused with a precise status.
    Reject(HttpError),
}

pub fn route(req: &Request<'_>) -> Route {
    if req.method == "GET" && req.header("upgrade").is_none() {
        match req.path() {
            "/healthz" => return Route::Health,
            "/metrics" => return Route::Metrics,
            _ => {}
        }
    }
    match handshake::validate_upgrade(req) {
        Ok(upgrade) => Route::Upgrade(upgrade),
        Err(err) => Route::Reject(err),
    }
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
