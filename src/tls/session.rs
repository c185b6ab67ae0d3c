//! One TLS connection, sans IO: ciphertext in, plaintext and records to send out.
//!
//! rustls runs the handshake ([`RustlsConn`]); a TLS 1.3 connection then moves to our record layer
//! ([`RecordLayer`]), which holds its keys and little else. TLS 1.2 connections stay with rustls.

use std::sync::Arc;

use rustls::{ProtocolVersion, ServerConfig};

use super::error::{RecordError, TlsError, TlsFailure};
use super::record::RecordLayer;
use super::rustls_conn::RustlsConn;

/// Where the connection is.
#[derive(Debug)]
enum Phase {
    /// Handshake (every connection), and TLS 1.2 for its whole life: rustls.
    Rustls(Box<RustlsConn>),
    /// TLS 1.3 after the handshake: our record layer.
    Records(RecordLayer),
    /// A fatal error was reported (and its alert written): later bytes are ignored while the
    /// connection ends. The keys are gone.
    Failed,
}

/// The server side of one TLS connection.
///
/// Call [`receive`](Self::receive) with every received chunk and send whatever it appended to
/// `out`; pass all outgoing application bytes through [`encrypt`](Self::encrypt) or
/// [`encrypt_vectored`](Self::encrypt_vectored). After any [`TlsFailure`] send `out`, then close:
/// the session is finished.
///
/// The session holds no buffers while idle: received ciphertext is kept only while it ends in a
/// partial record (or a handshake message still being joined), and records to send go straight into
/// the caller's `out` (docs/tls.md, memory).
#[derive(Debug)]
pub struct TlsSession {
    phase: Phase,
    /// Kept from the handshake for [`resumed`](Self::resumed) and [`alpn`](Self::alpn) once rustls
    /// is gone.
    resumed: bool,
    alpn_http11: bool,
}

impl TlsSession {
    /// A session for one new connection using `config` (from [`super::TlsAcceptor`] or
    /// [`super::WorkerTls`]). The configuration must allow secret extraction
    /// (`enable_secret_extraction`, set by [`super::TlsAcceptor`]) for TLS 1.3 connections to move
    /// to the record layer; without it they stay with rustls.
    pub fn new(config: Arc<ServerConfig>) -> Result<TlsSession, TlsError> {
        Ok(TlsSession {
            phase: Phase::Rustls(Box::new(RustlsConn::new(config)?)),
            resumed: false,
            alpn_http11: false,
        })
    }

    /// Feeds received bytes: appends decrypted application data to `plaintext` and TLS records
    /// to send (handshake messages, session tickets, key updates, alerts) to `out`.
    ///
    /// On a failure, `out` already holds what should go out before closing: a TLS alert, or for
    /// [`TlsFailure::PlaintextOnTlsPort`] the [`super::plaintext_rejection`] response.
    pub fn receive(
        &mut self,
        ciphertext: &[u8],
        plaintext: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), TlsFailure> {
        let result = match &mut self.phase {
            Phase::Rustls(conn) => {
                let result = conn.receive(ciphertext, plaintext, out);
                if result.is_ok() && conn.ready_for_records() {
                    return self.switch_to_records(plaintext, out);
                }
                return result;
            }
            Phase::Records(records) => records.receive(ciphertext, plaintext, out).map(drop),
            Phase::Failed => return Ok(()),
        };
        if result.is_err() {
            self.phase = Phase::Failed;
        }
        result
    }

    /// The handshake is done on TLS 1.3: rustls hands over its keys and is dropped.
    fn switch_to_records(
        &mut self,
        plaintext: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), TlsFailure> {
        let Phase::Rustls(conn) = std::mem::replace(&mut self.phase, Phase::Failed) else {
            return Ok(());
        };
        self.resumed = conn.resumed();
        self.alpn_http11 = conn.alpn().is_some();
        let mut records = conn.into_records()?;
        // Bytes rustls had not read (normally none, or the start of a record): open what is complete.
        let result = records.receive(&[], plaintext, out);
        if result.is_ok() {
            self.phase = Phase::Records(records);
        }
        result.map(drop)
    }

    /// Encrypts `plaintext` and appends the records to `out`. Any size works. Before the handshake
    /// allows application data the plaintext is kept and sent once it does.
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), TlsFailure> {
        self.encrypt_vectored(&[plaintext], out)
    }

    /// Encrypts several chunks as one stream (e.g. every frame queued for a connection since its
    /// last send) and appends the records to `out`. Small chunks share records: one record header,
    /// tag and AEAD call for many frames instead of one per frame (TLS 1.3: each byte is copied
    /// once, into `out`, and encrypted there).
    pub fn encrypt_vectored(
        &mut self,
        chunks: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(), TlsFailure> {
        self.encrypt_chunks(chunks.iter().copied(), out)
    }

    /// [`encrypt_vectored`](Self::encrypt_vectored) over any (cloneable) iterator of chunks, so a
    /// caller with its own queue type builds no slice list (TLS 1.3: no allocation but `out`'s).
    pub fn encrypt_chunks<'a, I>(&mut self, chunks: I, out: &mut Vec<u8>) -> Result<(), TlsFailure>
    where
        I: Iterator<Item = &'a [u8]> + Clone,
    {
        let result = match &mut self.phase {
            Phase::Rustls(conn) => {
                let slices: Vec<&[u8]> = chunks.collect();
                return conn.encrypt_vectored(&slices, out);
            }
            Phase::Records(records) => records.seal(chunks, out).map_err(TlsFailure::from),
            Phase::Failed => Ok(()),
        };
        if result.is_err() {
            self.phase = Phase::Failed;
        }
        result
    }

    /// Appends a `close_notify` alert to `out` (nothing before the handshake has completed).
    pub fn send_close_notify(&mut self, out: &mut Vec<u8>) {
        match &mut self.phase {
            Phase::Rustls(conn) => conn.send_close_notify(out),
            Phase::Records(records) => {
                if records.close_notify(out).is_err() {
                    self.phase = Phase::Failed;
                }
            }
            Phase::Failed => {}
        }
    }

    /// True until the handshake completes (no application data can flow yet).
    pub fn is_handshaking(&self) -> bool {
        match &self.phase {
            Phase::Rustls(conn) => conn.is_handshaking(),
            _ => false,
        }
    }

    /// The negotiated ALPN protocol (`Some(b"http/1.1")`, or `None` when the client offered none).
    pub fn alpn(&self) -> Option<&[u8]> {
        match &self.phase {
            Phase::Rustls(conn) => conn.alpn(),
            _ => self.alpn_http11.then_some(super::ALPN_HTTP_1_1),
        }
    }

    /// The negotiated TLS version, once known.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        match &self.phase {
            Phase::Rustls(conn) => conn.protocol_version(),
            Phase::Records(_) => Some(ProtocolVersion::TLSv1_3),
            Phase::Failed => None,
        }
    }

    /// True when this handshake resumed an earlier session (ticket or session ID).
    pub fn resumed(&self) -> bool {
        match &self.phase {
            Phase::Rustls(conn) => conn.resumed(),
            _ => self.resumed,
        }
    }

    /// True once the peer sent `close_notify`: it will send nothing more.
    pub fn peer_closed(&self) -> bool {
        match &self.phase {
            Phase::Rustls(conn) => conn.peer_closed(),
            Phase::Records(records) => records.peer_closed(),
            Phase::Failed => false,
        }
    }

    /// True once a TLS 1.3 connection runs on our record layer (rustls dropped).
    pub fn on_record_layer(&self) -> bool {
        matches!(self.phase, Phase::Records(_))
    }
}

impl From<RecordError> for TlsFailure {
    fn from(e: RecordError) -> TlsFailure {
        TlsFailure::Record(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_is_small() {
        // Inline in every wss connection's `Box<TlsConn>`: the record layer, or a box while rustls runs.
        let size = size_of::<TlsSession>();
        assert!(size <= 200, "TlsSession is {size} bytes");
    }
}
