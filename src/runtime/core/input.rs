//! Received bytes, by stage: the HTTP upgrade (or a plain route), then WebSocket frames through the
//! sans-IO `Session`, whose messages become client commands (or echoes, in the conformance profile).

use std::net::IpAddr;

use super::accept::CLOSED_UNANSWERED;
use super::{App, Core, WorkerSettings, WorkerStats};
use crate::fanout::command::{ClientCommand, CommandError};
use crate::http::{self, Route};
use crate::protocol::handshake::{self, HttpError, Scan};
use crate::protocol::proxy;
use crate::protocol::session::{self, CloseState};
use crate::protocol::{Message, OpCode, frame};
use crate::runtime::core::conn::Stage;

/// What a client sent, in order: a command (or why it was refused), or a ping to answer.
#[derive(Debug)]
pub(super) enum Inbound {
    Command(Result<ClientCommand, CommandError>),
    Ping(PingPayload),
}

/// A ping's payload, inline (control payloads are at most 125 bytes).
#[derive(Debug)]
pub(super) struct PingPayload {
    len: u8,
    bytes: [u8; 125],
}

impl PingPayload {
    fn new(payload: &[u8]) -> PingPayload {
        let mut bytes = [0; 125];
        let len = payload.len().min(125);
        bytes[..len].copy_from_slice(&payload[..len]);
        PingPayload {
            len: len as u8,
            bytes,
        }
    }

    pub(super) fn get(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl Core {
    /// Bytes as they came off the socket (after any PROXY header): ciphertext on a TLS listener.
    pub(super) fn on_wire_bytes(&mut self, slot: u32, data: &mut [u8]) {
        if self.conns[slot as usize].tls.is_some() {
            self.on_tls_bytes(slot, data);
        } else {
            self.on_bytes(slot, data);
        }
    }

    /// The first bytes of a connection under `--proxy-protocol`: the PROXY header (buffered while
    /// incomplete), whose client address replaces the proxy's; the bytes after it go on as TLS or HTTP.
    /// No valid header: logged and closed.
    pub(super) fn on_proxy_bytes(&mut self, slot: u32, data: &mut [u8]) {
        let conn = &mut self.conns[slot as usize];
        let Stage::Handshake { head, .. } = &mut conn.stage else {
            return;
        };
        let buffered = !head.is_empty();
        if buffered {
            head.extend_from_slice(data);
        }
        match proxy::parse(if buffered { head } else { data }) {
            proxy::Parsed::NeedMore => {
                if !buffered {
                    head.extend_from_slice(data);
                }
            }
            proxy::Parsed::Invalid(why) => {
                WorkerStats::add(&self.stats.handshake_failed, 1);
                crate::admission::refusals::log_refusal(CLOSED_UNANSWERED, why.reason(), conn.peer);
                self.abort(slot);
            }
            proxy::Parsed::Complete { client, consumed } => {
                conn.proxy_pending = false;
                if let Some(client) = client {
                    tracing::trace!(worker = self.id, slot, proxy = ?conn.peer, %client, "PROXY header");
                    conn.peer = Some(client.ip().to_canonical());
                }
                if buffered {
                    let mut rest = std::mem::take(head).split_off(consumed);
                    if !rest.is_empty() {
                        self.on_wire_bytes(slot, &mut rest);
                    }
                } else if consumed < data.len() {
                    self.on_wire_bytes(slot, &mut data[consumed..]);
                }
            }
        }
    }

    /// Received bytes, by phase.
    pub(super) fn on_bytes(&mut self, slot: u32, data: &mut [u8]) {
        match &mut self.conns[slot as usize].stage {
            Stage::Handshake { .. } => self.on_handshake_bytes(slot, data),
            Stage::Open { .. } => self.on_frame_bytes(slot, data),
            // Finishing or lingering: input is read and dropped so the close stays clean.
            _ => {}
        }
    }

    /// Ciphertext in (wss://): decrypt, queue what TLS must send (handshake, tickets, alerts), then hand
    /// the plaintext to `on_bytes` like any connection's.
    pub(super) fn on_tls_bytes(&mut self, slot: u32, data: &[u8]) {
        let mut plain = std::mem::take(&mut self.tls_plain);
        let mut wire = Vec::new();
        let conn = &mut self.conns[slot as usize];
        let Some(tls) = conn.tls.as_mut() else { return };
        let result = tls.session.receive(data, &mut plain, &mut wire);
        let stats = &self.stats;
        if !tls.handshake_done && !tls.session.is_handshaking() && result.is_ok() {
            tls.handshake_done = true;
            WorkerStats::add(&stats.tls_handshakes, 1);
            if tls.session.resumed() {
                WorkerStats::add(&stats.tls_resumed, 1);
            }
        }
        let peer_closed = tls.session.peer_closed();
        if matches!(conn.stage, Stage::Lingering) {
            // Our write side is shut: nothing more may be queued (an alert, a key update answer), and
            // a peer that sends garbage now is simply let go.
            if result.is_err() {
                WorkerStats::add(&stats.tls_failures, 1);
                self.abort(slot);
            }
            plain.clear();
            self.tls_plain = plain;
            return;
        }
        if !wire.is_empty() {
            conn.outbox().push_owned(wire, &mut self.backlog);
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(slot);
            }
        }
        match result {
            Err(failure) => {
                WorkerStats::add(&stats.tls_failures, 1);
                tracing::debug!(worker = self.id, slot, peer = ?conn.peer, reason = failure.reason(), "TLS failure; closing");
                // The alert (or the plain-HTTP 400) is queued; nothing more is encrypted.
                conn.tls = None;
                self.end(slot);
            }
            Ok(()) => {
                if !plain.is_empty() {
                    self.on_bytes(slot, &mut plain);
                }
                if peer_closed
                    && !matches!(
                        self.conns[slot as usize].stage,
                        Stage::Flushing | Stage::Lingering
                    )
                {
                    self.end(slot);
                }
            }
        }
        plain.clear();
        if plain.capacity() <= 64 * 1024 {
            self.tls_plain = plain;
        }
    }

    /// Bytes of the request head: each is checked once as it arrives (junk is answered with 400 at
    /// once); a complete head is parsed and routed, the bytes after it handed on as frames.
    pub(super) fn on_handshake_bytes(&mut self, slot: u32, data: &mut [u8]) {
        let max_head = self.settings.head_limits.max_head_bytes;
        let now_s = self.unix_s();
        let peer = self.conns[slot as usize].peer;
        let Stage::Handshake { head, scan, .. } = &mut self.conns[slot as usize].stage else {
            return;
        };
        // Fast path: the whole head arrived in one read; parse it straight from the receive buffer.
        if head.is_empty() {
            match scan.scan(data) {
                Scan::Complete(end) => {
                    let (head_bytes, rest) = data.split_at_mut(end);
                    let (route, forwarded) =
                        parse_and_route(head_bytes, &self.settings, peer, now_s);
                    return self.on_route(slot, route, forwarded, rest);
                }
                Scan::Invalid(err) => return self.reject(slot, err),
                Scan::Partial if data.len() >= max_head => {
                    return self.reject(slot, HttpError::HeadTooLarge);
                }
                Scan::Partial => {
                    head.extend_from_slice(data);
                    return;
                }
            }
        }
        let start = head.len();
        head.extend_from_slice(data);
        match scan.scan(&head[start..]) {
            Scan::Complete(n) => {
                let mut head = std::mem::take(head);
                let mut rest = head.split_off(start + n);
                let (route, forwarded) = parse_and_route(&head, &self.settings, peer, now_s);
                self.on_route(slot, route, forwarded, &mut rest);
            }
            Scan::Invalid(err) => self.reject(slot, err),
            Scan::Partial if head.len() >= max_head => self.reject(slot, HttpError::HeadTooLarge),
            Scan::Partial => {}
        }
    }

    /// `forwarded`: the client a trusted proxy's `X-Forwarded-For` names (it replaces the peer address).
    pub(super) fn on_route(
        &mut self,
        slot: u32,
        route: Route,
        forwarded: Option<IpAddr>,
        rest: &mut [u8],
    ) {
        if let Some(client) = forwarded {
            let conn = &mut self.conns[slot as usize];
            tracing::trace!(worker = self.id, slot, proxy = ?conn.peer, %client, "X-Forwarded-For");
            conn.peer = Some(client);
        }
        match route {
            Route::Health if self.shutdown_requested => {
                http::write_unavailable("draining", None, &mut self.scratch);
                self.end(slot);
            }
            Route::Health => {
                http::write_health(&mut self.scratch);
                self.end(slot);
            }
            Route::Ready => {
                match self.not_ready() {
                    None => http::write_ready(&mut self.scratch),
                    Some(reason) => http::write_unavailable(reason, None, &mut self.scratch),
                }
                self.end(slot);
            }
            Route::Upgrade { .. } if self.shutdown_requested => {
                WorkerStats::add(&self.stats.handshake_failed, 1);
                http::write_unavailable(
                    "draining: reconnect to another server",
                    Some(5),
                    &mut self.scratch,
                );
                self.end(slot);
            }
            Route::Page(response) => {
                response.write(&mut self.scratch);
                self.end(slot);
            }
            Route::Metrics => {
                http::write_metrics(&*self.settings.metrics, &mut self.scratch);
                self.end(slot);
            }
            Route::Reject(err) => self.reject(slot, err),
            Route::Upgrade {
                upgrade,
                identity,
                protocol,
            } => self.admit(slot, upgrade, identity, protocol, rest),
            Route::Forbidden(reason) => {
                WorkerStats::add(&self.stats.handshake_failed, 1);
                crate::admission::refusals::refused(
                    &self.stats.refusals,
                    403,
                    reason,
                    self.conns[slot as usize].peer,
                );
                crate::auth::origin::write_forbidden(&mut self.scratch);
                self.end(slot);
            }
            Route::RefuseToken {
                upgrade,
                protocol,
                err,
            } => {
                // A 101 and the Close in one write, then the write side is shut: the connection is
                // never Open, so nothing the client sent (or sends) is acted on, and it is not counted
                // among the WebSocket connections.
                WorkerStats::add(&self.stats.handshake_failed, 1);
                let code = err.close_code().0;
                crate::admission::refusals::refused(
                    &self.stats.refusals,
                    code,
                    err.reason(),
                    self.conns[slot as usize].peer,
                );
                handshake::write_101(&upgrade, protocol.as_deref(), &mut self.scratch);
                err.write_close(&mut self.scratch);
                self.end(slot);
            }
            Route::Unauthorized(err) => {
                WorkerStats::add(&self.stats.handshake_failed, 1);
                crate::admission::refusals::refused(
                    &self.stats.refusals,
                    401,
                    err.reason(),
                    self.conns[slot as usize].peer,
                );
                err.write_response(&mut self.scratch);
                self.end(slot);
            }
        }
    }

    /// Why `/readyz` says no: draining, or the feed is down (no connection to Redis, or not yet; Redis
    /// Cluster: no shard streams).
    fn not_ready(&self) -> Option<&'static str> {
        if self.shutdown_requested {
            Some("draining")
        } else if self.settings.metrics.feed_up() == Some(false) {
            Some("feed down")
        } else {
            None
        }
    }

    pub(super) fn reject(&mut self, slot: u32, err: HttpError) {
        WorkerStats::add(&self.stats.handshake_failed, 1);
        let conn = &self.conns[slot as usize];
        tracing::debug!(worker = self.id, slot, peer = ?conn.peer, status = err.status(), reason = err.reason(), "upgrade refused");
        err.write_response(&mut self.scratch);
        self.end(slot);
    }

    pub(super) fn on_frame_bytes(&mut self, slot: u32, data: &mut [u8]) {
        let now = self.now_ms;
        let app = self.settings.app;
        let limits = &self.settings.limits;
        let conn = &mut self.conns[slot as usize];
        let Stage::Open { session, tail } = &mut conn.stage else {
            return;
        };
        let was_open = session.state() == CloseState::Open;
        let inbox = &mut self.inbox;
        let max_symbols = self.settings.max_symbols_per_conn;
        let on_message =
            |msg: Message<'_>, out: &mut Vec<u8>| handle_message(app, msg, out, inbox, max_symbols);
        let result = match tail {
            None => session
                .receive(data, limits, now, &mut self.scratch, on_message)
                .map(|n| {
                    if n < data.len() {
                        *tail = Some(Box::new(data[n..].to_vec()));
                    }
                }),
            Some(carried) => {
                carried.extend_from_slice(data);
                session
                    .receive(carried, limits, now, &mut self.scratch, on_message)
                    .map(|n| {
                        carried.drain(..n);
                    })
            }
        };
        if let Err(err) = result {
            *tail = None;
            WorkerStats::add(&self.stats.protocol_errors, 1);
            tracing::debug!(worker = self.id, slot, peer = ?conn.peer, code = err.close_code().0, reason = err.reason(), "protocol error; closing");
        }
        let state = session.state();
        if tail.as_ref().is_some_and(|t| t.is_empty()) {
            *tail = None;
        }
        if was_open && state != CloseState::Open {
            self.pong_before_close(slot);
        }
        match state {
            CloseState::Open => {
                self.queue_scratch(slot);
                self.run_commands(slot);
            }
            CloseState::CloseSent { deadline_ms } => {
                self.inbox.clear();
                if was_open {
                    self.push_timer(deadline_ms, slot);
                    self.unsubscribe_all(slot);
                }
                self.queue_scratch(slot);
            }
            CloseState::Closed => {
                self.inbox.clear();
                self.end(slot);
            }
        }
    }
}

/// The route of a complete head, and the client a trusted proxy's `X-Forwarded-For` names.
fn parse_and_route(
    head: &[u8],
    settings: &WorkerSettings,
    peer: Option<IpAddr>,
    now_s: u64,
) -> (Route, Option<IpAddr>) {
    match handshake::parse_request(head, &settings.head_limits) {
        Ok(req) => {
            let trusted = &settings.trusted_proxies;
            let forwarded = peer.filter(|_| !trusted.is_empty()).and_then(|peer| {
                trusted.forwarded_client(peer, req.headers_named("x-forwarded-for"))
            });
            (http::route(&req, &settings.gate, now_s), forwarded)
        }
        Err(err) => (Route::Reject(err), None),
    }
}

/// One message or ping. The echo profile answers at once, in order (conformance); the ticker queues
/// commands and pings, acted on (rate-limited, pongs coalesced) by `run_commands`.
fn handle_message(
    app: App,
    msg: Message<'_>,
    out: &mut Vec<u8>,
    inbox: &mut Vec<Inbound>,
    max_symbols: usize,
) {
    let command = match (app, msg) {
        (App::Echo, Message::Text(text)) => {
            return frame::encode_frame(OpCode::Text, text.as_bytes(), out);
        }
        (App::Echo, Message::Binary(bytes)) => {
            return frame::encode_frame(OpCode::Binary, bytes, out);
        }
        (App::Echo, Message::Ping(payload)) => return session::pong(payload, out),
        (App::Ticker, Message::Ping(payload)) => {
            return inbox.push(Inbound::Ping(PingPayload::new(payload)));
        }
        (App::Ticker, Message::Text(text)) => crate::fanout::command::parse(text, max_symbols),
        (App::Ticker, Message::Binary(_)) => Err(CommandError::BadRequest(
            "binary messages are not supported; send text".into(),
        )),
    };
    inbox.push(Inbound::Command(command));
}
