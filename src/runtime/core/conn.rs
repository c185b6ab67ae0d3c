//! Per-connection state: what one socket costs in user space.
//!
//! An idle open connection is one `Conn` slot in its worker's slab and nothing else: no receive buffer
//! (the kernel picks one from the shared buffer ring when data arrives), no send queue (an `Outbox`,
//! `outbox.rs`: allocated while bytes are waiting, freed when they are gone).

use std::net::IpAddr;

use super::outbox::{Backlog, Chunk, Outbox};
use crate::admission::MessageRate;
use crate::auth::Identity;
use crate::protocol::Session;
use crate::protocol::handshake::HeadScanner;
use crate::tls::{TlsFailure, TlsSession};

/// Where a connection is in its life: Free → Handshake → Open → Flushing → Lingering → Releasing → Free
/// (any stage may go straight to Releasing).
#[derive(Debug, Default)]
pub enum Stage {
    /// Slot unused.
    #[default]
    Free,
    /// Reading the HTTP request head. `head` holds the bytes of an incomplete head; `scan` is where the
    /// check of its shape stopped (resumed on the next bytes); past `deadline_ms` the connection is closed
    /// (upkeep checks).
    Handshake {
        head: Vec<u8>,
        scan: HeadScanner,
        deadline_ms: u64,
    },
    /// WebSocket open (or in its close handshake). `tail` holds an incomplete frame header or control
    /// frame between reads (at most 139 bytes; see `Session::receive`): rare, so out of line.
    Open {
        session: Session,
        tail: Option<Box<Vec<u8>>>,
    },
    /// Our last bytes are queued: once sent, the write side is shut and input drained until the peer
    /// closes or the linger deadline passes (a clean close instead of a reset).
    Flushing,
    /// Write side shut; reading until EOF.
    Lingering,
    /// Operations cancelled; the descriptor is closed (and the slot freed) when the last one has completed.
    Releasing,
}

/// One connection. Size matters (hundreds of thousands per box): checked in tests.
#[derive(Debug, Default)]
pub struct Conn {
    pub stage: Stage,
    /// Bytes waiting to be sent, if any.
    pub outbox: Option<Box<Outbox>>,
    /// The peer's address (for logs and per-address limits).
    pub peer: Option<IpAddr>,
    /// Bumped each time the slot is reused; completions carry it, so a stale one is recognised.
    pub generation: u16,
    /// The multishot receive is armed.
    pub recv_armed: bool,
    /// A send is in flight (the outbox's iovecs are in the kernel's hands).
    pub sending: bool,
    /// Listed in the worker's set of connections to flush this loop iteration.
    pub dirty: bool,
    /// The descriptor close was submitted.
    pub close_submitted: bool,
    /// Pinged by the heartbeat since the peer last sent anything (one ping per silence, however often
    /// the sweep passes: on a worker with few connections it passes every slot many times an interval).
    pub pinged: bool,
    /// Shutdown or cancel operations in flight on the slot. The close must wait for them too: the kernel
    /// resolves a fixed slot when the operation runs (a shutdown runs later, on io-wq), so one still
    /// pending when the slot is reused would hit the next connection.
    pub aux_pending: u8,
    /// When data last arrived, in seconds since the worker started (heartbeats and idle timeout).
    pub last_seen_s: u32,
    /// Counted in the process's per-address limiter (released on close).
    pub ip_admitted: bool,
    /// Counted among the worker's WebSocket connections (released on close).
    pub upgraded: bool,
    /// Waiting for the PROXY protocol header (`--proxy-protocol`): the first bytes received are the
    /// header (buffered in `Stage::Handshake::head` while incomplete), then TLS or HTTP.
    pub proxy_pending: bool,
    /// Inbound message rate (8 bytes).
    pub rate: MessageRate,
    /// Who this is, when authentication is on.
    pub auth: Option<Box<ConnAuth>>,
    /// TLS state on a wss:// listener (`outbox` then holds ciphertext, `TlsConn::plain` the frames).
    pub tls: Option<Box<TlsConn>>,
}

/// A TLS connection: the rustls session and the plaintext waiting to be encrypted. Frames queue here
/// (conflation works on them as on a plain connection); once per send they are sealed together into as
/// few records as possible and moved to the connection's outbox as ciphertext.
#[derive(Debug)]
pub struct TlsConn {
    pub session: TlsSession,
    /// Frames waiting to be sealed; like `Conn::outbox`, allocated only while there are some (or while
    /// the slow-consumer clock runs), so an idle connection does not carry an empty queue.
    pub plain: Option<Box<Outbox>>,
    pub handshake_done: bool,
}

impl TlsConn {
    /// Frames are waiting to be sealed.
    pub fn has_plain(&self) -> bool {
        self.plain.as_ref().is_some_and(|p| !p.is_empty())
    }

    /// Drop the plaintext queue if it holds nothing worth keeping (no frames, no slow-consumer clock).
    pub fn release_plain(&mut self) {
        if self
            .plain
            .as_ref()
            .is_some_and(|p| p.is_empty() && p.over_limit_since_ms.is_none())
        {
            self.plain = None;
        }
    }
}

impl Conn {
    /// The outbox (ciphertext on a TLS connection), allocated if there is none.
    pub fn outbox(&mut self) -> &mut Outbox {
        self.outbox.get_or_insert_with(Box::default)
    }

    /// Where frames for the peer queue: the plaintext side of TLS, or the outbox itself.
    pub fn frames(&mut self) -> &mut Outbox {
        match self.tls.as_mut() {
            Some(tls) => tls.plain.get_or_insert_with(Box::default),
            None => self.outbox.get_or_insert_with(Box::default),
        }
    }

    /// Where frames queue, if a queue exists (never allocates one).
    pub fn frames_if_any(&mut self) -> Option<&mut Outbox> {
        match self.tls.as_mut() {
            Some(tls) => tls.plain.as_deref_mut(),
            None => self.outbox.as_deref_mut(),
        }
    }

    /// Bytes waiting in this connection's queues (frames not yet sealed, and the outbox).
    pub fn pending_bytes(&self) -> usize {
        let plain = self
            .tls
            .as_ref()
            .and_then(|t| t.plain.as_ref())
            .map_or(0, |p| p.pending_bytes());
        plain + self.outbox.as_ref().map_or(0, |o| o.pending_bytes())
    }

    /// Encrypt every waiting frame into the outbox, packed into as few records as possible, or fail.
    pub fn seal(&mut self, backlog: &mut Backlog) -> Result<(), TlsFailure> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        let Some(plain) = tls.plain.as_mut().filter(|p| !p.is_empty()) else {
            return Ok(());
        };
        let mut chunks = plain.take_all(backlog);
        // The one copy: frames into `cipher` (the send buffer), encrypted there (TLS 1.3).
        let bytes: usize = chunks.iter().map(|c| c.bytes().len()).sum();
        let mut cipher = Vec::with_capacity(bytes + bytes.div_ceil(16 * 1024) * 22);
        let sealed = tls
            .session
            .encrypt_chunks(chunks.iter().map(Chunk::bytes), &mut cipher);
        chunks.clear();
        // With no outbox (the usual case: the last send is done) the emptied plaintext queue becomes
        // the outbox, its queue's allocation with it: no box or queue freed here and allocated again
        // (the outbox is dropped once sent, as always). One with a slow-consumer clock stays.
        let idle = plain.over_limit_since_ms.is_none() && plain.slow_timer_ms.is_none();
        match tls.plain.take() {
            Some(mut reused) if idle && self.outbox.is_none() => {
                reused.restore_queue(chunks);
                self.outbox = Some(reused);
            }
            kept => {
                tls.plain = kept;
                tls.release_plain();
            }
        }
        sealed?;
        self.outbox().push_owned(cipher, backlog);
        Ok(())
    }

    /// Drop every queued byte (the connection is gone): the plaintext queue and the outbox.
    pub fn discard_queues(&mut self, backlog: &mut Backlog) {
        if let Some(mut outbox) = self.outbox.take() {
            outbox.discard(backlog);
        }
        if let Some(mut plain) = self.tls.as_mut().and_then(|t| t.plain.take()) {
            plain.discard(backlog);
        }
    }
}

/// The identity of an authenticated connection and its expiry plan (worker milliseconds).
#[derive(Debug)]
pub struct ConnAuth {
    pub identity: Identity,
    pub warn_at_ms: u64,
    pub close_at_ms: u64,
    pub warned: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connection_is_small() {
        // An idle open connection costs its slot only; keep it well under the 256-byte budget.
        let size = size_of::<Conn>();
        assert!(size <= 136, "Conn is {size} bytes");
    }

    #[test]
    fn tls_state_fits_mimallocs_192_byte_class() {
        // Box<TlsConn> is 192 B since TLS 1.3 connections run on our record layer (176 B inline);
        // it was 1,168 B with rustls inline. Past 192 the allocator's next class costs every idle wss
        // connection more (docs/tls.md, "Memory per idle wss connection").
        let size = size_of::<TlsConn>();
        assert!(size <= 192, "TlsConn is {size} bytes");
    }
}
