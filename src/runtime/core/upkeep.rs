//! Periodic work, a slice at a time so no iteration stalls: heartbeats (ping a connection silent for
//! `--ping-interval`, close one silent for `--idle-timeout`: half-open sockets are freed), the gauges,
//! and the graceful shutdown (clients closed with 1012 spread over `--drain-window`).

use super::{Core, WorkerStats};
use crate::protocol::session::CloseState;
use crate::protocol::{CloseCode, OpCode, frame};
use crate::runtime::core::conn::Stage;

/// How often upkeep runs. Each run visits the share of connections that makes one full sweep per ping
/// interval, so the cost is spread evenly (no periodic spike at hundreds of thousands of sockets).
pub(super) const UPKEEP_MS: u64 = 250;

/// A graceful shutdown in progress on this worker.
#[derive(Debug)]
pub(super) struct Shutdown {
    started_ms: u64,
    /// Open WebSocket connections when it began (the ones to close over the window).
    to_close: usize,
    closed: usize,
    cursor: usize,
}

impl Core {
    /// Run upkeep if due. Returns true once a graceful shutdown is complete (the worker may stop).
    pub(super) fn upkeep(&mut self) -> bool {
        let now = self.now_ms;
        if now < self.next_upkeep_ms {
            return false;
        }
        self.next_upkeep_ms = now + UPKEEP_MS;
        WorkerStats::set(&self.stats.backlog_bytes, self.backlog.bytes() as u64);
        WorkerStats::set(&self.stats.symbols, self.symbols.len() as u64);
        WorkerStats::set(&self.stats.symbols_evicted, self.symbols.evicted());
        if self.shutdown_requested && self.shutdown.is_none() {
            self.start_shutdown(now);
        }
        if self.shutdown.is_some() {
            return self.shutdown_step(now);
        }
        self.sweep_handshakes(now);
        self.sweep_heartbeats(now);
        false
    }

    /// Close connections still in their HTTP handshake past its deadline (slowloris), and forget the
    /// ones that finished it. Runs every `UPKEEP_MS`, so a timeout fires up to that much late.
    fn sweep_handshakes(&mut self, now_ms: u64) {
        let mut expired = Vec::new();
        let conns = &self.conns;
        self.handshaking
            .retain(|&slot| match conns[slot as usize].stage {
                Stage::Handshake { deadline_ms, .. } if deadline_ms <= now_ms => {
                    expired.push(slot);
                    false
                }
                Stage::Handshake { .. } => true,
                _ => false,
            });
        for slot in expired {
            // A slot listed twice (closed and reused within one sweep) is closed once.
            if matches!(self.conns[slot as usize].stage, Stage::Handshake { .. }) {
                WorkerStats::add(&self.stats.handshake_timeouts, 1);
                tracing::debug!(worker = self.id, slot, "handshake timeout");
                self.abort(slot);
            }
        }
        let cap = self.handshaking.capacity();
        if cap > 1024 && self.handshaking.len() < cap / 4 {
            self.handshaking.shrink_to(cap / 2);
        }
    }

    fn sweep_heartbeats(&mut self, now_ms: u64) {
        let len = self.conns.len();
        if len == 0 {
            return;
        }
        let steps = (self.settings.ping_interval_s as u64 * 1000 / UPKEEP_MS).max(1) as usize;
        let now_s = (now_ms / 1000) as u32;
        for _ in 0..len.div_ceil(steps) {
            let slot = self.sweep_cursor % len;
            self.sweep_cursor = slot + 1;
            let conn = &mut self.conns[slot];
            let Stage::Open { session, .. } = &conn.stage else {
                continue;
            };
            if session.state() != CloseState::Open {
                continue;
            }
            self.stats.conn_backlog.observe(conn.pending_bytes() as u64);
            let idle = now_s.saturating_sub(conn.last_seen_s);
            if idle >= self.settings.idle_timeout_s {
                // Silent past the idle timeout, pongs included: the peer is gone (half-open) or stuck.
                WorkerStats::add(&self.stats.idle_timeouts, 1);
                tracing::debug!(
                    worker = self.id,
                    slot,
                    idle_s = idle,
                    "idle timeout; closing"
                );
                self.abort(slot as u32);
            } else if idle >= self.settings.ping_interval_s && !conn.pinged {
                conn.pinged = true;
                WorkerStats::add(&self.stats.pings, 1);
                frame::encode_frame(OpCode::Ping, b"", &mut self.scratch);
                self.queue_scratch(slot as u32);
            }
        }
    }

    fn start_shutdown(&mut self, now_ms: u64) {
        let to_close = (0..self.conns.len() as u32)
            .filter(|&s| self.is_open(s))
            .count();
        tracing::info!(
            worker = self.id,
            connections = to_close,
            window_ms = self.settings.shutdown_window_ms,
            "shutting down"
        );
        self.shutdown = Some(Shutdown {
            started_ms: now_ms,
            to_close,
            closed: 0,
            cursor: 0,
        });
    }

    /// Close the share of connections due by now (1012: reconnect elsewhere). True when done.
    fn shutdown_step(&mut self, now_ms: u64) -> bool {
        let window = self.settings.shutdown_window_ms.max(1);
        let Some(shutdown) = self.shutdown.as_mut() else {
            return false;
        };
        let elapsed = now_ms - shutdown.started_ms;
        let due = if elapsed >= window {
            usize::MAX
        } else {
            (shutdown.to_close as u128 * elapsed as u128 / window as u128) as usize + 1
        };
        let (mut closed, mut cursor) = (shutdown.closed, shutdown.cursor);
        while closed < due && cursor < self.conns.len() {
            let slot = cursor as u32;
            cursor += 1;
            if self.is_open(slot) {
                self.send_close(slot, CloseCode::SERVICE_RESTART, "server restarting");
                closed += 1;
            }
        }
        let shutdown = self.shutdown.as_mut().expect("shutting down");
        (shutdown.closed, shutdown.cursor) = (closed, cursor);
        let deadline = window + self.settings.limits.close_timeout_ms;
        // Done when no WebSocket session is left (each closed, its close handshake over; what remains is
        // flushing or lingering for the peer's EOF). Connections still in their HTTP exchange do not hold
        // the exit back: while shutting down they are refused (503), and clients reconnecting promptly
        // after their 1012 would otherwise keep one open at all times and hold the process to the
        // deadline, and the port from its replacement (docs/client.md).
        let sessions_left = cursor < self.conns.len()
            || self
                .conns
                .iter()
                .any(|c| matches!(c.stage, Stage::Open { .. }));
        !sessions_left || elapsed >= deadline
    }
}
