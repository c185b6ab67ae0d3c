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
