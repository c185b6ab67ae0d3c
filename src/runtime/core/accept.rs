//! Accepting connections: the accepts kept armed (only while a descriptor slot is free for each), a new
//! connection's slot, and the pause after an accept error.

use super::{Core, Intent, MAX_ACCEPTS, MAX_SLEEP_US, Peer, WorkerStats};
use crate::protocol::handshake::HeadScanner;
use crate::runtime::core::ConnId;
use crate::runtime::core::conn::{Conn, Stage, TlsConn};

/// The code logged for a connection closed without an answer (no HTTP status, no close frame): a
/// refused PROXY protocol peer or header.
pub const CLOSED_UNANSWERED: u16 = 0;

impl Core {
    /// Arm accepts up to [`MAX_ACCEPTS`], but only while every armed accept has a free descriptor slot
    /// to go to: otherwise new connections wait in the listen backlog until a close frees a slot (and
    /// re-arms), instead of being accepted with no slot to go to (the kernel would reset them).
    pub(super) fn arm_accepts(&mut self) {
        while self.listening
            && (self.accepts_armed as usize) < MAX_ACCEPTS
            && self.open + self.accepts_armed < self.table_slots
        {
            self.accepts_armed += 1;
            self.intents.push(Intent::Accept);
        }
    }

    /// An accept failed with `errno`.
    pub fn on_accept_failed(&mut self, errno: i32) {
        self.accepts_armed = self.accepts_armed.saturating_sub(1);
        if !self.listening {
            // The listener is closed (draining): its armed accepts end with EINVAL or ECANCELED.
            return;
        }
        WorkerStats::add(&self.stats.accept_errors, 1);
        let error = std::io::Error::from_raw_os_error(errno);
        if errno == libc::ENFILE || errno == libc::EMFILE {
            // Every direct-descriptor slot is taken (accepts are armed only while slots are free, so
            // this is rare): pause, and retry when a connection closes.
            self.pause_accepts("connection table full", error);
        } else if errno == libc::EAGAIN || errno == libc::ECONNABORTED || errno == libc::EINTR {
            self.arm_accepts();
        } else {
            self.pause_accepts("accept failed", error);
        }
    }

    /// A connection was accepted into descriptor slot `slot`, from `peer`.
    pub fn on_accepted(&mut self, slot: u32, peer: Peer) {
        self.accepts_armed = self.accepts_armed.saturating_sub(1);
        if slot as usize >= self.conns.len() {
            self.conns.resize_with(slot as usize + 1, Conn::default);
        }
        let deadline = self
            .now_ms
            .saturating_add(self.settings.handshake_timeout_ms);
        if !matches!(self.conns[slot as usize].stage, Stage::Free) {
            // The slot's previous connection was closed by the kernel but its completion is not reaped
            // yet: account for it now (its late completion is recognised as stale by generation).
            self.forget(slot);
        }
        // With --proxy-protocol only a trusted load balancer may connect (it names the real client).
        let proxy_protocol = self.settings.proxy_protocol;
        let untrusted =
            proxy_protocol && !peer.is_some_and(|ip| self.settings.trusted_proxies.contains(ip));
        let conn = &mut self.conns[slot as usize];
        *conn = Conn {
            generation: conn.generation.wrapping_add(1),
            stage: Stage::Handshake {
                head: Vec::new(),
                scan: HeadScanner::default(),
                deadline_ms: deadline,
            },
            peer,
            recv_armed: !untrusted,
            proxy_pending: proxy_protocol,
            last_seen_s: (self.now_ms / 1000) as u32,
            ..Conn::default()
        };
        if let Some(tls) = self.tls.as_mut() {
            match tls.session() {
                Ok(session) => {
                    conn.tls = Some(Box::new(TlsConn {
                        session,
                        plain: None,
                        handshake_done: false,
                    }))
                }
                Err(e) => {
                    tracing::error!(worker = self.id, error = %e, "cannot start a TLS session")
                }
            }
        }
        let generation = conn.generation;
        self.open += 1;
        WorkerStats::add(&self.stats.accepted, 1);
        WorkerStats::add(&self.stats.open, 1);
        tracing::trace!(worker = self.id, slot, ?peer, "accepted");
        if untrusted {
            WorkerStats::add(&self.stats.handshake_failed, 1);
            crate::admission::refusals::log_refusal(
                CLOSED_UNANSWERED,
                "connection from outside --trusted-proxies (--proxy-protocol is on); closed",
                peer,
            );
            self.abort(slot);
        } else {
            self.intents
                .push(Intent::Receive(ConnId { slot, generation }));
            self.handshaking.push(slot);
        }
        self.arm_accepts();
    }

    /// Stop accepting for a while (logged once per pause, so an error cannot flood the log).
    fn pause_accepts(&mut self, why: &str, error: std::io::Error) {
        if !self.accept_paused {
            tracing::warn!(worker = self.id, open = self.open, %error, "{why}; accepts paused for {} ms", MAX_SLEEP_US / 1000);
        }
        self.accept_paused = true;
        self.accept_retry_at = self.now_ms + MAX_SLEEP_US / 1000;
    }

    pub(super) fn resume_accepts(&mut self) {
        self.accept_paused = false;
        self.arm_accepts();
    }
}
