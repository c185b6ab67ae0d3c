//! Who gets in and for how long: admission limits before the upgrade (handshake rate, connections per
//! address: 503 + Retry-After), then for authenticated connections the token's life on the open socket
//! (warning before expiry, close 4001 at expiry unless refreshed with `{"op":"auth","token":…}`), the
//! token's symbol patterns, and per-user messages.

use super::feed::Outgoing;
use super::{Core, WorkerStats};
use crate::admission::{self, MessageRate};
use crate::auth::{self, Identity};
use crate::fanout::symbols::LocalFrame;
use crate::http;
use crate::protocol::Session;
use crate::protocol::handshake::{self, Upgrade};
use crate::runtime::core::conn::{ConnAuth, Stage};

/// Direct-descriptor slots beyond `--max-conns-per-worker`, for requests that do not become WebSocket
/// connections: with the WebSocket connections at their cap, `/healthz`, `/metrics` and the 503 that
/// refuses an upgrade still get a slot (an accept with no free slot would reset the connection).
const HTTP_RESERVE: u32 = 64;
/// A worker's direct-descriptor slots and, of those, how many may hold WebSocket connections:
/// `max_conns` plus [`HTTP_RESERVE`], capped by `nofile` (RLIMIT_NOFILE) and 2^20; when the cap bites,
/// the reserve comes out of the WebSocket share (at most half the table).
pub fn table_size(max_conns: u32, nofile: u64) -> (u32, u32) {
    let files = max_conns
        .saturating_add(HTTP_RESERVE)
        .min(nofile.min(1 << 20) as u32);
    (files, max_conns.min(files - HTTP_RESERVE.min(files / 2)))
}

impl Core {
    /// A valid upgrade: apply the admission limits, then switch to WebSocket.
    pub(super) fn admit(
        &mut self,
        slot: u32,
        upgrade: Upgrade,
        identity: Option<Identity>,
        protocol: Option<String>,
        rest: &mut [u8],
    ) {
        let now = self.now_ms;
        if self.upgraded >= self.ws_cap {
            return self.refuse(
                slot,
                admission::CAPACITY_RETRY_AFTER_S,
                "server at its connection limit; retry later",
            );
        }
        let settings = &self.settings;
        if let Some(rate) = &settings.accept_rate {
            let since = self.epochs.admission_ms + self.now_ms;
            if let Err(retry) = rate.try_accept(since) {
                return self.refuse(slot, retry, "handshake rate limit; retry later");
            }
        }
        let max_per_ip = self.settings.max_conns_per_ip;
        if max_per_ip > 0
            && let Some(ip) = self.conns[slot as usize].peer
        {
            if !self.settings.per_ip.try_admit(ip, max_per_ip) {
                return self.refuse(
                    slot,
                    admission::CONN_LIMIT_RETRY_AFTER_S,
                    "too many connections from your address",
                );
            }
            self.conns[slot as usize].ip_admitted = true;
        }
        handshake::write_101(&upgrade, protocol.as_deref(), &mut self.scratch);
        let limit = self.settings.message_limit;
        let conn = &mut self.conns[slot as usize];
        conn.upgraded = true;
        self.upgraded += 1;
        conn.stage = Stage::Open {
            session: Session::new(),
            tail: None,
        };
        if let Some(limit) = limit {
            conn.rate = MessageRate::new(&limit, now);
        }
        self.queue_scratch(slot);
        if let Some(identity) = identity {
            self.set_identity(slot, identity);
        }
        if let Some(down) = self.feed_down.clone() {
            // Connected during a feed outage: the status every open client got, at once.
            self.deliver(slot, Outgoing::Shared(&down));
        }
        if !rest.is_empty() {
            // Frames that came in the same packet as the handshake, after the 101.
            self.on_frame_bytes(slot, rest);
        }
    }

    fn refuse(&mut self, slot: u32, retry_after_s: u64, reason: &str) {
        WorkerStats::add(&self.stats.handshake_failed, 1);
        WorkerStats::add(&self.stats.admission_refused, 1);
        crate::admission::refusals::refused(
            &self.stats.refusals,
            503,
            reason,
            self.conns[slot as usize].peer,
        );
        http::write_unavailable(reason, Some(retry_after_s), &mut self.scratch);
        self.end(slot);
    }

    /// Attach (or replace, on refresh) a connection's identity and schedule its expiry.
    fn set_identity(&mut self, slot: u32, identity: Identity) {
        let cfg = self.settings.gate.auth.as_ref().expect("auth on");
        let now_s = self.unix_s();
        let (warn_at, close_at) = auth::expiry_plan(&identity, cfg, now_s);
        let now = self.now_ms;
        let to_ms = |at_s: u64| auth::deadline_ms(at_s, now_s, now);
        let (warn_at_ms, close_at_ms) = (to_ms(warn_at), to_ms(close_at));
        let conn = &mut self.conns[slot as usize];
        let user: Box<str> = identity.user.as_str().into();
        let had_user = conn.auth.is_some();
        conn.auth = Some(Box::new(ConnAuth {
            identity,
            warn_at_ms,
            close_at_ms,
            warned: false,
        }));
        self.push_timer(warn_at_ms, slot);
        self.push_timer(close_at_ms, slot);
        if !had_user {
            self.users.entry(user).or_default().push(slot);
        }
    }

    /// A timer fired for an open, authenticated connection: warn before expiry, close at expiry.
    pub(super) fn auth_timer(&mut self, slot: u32, now_ms: u64) {
        let Some(auth) = self.conns[slot as usize].auth.as_mut() else {
            return;
        };
        if now_ms >= auth.close_at_ms {
            WorkerStats::add(&self.stats.token_expired, 1);
            crate::admission::refusals::refused(
                &self.stats.refusals,
                auth::CLOSE_TOKEN_EXPIRED.0,
                auth::CLOSE_TOKEN_EXPIRED_REASON,
                None,
            );
            self.send_close(
                slot,
                auth::CLOSE_TOKEN_EXPIRED,
                auth::CLOSE_TOKEN_EXPIRED_REASON,
            );
        } else if now_ms >= auth.warn_at_ms && !auth.warned {
            auth.warned = true;
            let json = auth::expiring_json(auth.identity.expires_at);
            self.reply(slot, json);
        }
    }

    /// `{"op":"auth","token":…}`: a fresh token (same user) extends the connection's life.
    pub(super) fn refresh_auth(&mut self, slot: u32, token: &str) {
        let Some(cfg) = self.settings.gate.auth.as_ref() else {
            let err = crate::fanout::command::CommandError::BadRequest(
                "authentication is not enabled on this server".into(),
            );
            self.reply(slot, err.to_json());
            return;
        };
        let Some(current) = self.conns[slot as usize].auth.as_ref() else {
            return;
        };
        match auth::refresh(token, &current.identity, cfg, self.unix_s()) {
            Ok(identity) => {
                let json = auth::refreshed_json(identity.expires_at);
                // Symbols the new token no longer allows are dropped.
                let subs: Vec<_> = self.symbols.subscriptions(slot).collect();
                for id in subs {
                    if !identity.allows(&self.symbols.entry(id).symbol) {
                        self.symbols.unsubscribe(id, slot);
                    }
                }
                self.set_identity(slot, identity);
                self.reply(slot, json);
            }
            Err(err) => {
                WorkerStats::add(&self.stats.bad_commands, 1);
                self.reply(slot, auth::refresh_failed_json(&err));
            }
        }
    }

    /// Messages published on `<prefix>user:<id>` reach only that user's connections on this worker.
    pub(super) fn deliver_to_user(&mut self, user: &str, frame: &LocalFrame) {
        let Some(slots) = self.users.get(user) else {
            return;
        };
        for slot in slots.clone() {
            if self.is_open(slot) {
                self.deliver(slot, Outgoing::Shared(frame));
            }
        }
    }

    /// Forget a closing connection's identity, address count and place among the WebSocket connections.
    pub(super) fn release_identity(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if conn.upgraded {
            conn.upgraded = false;
            self.upgraded -= 1;
        }
        if conn.ip_admitted {
            conn.ip_admitted = false;
            if let Some(ip) = conn.peer {
                self.settings.per_ip.release(ip);
            }
        }
        if let Some(auth) = conn.auth.take()
            && let Some(slots) = self.users.get_mut(auth.identity.user.as_str())
        {
            slots.retain(|&s| s != slot);
            if slots.is_empty() {
                self.users.remove(auth.identity.user.as_str());
            }
        }
    }

    /// May this connection's token subscribe to `symbol`?
    pub(super) fn allowed(&self, slot: u32, symbol: &str) -> bool {
        self.conns[slot as usize]
            .auth
            .as_ref()
            .is_none_or(|a| a.identity.allows(symbol))
    }
}

#[cfg(test)]
mod tests {
    use super::table_size;

    #[test]
    fn the_table_keeps_a_reserve_for_plain_http() {
        assert_eq!(table_size(2, 1 << 20), (66, 2));
        assert_eq!(
            table_size(1 << 20, 1 << 30),
            (1 << 20, (1 << 20) - 64),
            "capped at 2^20"
        );
        assert_eq!(
            table_size(1 << 20, 20_000),
            (20_000, 19_936),
            "capped by RLIMIT_NOFILE"
        );
        assert_eq!(table_size(u32::MAX, 100), (100, 50), "reserve at most half");
    }
}
