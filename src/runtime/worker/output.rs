//! Bytes out and the end of a connection: outboxes flushed once per loop iteration (one send per socket
//! carrying everything queued), then the close lifecycle — finish (send what is queued), linger (write side
//! shut, reading until the peer closes), close (cancel, then free the slot once nothing is in flight).

use std::cmp::Reverse;

use super::{ACCEPTS, Op, Ring, State, WorkerStats, live, user_data};
use crate::runtime::conn::{Conn, Phase, SendOp};

impl State {
    /// Move the bytes produced while handling input (101, close frames, heartbeat pings, echoes) into the
    /// connection's outbox. Small and bounded by the input; what a client can make the server send on
    /// demand (replies, pongs) goes through `deliver` and the slow-consumer policy instead.
    pub(super) fn queue_scratch(&mut self, slot: u32) {
        if self.scratch.is_empty() {
            return;
        }
        let conn = &mut self.conns[slot as usize];
        self.backlog += self.scratch.len() as i64;
        conn.frames().push_owned(std::mem::take(&mut self.scratch));
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(slot);
        }
    }

    /// Send what is queued (including any scratch bytes), then shut the write side and linger.
    pub(super) fn finish(&mut self, ring: &mut Ring, slot: u32) {
        self.unsubscribe_all(slot);
        self.queue_scratch(slot);
        let deadline = self
            .now_ms()
            .saturating_add(self.settings.limits.close_timeout_ms);
        let conn = &mut self.conns[slot as usize];
        conn.phase = Phase::Finishing;
        let generation = conn.generation;
        self.timers.push(Reverse((deadline, slot, generation)));
        if conn.tls.is_some() {
            // Last frames, then close_notify, so a TLS client sees a clean end of stream.
            if conn.seal().is_ok()
                && let Some(tls) = conn.tls.as_mut()
            {
                let mut notify = Vec::new();
                tls.session.send_close_notify(&mut notify);
                conn.outbox
                    .get_or_insert_with(Box::default)
                    .push_owned(notify);
            }
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(slot);
            }
        }
        if conn.outbox.as_ref().is_none_or(|o| o.is_empty()) && !conn.sending {
            self.linger(ring, slot);
        }
    }

    pub(super) fn linger(&mut self, ring: &mut Ring, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        conn.phase = Phase::Lingering;
        conn.aux_pending += 1;
        ring.shutdown(slot, user_data(Op::Shutdown, conn.generation, slot));
    }

    /// Stop everything on the connection now; the slot is freed once its last operation completes.
    pub(super) fn close_now(&mut self, ring: &mut Ring, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if matches!(conn.phase, Phase::Closing | Phase::Free) {
            return;
        }
        conn.phase = Phase::Closing;
        self.unsubscribe_all(slot);
        let conn = &mut self.conns[slot as usize];
        if conn.recv_armed || conn.sending {
            conn.aux_pending += 1;
            ring.cancel_all(slot, user_data(Op::Cancel, conn.generation, slot));
        }
        self.finish_close(ring, slot);
    }

    /// Close the descriptor once no operation on it is in flight.
    pub(super) fn finish_close(&mut self, ring: &mut Ring, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if conn.recv_armed || conn.sending || conn.aux_pending > 0 || conn.close_submitted {
            return;
        }
        conn.close_submitted = true;
        // Frames not yet sealed (wss://) are counted in the gauge too.
        self.backlog -= conn.pending_bytes() as i64;
        conn.outbox = None;
        if let Some(tls) = conn.tls.as_mut() {
            tls.plain = None;
        }
        ring.close(slot, user_data(Op::Close, conn.generation, slot));
    }

    /// A shutdown or cancel completed (its result needs no action): the close may now proceed.
    pub(super) fn on_aux_done(&mut self, ring: &mut Ring, slot: u32, generation: u16) {
        let Some(conn) = live(&mut self.conns, slot, generation) else {
            return;
        };
        conn.aux_pending = conn.aux_pending.saturating_sub(1);
        if matches!(conn.phase, Phase::Closing) {
            self.finish_close(ring, slot);
        }
    }

    pub(super) fn on_closed(&mut self, ring: &mut Ring, slot: u32, generation: u16) {
        if live(&mut self.conns, slot, generation).is_none() {
            return;
        }
        self.release_identity(slot);
        debug_assert_eq!(
            self.symbols.subscription_count(slot),
            0,
            "unsubscribed on close"
        );
        let conn = &mut self.conns[slot as usize];
        let generation = conn.generation;
        *conn = Conn {
            generation,
            ..Conn::default()
        };
        WorkerStats::sub(&self.control.stats.open, 1);
        WorkerStats::add(&self.control.stats.closed, 1);
        // A slot is free: resume a paused accept, or arm one held back while the table was full.
        if self.accept_paused || self.accept_armed.iter().any(|&a| !a) {
            self.resume_accepts(ring);
        }
    }

    pub(super) fn on_send(&mut self, ring: &mut Ring, slot: u32, generation: u16, res: i32) {
        let Some(conn) = live(&mut self.conns, slot, generation) else {
            return;
        };
        conn.sending = false;
        let Some(outbox) = conn.outbox.as_mut() else {
            return;
        };
        if res < 0 || matches!(conn.phase, Phase::Closing) {
            outbox.abandon();
            if res < 0 && res != -libc::ECANCELED {
                tracing::debug!(worker = self.id, slot, error = %std::io::Error::from_raw_os_error(-res), "send failed");
            }
            self.close_now(ring, slot);
            self.finish_close(ring, slot);
            return;
        }
        let before = outbox.pending_bytes();
        outbox.complete(res as usize);
        self.backlog -= (before - outbox.pending_bytes()) as i64;
        // The slow-consumer clock runs on where frames queue: TLS plaintext, or this outbox itself.
        let frames = match conn.tls.as_mut() {
            Some(tls) => tls.plain.as_deref_mut(),
            None => Some(&mut **outbox),
        };
        if let Some(frames) = frames
            && frames.pending_bytes() <= self.settings.max_backlog
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
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(slot);
            }
        } else if matches!(conn.phase, Phase::Finishing) {
            self.linger(ring, slot);
        }
    }

    /// One send per connection with queued bytes, carrying everything it has queued.
    pub(super) fn flush(&mut self, ring: &mut Ring) {
        for slot in std::mem::take(&mut self.dirty) {
            let conn = &mut self.conns[slot as usize];
            conn.dirty = false;
            if conn.sending || matches!(conn.phase, Phase::Closing | Phase::Free) {
                continue;
            }
            match conn.seal() {
                Ok((plain, cipher)) => self.backlog += cipher as i64 - plain as i64,
                Err(failure) => {
                    tracing::debug!(
                        worker = self.id,
                        slot,
                        reason = failure.reason(),
                        "TLS failure while sealing; closing"
                    );
                    self.close_now(ring, slot);
                    continue;
                }
            }
            let conn = &mut self.conns[slot as usize];
            if let Some(op) = conn.outbox.as_mut().and_then(|o| o.prepare_send()) {
                conn.sending = true;
                let ud = user_data(Op::Send, conn.generation, slot);
                // SAFETY: the outbox is boxed and stays in `conn.outbox` while `conn.sending` is set, with
                // the chunks the send points into: it is dropped only by `on_send` (after the completion)
                // or `finish_close` (which waits for it).
                unsafe {
                    match op {
                        SendOp::Bytes(ptr, len) => ring.send(slot, ptr, len, ud),
                        SendOp::Msg(msg) => ring.send_msg(slot, msg, ud),
                    }
                }
            }
        }
    }

    pub(super) fn resume_accepts(&mut self, ring: &mut Ring) {
        self.accept_paused = false;
        for i in 0..ACCEPTS {
            self.arm_accept(ring, i);
        }
    }
}
