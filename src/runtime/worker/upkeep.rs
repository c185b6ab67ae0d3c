//! Periodic work, a slice at a time so no iteration stalls: heartbeats (ping a connection silent for
//! `--ping-interval`, close one silent for `--idle-timeout`: half-open sockets are freed), the backlog
//! gauge, and the graceful drain (clients closed with 1012 spread over `--drain-window`).

use super::{Ring, State, WorkerStats};
use crate::protocol::session::CloseState;
use crate::protocol::{CloseCode, OpCode, frame};
use crate::runtime::conn::Phase;

/// How often upkeep runs. Each run visits the share of connections that makes one full sweep per ping
/// interval, so the cost is spread evenly (no periodic spike at hundreds of thousands of sockets).
pub(super) const UPKEEP_MS: u64 = 250;

/// A drain in progress on this worker.
#[derive(Debug)]
pub(super) struct Drain {
    started_ms: u64,
    /// Open WebSocket connections when it began (the ones to close over the window).
    to_close: usize,
    closed: usize,
    cursor: usize,
}

impl State {
    pub(super) fn upkeep_due_ms(&self) -> u64 {
        self.next_upkeep_ms
    }

    /// Run upkeep if due. Returns true once a drain is complete (the worker may stop).
    pub(super) fn upkeep(&mut self, ring: &mut Ring) -> bool {
        let now = self.now_ms();
        if now < self.next_upkeep_ms {
            return false;
        }
        self.next_upkeep_ms = now + UPKEEP_MS;
        WorkerStats::set(
            &self.control.stats.backlog_bytes,
            self.backlog.max(0) as u64,
        );
        WorkerStats::set(&self.control.stats.symbols, self.symbols.len() as u64);
        WorkerStats::set(&self.control.stats.symbols_evicted, self.symbols.evicted());
        if self.control.draining() && self.drain.is_none() {
            self.start_drain(now);
        }
        if self.drain.is_some() {
            return self.drain_step(now);
        }
        self.sweep_handshakes(ring, now);
        self.sweep_heartbeats(ring, now);
        false
    }

    /// Close connections still in their HTTP handshake past its deadline (slowloris), and forget the
    /// ones that finished it. Runs every `UPKEEP_MS`, so a timeout fires up to that much late.
    fn sweep_handshakes(&mut self, ring: &mut Ring, now_ms: u64) {
        let mut expired = Vec::new();
        let conns = &self.conns;
        self.handshaking
            .retain(|&slot| match conns[slot as usize].phase {
                Phase::Handshake { deadline_ms, .. } if deadline_ms <= now_ms => {
                    expired.push(slot);
                    false
                }
                Phase::Handshake { .. } => true,
                _ => false,
            });
        for slot in expired {
            // A slot listed twice (closed and reused within one sweep) is closed once.
            if matches!(self.conns[slot as usize].phase, Phase::Handshake { .. }) {
                WorkerStats::add(&self.control.stats.handshake_timeouts, 1);
                tracing::debug!(worker = self.id, slot, "handshake timeout");
                self.close_now(ring, slot);
            }
        }
        let cap = self.handshaking.capacity();
        if cap > 1024 && self.handshaking.len() < cap / 4 {
            self.handshaking.shrink_to(cap / 2);
        }
    }

    fn sweep_heartbeats(&mut self, ring: &mut Ring, now_ms: u64) {
        let len = self.conns.len();
        if len == 0 {
            return;
        }
        let steps = (self.settings.ping_interval_s as u64 * 1000 / UPKEEP_MS).max(1) as usize;
        let now_s = (now_ms / 1000) as u32;
        for _ in 0..len.div_ceil(steps) {
            let slot = self.sweep_cursor % len;
            self.sweep_cursor = slot + 1;
            let conn = &self.conns[slot];
            let Phase::Open { session, .. } = &conn.phase else {
                continue;
            };
            if session.state() != CloseState::Open {
                continue;
            }
            let idle = now_s.saturating_sub(conn.last_seen_s);
            if idle >= self.settings.idle_timeout_s {
                // Silent past the idle timeout, pongs included: the peer is gone (half-open) or stuck.
                WorkerStats::add(&self.control.stats.idle_timeouts, 1);
                tracing::debug!(
                    worker = self.id,
                    slot,
                    idle_s = idle,
                    "idle timeout; closing"
                );
                self.close_now(ring, slot as u32);
            } else if idle >= self.settings.ping_interval_s {
                WorkerStats::add(&self.control.stats.pings, 1);
                frame::encode_frame(OpCode::Ping, b"", &mut self.scratch);
                self.queue_scratch(slot as u32);
            }
        }
    }

    fn start_drain(&mut self, now_ms: u64) {
        let to_close = (0..self.conns.len() as u32)
            .filter(|&s| self.is_open(s))
            .count();
        tracing::info!(
            worker = self.id,
            connections = to_close,
            window_ms = self.settings.drain_window_ms,
            "draining"
        );
        self.drain = Some(Drain {
            started_ms: now_ms,
            to_close,
            closed: 0,
            cursor: 0,
        });
    }

    /// Close the share of connections due by now (1012: reconnect elsewhere). True when done.
    fn drain_step(&mut self, now_ms: u64) -> bool {
        let window = self.settings.drain_window_ms.max(1);
        let Some(drain) = self.drain.as_mut() else {
            return false;
        };
        let elapsed = now_ms - drain.started_ms;
        let due = if elapsed >= window {
            usize::MAX
        } else {
            (drain.to_close as u128 * elapsed as u128 / window as u128) as usize + 1
        };
        let (mut closed, mut cursor) = (drain.closed, drain.cursor);
        while closed < due && cursor < self.conns.len() {
            let slot = cursor as u32;
            cursor += 1;
            if self.is_open(slot) {
                self.close_with(slot, CloseCode::SERVICE_RESTART, "server restarting");
                closed += 1;
            }
        }
        let drain = self.drain.as_mut().expect("draining");
        (drain.closed, drain.cursor) = (closed, cursor);
        let deadline = window + self.settings.limits.close_timeout_ms;
        // Done when no WebSocket session is left (each closed, its close handshake over). Connections still in
        // their HTTP exchange do not hold the exit back: while draining they are refused (503), and clients
        // reconnecting promptly after their 1012 would otherwise keep one open at all times and hold the
        // process to the deadline, and the port from its replacement (docs/client.md).
        let sessions_left = cursor < self.conns.len()
            || self
                .conns
                .iter()
                .any(|c| matches!(c.phase, Phase::Open { .. }));
        !sessions_left || elapsed >= deadline
    }
}
