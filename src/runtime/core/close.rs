//! Bytes out and the end of a connection.
//!
//! Out: outboxes are flushed once per loop iteration (or coalesce delay): one send per socket carrying
//! everything queued.
//!
//! The end, one path with four steps, each entered once:
//! - [`Core::send_close`]: a WebSocket connection gets our Close frame (code + reason) and waits for the
//!   peer's, bounded by the close timeout;
//! - [`Core::end`]: send what is queued (an HTTP response, the last close frame), then shut the write
//!   side and linger, reading until the peer closes (a clean close instead of a reset);
//! - [`Core::abort`]: stop now (peer gone, timeout, error): cancel what is in flight;
//! - `release`: once nothing is in flight, close the descriptor; its completion frees the slot
//!   (`on_closed` → `forget`).

use super::{ConnId, Core, Intent, MAX_ACCEPTS, WorkerStats};
use crate::protocol::CloseCode;
use crate::protocol::session::CloseState;
use crate::runtime::core::conn::{Conn, Stage};

impl Core {
    /// Move the bytes produced while handling input (101, close frames, heartbeat pings, echoes) into the
    /// connection's outbox. Small and bounded by the input; what a client can make the server send on
    /// demand (replies, pongs) goes through `deliver` and the slow-consumer policy instead.
    pub(super) fn queue_scratch(&mut self, slot: u32) {
        if self.scratch.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.scratch);
        self.conns[slot as usize]
            .frames()
            .push_owned(bytes, &mut self.backlog);
        self.mark_dirty(slot);
    }

    /// Server-initiated close of a WebSocket connection: send a Close frame and wait for the peer's
    /// (bounded by the close timeout).
    pub(super) fn send_close(&mut self, slot: u32, code: CloseCode, reason: &str) {
        self.unsubscribe_all(slot);
        let now = self.now_ms;
        let conn = &mut self.conns[slot as usize];
        let Stage::Open { session, .. } = &mut conn.stage else {
            return;
        };
        if session.state() != CloseState::Open {
            return;
        }
        session.close(code, reason, &self.settings.limits, now, &mut self.scratch);
        if let Some(deadline) = session.deadline_ms() {
            self.push_timer(deadline, slot);
        }
        self.pong_before_close(slot);
        self.queue_scratch(slot);
    }

    /// A Close frame is about to be queued: the pong still waiting to join the queue (if any) goes in
    /// before it, since nothing may follow a Close (RFC 6455 §5.5.1).
    pub(super) fn pong_before_close(&mut self, slot: u32) {
        if let Some(frames) = self.conns[slot as usize].frames_if_any() {
            frames.queue_pong();
        }
    }

    /// Send what is queued (including any scratch bytes), then shut the write side and linger.
    pub(super) fn end(&mut self, slot: u32) {
        self.unsubscribe_all(slot);
        self.queue_scratch(slot);
        let deadline = self
            .now_ms
            .saturating_add(self.settings.limits.close_timeout_ms);
        self.push_timer(deadline, slot);
        let conn = &mut self.conns[slot as usize];
        conn.stage = Stage::Flushing;
        if conn.tls.is_some() {
            // Last frames, then close_notify, so a TLS client sees a clean end of stream.
            if conn.seal(&mut self.backlog).is_ok()
                && let Some(tls) = conn.tls.as_mut()
            {
                let mut notify = Vec::new();
                tls.session.send_close_notify(&mut notify);
                conn.outbox().push_owned(notify, &mut self.backlog);
            }
            self.mark_dirty(slot);
        }
        let conn = &self.conns[slot as usize];
        if conn.outbox.as_ref().is_none_or(|o| o.is_empty()) && !conn.sending {
            self.linger(slot);
        }
    }

    fn linger(&mut self, slot: u32) {
        let id = self.conn_id(slot);
        let conn = &mut self.conns[slot as usize];
        conn.stage = Stage::Lingering;
        conn.aux_pending += 1;
        self.intents.push(Intent::ShutWrite(id));
    }

    /// Stop everything on the connection now; the slot is freed once its last operation completes.
    pub(super) fn abort(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if matches!(conn.stage, Stage::Releasing | Stage::Free) {
            return;
        }
        conn.stage = Stage::Releasing;
        self.unsubscribe_all(slot);
        let id = self.conn_id(slot);
        let conn = &mut self.conns[slot as usize];
        if conn.recv_armed || conn.sending {
            conn.aux_pending += 1;
            self.intents.push(Intent::Cancel(id));
        }
        self.release(slot);
    }

    /// Close the descriptor once no operation on it is in flight; what was still queued is dropped.
    pub(super) fn release(&mut self, slot: u32) {
        let id = self.conn_id(slot);
        let conn = &mut self.conns[slot as usize];
        if conn.recv_armed || conn.sending || conn.aux_pending > 0 || conn.close_submitted {
            return;
        }
        conn.close_submitted = true;
        conn.discard_queues(&mut self.backlog);
        self.intents.push(Intent::Close(id));
    }

    /// A shutdown or cancel completed (its result needs no action): the close may now proceed.
    pub fn on_aux_done(&mut self, id: ConnId) {
        let Some(conn) = self.live(id) else {
            return;
        };
        conn.aux_pending = conn.aux_pending.saturating_sub(1);
        if matches!(conn.stage, Stage::Releasing) {
            self.release(id.slot);
        }
    }

    /// The descriptor is closed: the slot is free for the next accept.
    pub fn on_closed(&mut self, id: ConnId) {
        if self.live(id).is_none() {
            return;
        }
        self.forget(id.slot);
        // A slot is free: resume a paused accept, or arm one held back while the table was full.
        if self.accept_paused || (self.accepts_armed as usize) < MAX_ACCEPTS {
            self.resume_accepts();
        }
    }

    /// The slot's connection is gone: release what it held (subscriptions, identity, address count,
    /// queued bytes) and count it closed. The slot keeps its generation.
    pub(super) fn forget(&mut self, slot: u32) {
        self.unsubscribe_all(slot);
        self.release_identity(slot);
        let conn = &mut self.conns[slot as usize];
        conn.discard_queues(&mut self.backlog);
        let generation = conn.generation;
        *conn = Conn {
            generation,
            ..Conn::default()
        };
        self.open -= 1;
        WorkerStats::sub(&self.stats.open, 1);
        WorkerStats::add(&self.stats.closed, 1);
    }

    /// A send completed: `result` is the bytes sent, or `-errno`.
    pub fn on_sent(&mut self, id: ConnId, result: i32) {
        let max_backlog = self.settings.max_backlog;
        if self.live(id).is_none() {
            return;
        }
        let slot = id.slot;
        let conn = &mut self.conns[slot as usize];
        conn.sending = false;
        let Some(outbox) = conn.outbox.as_mut() else {
            return;
        };
        if result < 0 || matches!(conn.stage, Stage::Releasing) {
            outbox.abandon();
            if result < 0 && result != -libc::ECANCELED {
                tracing::debug!(worker = self.id, slot, error = %std::io::Error::from_raw_os_error(-result), "send failed");
            }
            self.abort(slot);
            self.release(slot);
            return;
        }
        outbox.complete(result as usize, &mut self.backlog);
        // The slow-consumer clock runs on where frames queue: TLS plaintext, or this outbox itself.
        let frames = match conn.tls.as_mut() {
            Some(tls) => tls.plain.as_deref_mut(),
            None => Some(&mut **outbox),
        };
        if let Some(frames) = frames
            && frames.pending_bytes() <= max_backlog
        {
            frames.over_limit_since_ms = None;
        }
        if let Some(tls) = conn.tls.as_mut() {
            tls.release_plain();
        }
        let more = !outbox.is_empty() || conn.tls.as_ref().is_some_and(|t| t.has_plain());
        if outbox.is_empty() {
            conn.outbox = None;
        }
        if more {
            self.mark_dirty(slot);
        } else if matches!(conn.stage, Stage::Flushing) {
            self.linger(slot);
        }
    }

    /// One send per connection with queued bytes, carrying everything it has queued.
    pub(super) fn flush(&mut self) {
        for slot in std::mem::take(&mut self.dirty) {
            let conn = &mut self.conns[slot as usize];
            conn.dirty = false;
            if conn.sending || matches!(conn.stage, Stage::Releasing | Stage::Free) {
                continue;
            }
            if let Err(failure) = conn.seal(&mut self.backlog) {
                tracing::debug!(
                    worker = self.id,
                    slot,
                    reason = failure.reason(),
                    "TLS failure while sealing; closing"
                );
                self.abort(slot);
                continue;
            }
            let generation = conn.generation;
            if let Some(op) = conn.outbox.as_mut().and_then(|o| o.prepare_send()) {
                conn.sending = true;
                // The outbox is boxed and stays in `conn.outbox` while `conn.sending` is set, with the
                // chunks the send points into: it is dropped only by `on_sent` (after the completion) or
                // `release` (which waits for it).
                self.intents
                    .push(Intent::Send(ConnId { slot, generation }, op));
            }
        }
    }
}
