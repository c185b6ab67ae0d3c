//! The send queue of one connection ([`Outbox`]): chunks of bytes (owned, or frames shared with every
//! subscriber of a symbol), the at-most-one waiting pong, slow-consumer conflation, and the next send
//! (`send` of one chunk or `sendmsg` over many) described for the driver as a [`SendOp`]. Every byte
//! queued or sent is counted in the worker's [`Backlog`] gauge by the outbox itself.

use std::collections::VecDeque;

use crate::fanout::symbols::{LocalFrame, SymbolId};

/// A chunk of bytes to send: owned by this connection (handshake response, pong, echo), or a frame shared
/// with every other subscriber of a symbol (built once, refcounted, never copied).
#[derive(Debug)]
pub enum Chunk {
    Owned(Vec<u8>),
    Shared(LocalFrame),
    /// A tick of one symbol: the unit slow-consumer conflation replaces.
    Tick(SymbolId, LocalFrame),
}

impl Chunk {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(f) | Chunk::Tick(_, f) => f,
        }
    }
}

/// What to submit for a connection's next send. The memory behind both stays put until the send
/// completes (the outbox is boxed; chunks are not dropped while in flight).
#[derive(Clone, Copy, Debug)]
pub enum SendOp {
    /// One contiguous run of bytes (`send`).
    Bytes(*const u8, usize),
    /// Several chunks (`sendmsg`).
    Msg(*const libc::msghdr),
}

/// Bytes waiting in one worker's outboxes. Only an [`Outbox`] changes it, by exactly the change of its
/// own count (and an outbox is emptied through `discard`), so the gauge is the sum of the outboxes by
/// construction.
#[derive(Debug, Default)]
pub struct Backlog(usize);

impl Backlog {
    pub fn bytes(&self) -> usize {
        self.0
    }
}

/// Most chunks one send carries (writev-style batching: many frames, one system call).
const MAX_IOV: usize = 64;

/// The send queue of one connection. Boxed, so the `msghdr` and iovecs handed to the kernel keep their
/// address while a send is in flight.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Chunk>,
    /// The first `in_flight` chunks of `queue` are referenced by `iov` and owned by the kernel.
    in_flight: usize,
    /// Bytes of `queue[0]` already sent.
    offset: usize,
    /// Bytes queued and not yet sent.
    pending: usize,
    iov: Vec<libc::iovec>,
    msg: libc::msghdr,
    /// The Pong answering the latest Ping, encoded, not yet queued: it joins the queue when the next send
    /// is prepared, so a peer that pings and never reads has at most one pong waiting.
    pong: Option<Vec<u8>>,
    /// Since when (ms) the backlog has been over the limit, if it is.
    pub over_limit_since_ms: Option<u64>,
    /// When the slow-grace timer armed for this queue is due, if one is in the worker's timer heap.
    pub slow_timer_ms: Option<u64>,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            queue: VecDeque::new(),
            in_flight: 0,
            offset: 0,
            pending: 0,
            iov: Vec::new(),
            // SAFETY: msghdr is plain data; all-zero is the empty message.
            msg: unsafe { std::mem::zeroed() },
            pong: None,
            over_limit_since_ms: None,
            slow_timer_ms: None,
        }
    }
}

impl Outbox {
    /// Add `n` bytes to this queue's count and the worker's gauge.
    fn grow(&mut self, n: usize, backlog: &mut Backlog) {
        self.pending += n;
        backlog.0 += n;
    }

    /// Take `n` bytes off this queue's count and the worker's gauge.
    fn shrink(&mut self, n: usize, backlog: &mut Backlog) {
        debug_assert!(n <= self.pending);
        self.pending -= n;
        backlog.0 -= n;
    }

    /// Queue owned bytes, appending to the last owned chunk when it is not in flight.
    pub fn push_owned(&mut self, bytes: Vec<u8>, backlog: &mut Backlog) {
        if bytes.is_empty() {
            return;
        }
        self.grow(bytes.len(), backlog);
        if self.queue.len() > self.in_flight
            && let Some(Chunk::Owned(last)) = self.queue.back_mut()
            && last.len() < 16 * 1024
        {
            last.extend_from_slice(&bytes);
            return;
        }
        self.queue.push_back(Chunk::Owned(bytes));
    }

    /// Queue a shared frame.
    pub fn push_shared(&mut self, frame: LocalFrame, backlog: &mut Backlog) {
        self.grow(frame.len(), backlog);
        self.queue.push_back(Chunk::Shared(frame));
    }

    /// Queue a tick of `symbol`.
    pub fn push_tick(&mut self, symbol: SymbolId, frame: LocalFrame, backlog: &mut Backlog) {
        self.grow(frame.len(), backlog);
        self.queue.push_back(Chunk::Tick(symbol, frame));
    }

    /// Answer a Ping with `payload`: a pong still waiting is replaced (only the latest ping is answered,
    /// RFC 6455 §5.5.3), otherwise one is added. It is queued behind what is already waiting when the
    /// next send is prepared.
    pub fn set_pong(&mut self, payload: &[u8], backlog: &mut Backlog) {
        let mut pong = self.pong.take().unwrap_or_default();
        self.shrink(pong.len(), backlog);
        pong.clear();
        crate::protocol::session::pong(payload, &mut pong);
        self.grow(pong.len(), backlog);
        self.pong = Some(pong);
    }

    /// Move the waiting pong, if any, into the queue (its bytes are already counted in `pending`).
    /// Also called before a Close frame is queued: nothing may follow the Close.
    pub fn queue_pong(&mut self) {
        if let Some(pong) = self.pong.take() {
            // Counted already: moved, not added (an empty gauge stands in for the worker's).
            let mut moved = Backlog(pong.len());
            self.pending -= pong.len();
            self.push_owned(pong, &mut moved);
        }
    }

    /// Conflate: replace the last waiting (not yet sending) tick of `symbol` with `frame`, so only the
    /// latest value of each symbol waits. The last one, so no older value of the symbol can follow the new
    /// one. False when no tick of `symbol` is waiting.
    pub fn conflate(
        &mut self,
        symbol: SymbolId,
        frame: &LocalFrame,
        backlog: &mut Backlog,
    ) -> bool {
        for chunk in self.queue.iter_mut().skip(self.in_flight).rev() {
            if let Chunk::Tick(s, old) = chunk
                && *s == symbol
            {
                let old_len = old.len();
                *old = frame.clone();
                self.shrink(old_len, backlog);
                self.grow(frame.len(), backlog);
                return true;
            }
        }
        false
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.pong.is_none()
    }

    /// Build the next send from the queued chunks, or `None` when a send is already in flight or nothing
    /// is queued. One chunk (the common case: one tick) goes as a plain send of its bytes; several as
    /// one `sendmsg` over their iovecs.
    pub fn prepare_send(&mut self) -> Option<SendOp> {
        if self.in_flight > 0 {
            return None;
        }
        self.queue_pong();
        if self.queue.is_empty() {
            return None;
        }
        if self.queue.len() == 1 {
            let bytes = &self.queue[0].bytes()[self.offset..];
            self.in_flight = 1;
            return Some(SendOp::Bytes(bytes.as_ptr(), bytes.len()));
        }
        self.iov.clear();
        for (i, chunk) in self.queue.iter().take(MAX_IOV).enumerate() {
            let bytes = &chunk.bytes()[if i == 0 { self.offset } else { 0 }..];
            self.iov.push(libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            });
        }
        self.in_flight = self.iov.len();
        self.msg.msg_iov = self.iov.as_mut_ptr();
        self.msg.msg_iovlen = self.iov.len();
        Some(SendOp::Msg(&raw const self.msg))
    }

    /// The in-flight send completed having sent `sent` bytes: drop what went out.
    pub fn complete(&mut self, mut sent: usize, backlog: &mut Backlog) {
        self.in_flight = 0;
        self.shrink(sent.min(self.pending), backlog);
        while let Some(front) = self.queue.front() {
            let left = front.bytes().len() - self.offset;
            if sent < left {
                self.offset += sent;
                return;
            }
            sent -= left;
            self.offset = 0;
            self.queue.pop_front();
        }
    }

    /// Take every chunk (none may be in flight: used on the plaintext side of TLS, never sent directly).
    /// The queue's allocation goes with them, so an emptied queue holds no memory.
    pub fn take_all(&mut self, backlog: &mut Backlog) -> VecDeque<Chunk> {
        debug_assert_eq!(self.in_flight, 0);
        self.queue_pong();
        self.shrink(self.pending, backlog);
        self.offset = 0;
        std::mem::take(&mut self.queue)
    }

    /// Give back the (emptied) queue [`take_all`](Self::take_all) took, so its allocation is used again.
    pub fn restore_queue(&mut self, queue: VecDeque<Chunk>) {
        debug_assert!(queue.is_empty() && self.queue.is_empty());
        self.queue = queue;
    }

    /// The in-flight send failed: nothing more will be sent.
    pub fn abandon(&mut self) {
        self.in_flight = 0;
    }

    /// Forget every queued byte (none may be in flight): the connection is gone.
    pub fn discard(&mut self, backlog: &mut Backlog) {
        self.shrink(self.pending, backlog);
        self.queue.clear();
        self.pong = None;
        self.offset = 0;
    }

    /// The bytes of the send in flight (what the last `prepare_send` pointed to).
    #[cfg(test)]
    pub fn in_flight(&self) -> Vec<&[u8]> {
        self.queue
            .iter()
            .take(self.in_flight)
            .enumerate()
            .map(|(i, c)| &c.bytes()[if i == 0 { self.offset } else { 0 }..])
            .collect()
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // Every byte leaves through `complete`, `take_all` or `discard`, which keep the gauge exact.
        debug_assert!(
            self.pending == 0 || std::thread::panicking(),
            "an outbox holding {} bytes dropped without `discard`",
            self.pending
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_sends_resume_where_they_stopped() {
        let mut out = Outbox::default();
        let g = &mut Backlog::default();
        out.push_owned(b"hello ".to_vec(), g);
        out.push_shared(std::rc::Rc::new(std::sync::Arc::from(&b"world"[..])), g);
        assert_eq!(out.pending_bytes(), 11);
        let Some(SendOp::Msg(msg)) = out.prepare_send() else {
            panic!("two chunks go as one sendmsg");
        };
        // SAFETY (test): reading the iovec count of our own msghdr.
        assert_eq!(unsafe { (*msg).msg_iovlen }, 2);
        assert!(out.prepare_send().is_none(), "one send in flight at a time");
        out.complete(8, g);
        assert_eq!(out.pending_bytes(), 3);
        let Some(SendOp::Bytes(_, len)) = out.prepare_send() else {
            panic!("one chunk left goes as a plain send");
        };
        assert_eq!(len, 3, "from where the last send stopped");
        out.complete(3, g);
        assert!(out.is_empty());
        assert_eq!(g.bytes(), 0);
    }

    fn tick(text: &str) -> LocalFrame {
        std::rc::Rc::new(std::sync::Arc::from(text.as_bytes()))
    }

    #[test]
    fn conflation_keeps_only_the_latest_waiting_tick_of_a_symbol() {
        let mut out = Outbox::default();
        let g = &mut Backlog::default();
        out.push_tick(1, tick("EFERT 1"), g);
        out.prepare_send().unwrap(); // EFERT 1 is in flight: never replaced
        assert!(
            !out.conflate(1, &tick("EFERT 2"), g),
            "nothing of EFERT waiting behind the send"
        );
        out.push_tick(1, tick("EFERT 2"), g);
        out.push_tick(2, tick("LUCK 1"), g);
        assert!(out.conflate(1, &tick("EFERT 3"), g));
        assert!(out.conflate(2, &tick("LUCK 22"), g));
        assert_eq!(out.pending_bytes(), 7 + 7 + 7);
        out.complete(7, g);
        out.prepare_send().unwrap();
        let sent: Vec<&[u8]> = out.queue.iter().map(Chunk::bytes).collect();
        assert_eq!(
            sent,
            vec![&b"EFERT 3"[..], &b"LUCK 22"[..]],
            "order kept, values current"
        );
        out.abandon();
        out.discard(g);
        assert_eq!(g.bytes(), 0, "the gauge follows the queue");
    }

    #[test]
    fn at_most_one_pong_waits_and_it_answers_the_latest_ping() {
        let mut out = Outbox::default();
        let g = &mut Backlog::default();
        out.push_owned(b"x".to_vec(), g);
        out.prepare_send().unwrap(); // "x" in flight; pongs wait behind it
        for i in 0..1000_u32 {
            out.set_pong(&i.to_be_bytes(), g);
        }
        assert_eq!(
            out.pending_bytes(),
            1 + 6,
            "one 6-byte pong waits, not 1000"
        );
        assert!(out.prepare_send().is_none(), "one send in flight at a time");
        out.complete(1, g);
        assert!(!out.is_empty(), "the pong is still to send");
        let Some(SendOp::Bytes(ptr, len)) = out.prepare_send() else {
            panic!("the pong goes out alone");
        };
        // SAFETY (test): the bytes stay in the outbox until `complete`.
        let sent = unsafe { std::slice::from_raw_parts(ptr, len) };
        assert_eq!(
            sent,
            &[0x8A, 4, 0, 0, 0x03, 0xE7][..],
            "Pong of the last ping (999)"
        );
        out.complete(len, g);
        assert!(out.is_empty() && out.pending_bytes() == 0);
    }

    #[test]
    fn owned_bytes_coalesce_only_outside_the_send_in_flight() {
        let mut out = Outbox::default();
        let g = &mut Backlog::default();
        out.push_owned(b"a".to_vec(), g);
        out.prepare_send().unwrap();
        out.push_owned(b"b".to_vec(), g);
        out.push_owned(b"c".to_vec(), g);
        assert_eq!(out.queue.len(), 2);
        out.complete(1, g);
        let Some(SendOp::Bytes(_, len)) = out.prepare_send() else {
            panic!("\"bc\" is one chunk, sent as plain bytes");
        };
        assert_eq!(len, 2);
        out.complete(len, g);
        assert_eq!(g.bytes(), 0);
    }
}
