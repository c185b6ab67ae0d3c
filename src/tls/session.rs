//! One TLS connection, sans IO: ciphertext in, plaintext and records to send out.

use std::io::{IoSlice, Read, Write};
use std::sync::Arc;

use rustls::{
    AlertDescription, HandshakeKind, PeerIncompatible, ProtocolVersion, ServerConfig,
    ServerConnection,
};

use super::error::{TlsError, TlsFailure};

/// The complete response to plain HTTP on the TLS port (see [`TlsFailure::PlaintextOnTlsPort`]).
pub fn plaintext_rejection() -> &'static [u8] {
    PLAINTEXT_REJECTION
}

const PLAINTEXT_REJECTION: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 30\r\n\
Connection: close\r\n\
\r\n\
this port speaks TLS (wss://)\n";

/// Bytes of a ClientHello needed to read its legacy version: record header (5), handshake type
/// (1), handshake length (3), client_version (2).
const HELLO_PREFIX: usize = 11;

/// Plaintext is handed to rustls in pieces of this size, so its send buffer stays small.
const ENCRYPT_STEP: usize = 64 * 1024;

/// What the first bytes of the connection said, before rustls sees them.
#[derive(Debug)]
enum Sniff {
    /// Fewer than [`HELLO_PREFIX`] bytes seen so far; these are copies (rustls gets them too).
    Pending { seen: [u8; HELLO_PREFIX], len: u8 },
    /// Looked at, and left to rustls from now on.
    Done,
}

/// The server side of one TLS connection.
///
/// Call [`receive`](Self::receive) with every received chunk and send whatever it appended to
/// `out`; pass all outgoing application bytes through [`encrypt`](Self::encrypt). After any
/// [`TlsFailure`] send `out`, then close: the session is finished.
#[derive(Debug)]
pub struct TlsSession {
    conn: ServerConnection,
    sniff: Sniff,
    peer_closed: bool,
}

impl TlsSession {
    /// A session for one new connection using `config` (from [`super::TlsAcceptor`] or
    /// [`super::WorkerTls`]).
    pub fn new(config: Arc<ServerConfig>) -> Result<TlsSession, TlsError> {
        let mut conn = ServerConnection::new(config).map_err(TlsError::Config)?;
        // `encrypt` feeds rustls at most ENCRYPT_STEP bytes at a time and drains it right away,
        // so its own limit would only make writes before the handshake ends fail.
        conn.set_buffer_limit(None);
        Ok(TlsSession {
            conn,
            sniff: Sniff::Pending {
                seen: [0; HELLO_PREFIX],
                len: 0,
            },
            peer_closed: false,
        })
    }

    /// Feeds received bytes: appends decrypted application data to `plaintext` and TLS records
    /// to send (handshake messages, session tickets, alerts) to `out`.
    ///
    /// On a failure, `out` already holds what should go out before closing: a TLS alert, or for
    /// [`TlsFailure::PlaintextOnTlsPort`] the [`plaintext_rejection`] response.
    pub fn receive(
        &mut self,
        mut ciphertext: &[u8],
        plaintext: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), TlsFailure> {
        if let Err(failure) = self.sniff(ciphertext) {
            match &failure {
                TlsFailure::PlaintextOnTlsPort => out.extend_from_slice(PLAINTEXT_REJECTION),
                _ => out.extend_from_slice(&self.protocol_version_alert()),
            }
            return Err(failure);
        }
        let result = self.pump(&mut ciphertext, plaintext);
        self.flush(out);
        result
    }

    /// Encrypts `plaintext` and appends the records to `out`. Any size works: rustls gets
    /// [`ENCRYPT_STEP`] bytes at a time, so only `out` grows with the input. Before the handshake
    /// completes rustls keeps the plaintext and sends it once it can.
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), TlsFailure> {
        for piece in plaintext.chunks(ENCRYPT_STEP) {
            let written = self.conn.writer().write_all(piece);
            self.flush(out);
            written.map_err(|e| self.io_failure(e))?;
        }
        Ok(())
    }

    /// Encrypts several chunks as one stream (e.g. every frame queued for a connection since its
    /// last send) and appends the records to `out`. Small chunks share records: one record header,
    /// tag and AEAD call for many frames instead of one per frame.
    pub fn encrypt_vectored(
        &mut self,
        chunks: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(), TlsFailure> {
        let mut group: Vec<IoSlice<'_>> = Vec::new();
        let mut group_len = 0;
        for chunk in chunks {
            if chunk.len() >= ENCRYPT_STEP {
                self.encrypt_group(&mut group, out)?;
                group_len = 0;
                self.encrypt(chunk, out)?;
                continue;
            }
            group.push(IoSlice::new(chunk));
            group_len += chunk.len();
            if group_len >= ENCRYPT_STEP {
                self.encrypt_group(&mut group, out)?;
                group_len = 0;
            }
        }
        self.encrypt_group(&mut group, out)
    }

    /// Queues a `close_notify` alert and appends it to `out`.
    pub fn send_close_notify(&mut self, out: &mut Vec<u8>) {
        self.conn.send_close_notify();
        self.flush(out);
    }

    /// True until the handshake completes (no application data can flow yet).
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The negotiated ALPN protocol (`Some(b"http/1.1")`, or `None` when the client offered none).
    pub fn alpn(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// The negotiated TLS version, once known.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// True when this handshake resumed an earlier session (ticket or session ID).
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    /// The SNI host name the client sent, if any (for logs).
    pub fn server_name(&self) -> Option<&str> {
        self.conn.server_name()
    }

    /// True once the peer sent `close_notify`: it will send nothing more.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Reads from `ciphertext` until it is consumed, decrypting as it goes.
    fn pump(&mut self, ciphertext: &mut &[u8], plaintext: &mut Vec<u8>) -> Result<(), TlsFailure> {
        loop {
            let read = if ciphertext.is_empty() {
                0
            } else {
                // Reads at most one buffer's worth (4 KiB or one record); loop for the rest.
                // Ok(0) with bytes left: the peer already sent close_notify; the rest is ignored.
                self.conn
                    .read_tls(ciphertext)
                    .map_err(|e| self.io_failure(e))?
            };
            let state = self
                .conn
                .process_new_packets()
                .map_err(|e| self.classify(e))?;
            let available = state.plaintext_bytes_to_read();
            self.peer_closed |= state.peer_has_closed();
            if available > 0 {
                let start = plaintext.len();
                plaintext.resize(start + available, 0);
                if let Err(e) = self.conn.reader().read_exact(&mut plaintext[start..]) {
                    plaintext.truncate(start);
                    return Err(self.io_failure(e));
                }
            }
            if read == 0 && available == 0 {
                return Ok(());
            }
        }
    }

    /// Encrypts `group` (at most about [`ENCRYPT_STEP`] bytes) into `out` and empties it.
    fn encrypt_group(
        &mut self,
        group: &mut Vec<IoSlice<'_>>,
        out: &mut Vec<u8>,
    ) -> Result<(), TlsFailure> {
        let mut rest = &mut group[..];
        while !rest.is_empty() {
            // No buffer limit (see `new`): rustls takes everything in one call.
            let written = self.conn.writer().write_vectored(rest);
            match written {
                Ok(0) => return Err(self.io_failure(std::io::ErrorKind::WriteZero.into())),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) => return Err(self.io_failure(e)),
            }
        }
        self.flush(out);
        group.clear();
        Ok(())
    }

    /// Moves every pending TLS record into `out`.
    fn flush(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail; stop on Ok(0) all the same.
            match self.conn.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Checks the first bytes of the connection for plain HTTP and for a TLS ≤ 1.1 ClientHello.
    ///
    /// rustls would answer a TLS 1.0 ClientHello (which has no signature_algorithms extension)
    /// with `handshake_failure`; this answers `protocol_version`, which is what it is.
    fn sniff(&mut self, data: &[u8]) -> Result<(), TlsFailure> {
        let Sniff::Pending { seen, len } = &mut self.sniff else {
            return Ok(());
        };
        let have = usize::from(*len);
        let take = (HELLO_PREFIX - have).min(data.len());
        seen[have..have + take].copy_from_slice(&data[..take]);
        let have = have + take;
        *len = have as u8;
        let seen = &seen[..have];
        match seen.first() {
            None => return Ok(()),
            // Every HTTP method starts with an upper-case letter; TLS records with 0x14..=0x18.
            Some(b) if b.is_ascii_uppercase() => return Err(TlsFailure::PlaintextOnTlsPort),
            Some(0x16) if have < HELLO_PREFIX => return Ok(()),
            Some(0x16) if seen[5] == 0x01 => {
                let offered = u16::from_be_bytes([seen[9], seen[10]]);
                if (0x0300..0x0303).contains(&offered) {
                    // Stays Pending: `protocol_version_alert` echoes the record version.
                    return Err(TlsFailure::ProtocolVersion {
                        offered: Some(offered),
                    });
                }
            }
            Some(_) => {}
        }
        self.sniff = Sniff::Done;
        Ok(())
    }

    /// A fatal `protocol_version` alert record, in the record version the client used.
    fn protocol_version_alert(&self) -> [u8; 7] {
        let version = match &self.sniff {
            Sniff::Pending { seen, len } if *len >= 3 && seen[1] == 0x03 => [0x03, seen[2]],
            _ => [0x03, 0x01],
        };
        let (level_fatal, protocol_version) = (2, u8::from(AlertDescription::ProtocolVersion));
        [
            0x15,
            version[0],
            version[1],
            0,
            2,
            level_fatal,
            protocol_version,
        ]
    }

    fn classify(&self, e: rustls::Error) -> TlsFailure {
        match e {
            rustls::Error::AlertReceived(alert) => TlsFailure::Peer(alert),
            rustls::Error::PeerIncompatible(
                PeerIncompatible::Tls12NotOffered
                | PeerIncompatible::Tls12NotOfferedOrEnabled
                | PeerIncompatible::SupportedVersionsExtensionRequired,
            ) => TlsFailure::ProtocolVersion { offered: None },
            e if self.conn.is_handshaking() => TlsFailure::Handshake(e),
            e => TlsFailure::Connection(e),
        }
    }

    fn io_failure(&self, e: std::io::Error) -> TlsFailure {
        self.classify(rustls::Error::General(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_content_length_matches_body() {
        let text = std::str::from_utf8(plaintext_rejection()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 "));
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(body.contains("this port speaks TLS (wss://)"));
    }

    #[test]
    fn version_names_in_messages() {
        let f = TlsFailure::ProtocolVersion {
            offered: Some(0x0302),
        };
        assert!(f.to_string().contains("TLS 1.1"), "{f}");
    }
}
