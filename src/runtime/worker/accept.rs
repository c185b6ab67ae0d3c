//! Accepting connections: the accept operations kept in flight (armed only while a descriptor slot is
//! free for each), a new connection's slot, and the pause after an accept error.

use std::os::fd::AsRawFd;

use super::{MAX_SLEEP, Op, Ring, State, WorkerStats, user_data};
use crate::protocol::handshake::HeadScanner;
use crate::runtime::conn::{Conn, Phase, TlsConn};

impl State {
    /// Arm accept `i`, unless every free descriptor slot already has an accept waiting for it: then new
    /// connections wait in the listen backlog until a close frees a slot (and re-arms), instead of being
    /// accepted with no slot to go to (the kernel would reset them).
    pub(super) fn arm_accept(&mut self, ring: &mut Ring, i: usize) {
        if self.accept_armed[i] {
            return;
        }
        let armed = self.accept_armed.iter().filter(|&&a| a).count() as u64;
        if WorkerStats::get(&self.control.stats.open) + armed >= u64::from(self.table_slots) {
            return;
        }
        self.accept_armed[i] = true;
        ring.accept(
            self.listener.as_raw_fd(),
            &mut self.accept_addrs[i],
            user_data(Op::Accept, 0, i as u32),
        );
    }

    pub(super) fn on_accept(&mut self, ring: &mut Ring, i: usize, res: i32) {
        self.accept_armed[i] = false;
        if res < 0 {
            let errno = -res;
            WorkerStats::add(&self.control.stats.accept_errors, 1);
            let error = std::io::Error::from_raw_os_error(errno);
            if errno == libc::ENFILE || errno == libc::EMFILE {
                // Every direct-descriptor slot is taken (accepts are armed only while slots are free, so
                // this is rare): pause, and retry when a connection closes.
                self.pause_accepts("connection table full", error);
            } else if errno == libc::EAGAIN || errno == libc::ECONNABORTED || errno == libc::EINTR {
                self.arm_accept(ring, i);
            } else {
                self.pause_accepts("accept failed", error);
            }
            return;
        }
        let slot = res as u32;
        if slot as usize >= self.conns.len() {
            self.conns.resize_with(slot as usize + 1, Conn::default);
        }
        let deadline = self
            .now_ms()
            .saturating_add(self.settings.handshake_timeout_ms);
        if !matches!(self.conns[slot as usize].phase, Phase::Free) {
            // The slot's previous connection was closed by the kernel but its completion is not reaped
            // yet: account for it now (its late completion is recognised as stale by generation).
            self.release_identity(slot);
            WorkerStats::sub(&self.control.stats.open, 1);
            WorkerStats::add(&self.control.stats.closed, 1);
        }
        let conn = &mut self.conns[slot as usize];
        *conn = Conn {
            generation: conn.generation.wrapping_add(1),
            phase: Phase::Handshake {
                head: Vec::new(),
                scan: HeadScanner::default(),
                deadline_ms: deadline,
            },
            peer: self.accept_addrs[i].peer(),
            recv_armed: true,
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
        ring.recv_multishot(slot, user_data(Op::Recv, generation, slot));
        self.handshaking.push(slot);
        WorkerStats::add(&self.control.stats.accepted, 1);
        WorkerStats::add(&self.control.stats.open, 1);
        tracing::trace!(worker = self.id, slot, peer = ?conn.peer, "accepted");
        self.arm_accept(ring, i);
    }

    /// Stop accepting for a while (logged once per pause, so an error cannot flood the log).
    pub(super) fn pause_accepts(&mut self, why: &str, error: std::io::Error) {
        if !self.accept_paused {
            tracing::warn!(worker = self.id, open = self.conns.len(), %error, "{why}; accepts paused for {} ms", MAX_SLEEP.as_millis());
        }
        self.accept_paused = true;
        self.accept_retry_at = self.now_ms() + MAX_SLEEP.as_millis() as u64;
    }
}
