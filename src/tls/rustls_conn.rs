//! One TLS connection driven by rustls, sans IO: the handshake of every connection, and all of a
//! TLS 1.2 connection (a TLS 1.3 one moves to our record layer once its handshake is done: `session.rs`).

use std::sync::{Arc, OnceLock};

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, UnbufferedStatus, WriteTraffic,
};
use rustls::{AlertDescription, HandshakeKind, PeerIncompatible, ProtocolVersion, ServerConfig};

use super::error::{RecordError, TlsError, TlsFailure};
use super::keylog::{self, Caught};
use super::record::RecordLayer;
use crate::protocol::response::Head;

/// Append every decrypted record of a `ReadTraffic` / `ReadEarlyData` state to `plaintext`, adding what
/// each lets the caller discard; the first error stops. (Two rustls types with the same `next_record`.)
macro_rules! read_records {
    ($read:ident, $plaintext:ident, $discard:ident) => {{
        let mut step = Ok(None);
        while let Some(record) = $read.next_record() {
            match record {
                Ok(record) => {
                    $plaintext.extend_from_slice(record.payload);
                    $discard += record.discard;
                }
                Err(e) => {
                    step = Err(e);
                    break;
                }
            }
        }
        step
    }};
}

/// The complete response to plain HTTP on the TLS port (see [`TlsFailure::PlaintextOnTlsPort`]),
/// written once by the one HTTP response writer (`protocol::response`).
pub fn plaintext_rejection() -> &'static [u8] {
    static REJECTION: OnceLock<Vec<u8>> = OnceLock::new();
    REJECTION.get_or_init(|| {
        let mut out = Vec::new();
        Head::new(400, &mut out)
            .header("Content-Type", "text/plain; charset=utf-8")
            .length(PLAINTEXT_BODY.len())
            .close()
            .end_with(PLAINTEXT_BODY);
        out
    })
}

const PLAINTEXT_BODY: &[u8] = b"this port speaks TLS (wss://)\n";

/// Bytes of a ClientHello needed to read its legacy version: record header (5), handshake type
/// (1), handshake length (3), client_version (2).
const HELLO_PREFIX: usize = 11;

/// Small frames are copied together (into one contiguous piece, as rustls encrypts one slice at a
/// time) up to this size; a larger frame is encrypted where it is.
const ENCRYPT_STEP: usize = 64 * 1024;

/// Payload bytes per TLS record (rustls' default maximum fragment size).
const RECORD_PAYLOAD: usize = 16 * 1024;

/// More than any suite's per-record overhead (TLS 1.3: header 5, content type 1, tag 16; TLS 1.2
/// AES-GCM: header 5, explicit nonce 8, tag 16).
const RECORD_OVERHEAD: usize = 32;

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
///
/// Built on rustls' unbuffered API, so the session holds no buffers of its own while idle: received
/// ciphertext is kept only while it ends in a partial record (or a handshake message rustls is still
/// joining), and records to send go straight into the caller's `out` (docs/tls.md, memory).
pub struct RustlsConn {
    conn: UnbufferedServerConnection,
    /// Received ciphertext rustls has not consumed yet: empty (no allocation) between records.
    incoming: Vec<u8>,
    /// Plaintext given to `encrypt` before the handshake allows application data; sent as soon as it
    /// does. Empty (no allocation) in normal use.
    unsent: Vec<u8>,
    sniff: Sniff,
    peer_closed: bool,
    /// A fatal error was reported (and its alert written): rustls must not be fed again (it would try
    /// to send a second fatal alert), so later bytes are ignored while the connection ends.
    failed: bool,
    /// The application traffic secrets, from the call that derived them until the hand-over to the
    /// record layer (`keylog.rs`).
    caught: Option<Box<Caught>>,
}

impl std::fmt::Debug for RustlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RustlsConn")
            .field("handshaking", &self.conn.is_handshaking())
            .field("version", &self.conn.protocol_version())
            .field("incoming", &self.incoming.len())
            .field("unsent", &self.unsent.len())
            .field("sniff", &self.sniff)
            .field("peer_closed", &self.peer_closed)
            .finish_non_exhaustive()
    }
}

impl RustlsConn {
    /// A session for one new connection using `config` (from [`super::TlsAcceptor`] or
    /// [`super::WorkerTls`]).
    pub fn new(config: Arc<ServerConfig>) -> Result<RustlsConn, TlsError> {
        let conn = UnbufferedServerConnection::new(config).map_err(TlsError::Config)?;
        Ok(RustlsConn {
            conn,
            incoming: Vec::new(),
            unsent: Vec::new(),
            sniff: Sniff::Pending {
                seen: [0; HELLO_PREFIX],
                len: 0,
            },
            peer_closed: false,
            failed: false,
            caught: None,
        })
    }

    /// Feeds received bytes: appends decrypted application data to `plaintext` and TLS records
    /// to send (handshake messages, session tickets, alerts) to `out`.
    ///
    /// On a failure, `out` already holds what should go out before closing: a TLS alert, or for
    /// [`TlsFailure::PlaintextOnTlsPort`] the [`plaintext_rejection`] response.
    pub fn receive(
        &mut self,
        ciphertext: &[u8],
        plaintext: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), TlsFailure> {
        if let Err(failure) = self.sniff(ciphertext) {
            match &failure {
                TlsFailure::PlaintextOnTlsPort => out.extend_from_slice(plaintext_rejection()),
                _ => out.extend_from_slice(&self.protocol_version_alert()),
            }
            return Err(failure);
        }
        if self.peer_closed || self.failed {
            // After close_notify the peer sends nothing more, and after a fatal error the connection
            // is ending: anything that still comes is ignored.
            return Ok(());
        }
        self.incoming.extend_from_slice(ciphertext);
        // On an error `drive_to` has set `failed` and freed `incoming` already.
        let result = self.drive(plaintext, out, &[]).map(drop);
        if self.peer_closed {
            self.incoming = Vec::new();
        }
        result
    }

    /// Encrypts `plaintext` and appends the records to `out`. Any size works. Before the handshake
    /// allows application data the plaintext is kept and sent once it does.
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), TlsFailure> {
        let mut read = Vec::new();
        let result = self.drive(&mut read, out, plaintext);
        debug_assert!(
            read.is_empty(),
            "every received record is read in `receive`"
        );
        result.map(drop)
    }

    /// Encrypts several chunks as one stream (e.g. every frame queued for a connection since its
    /// last send) and appends the records to `out`. Small chunks share records: one record header,
    /// tag and AEAD call for many frames instead of one per frame.
    pub fn encrypt_vectored(
        &mut self,
        chunks: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(), TlsFailure> {
        if let [single] = chunks {
            return self.encrypt(single, out);
        }
        let mut group: Vec<u8> = Vec::new();
        for chunk in chunks {
            if chunk.len() >= ENCRYPT_STEP {
                self.encrypt_group(&mut group, out)?;
                self.encrypt(chunk, out)?;
                continue;
            }
            if group.is_empty() {
                let total: usize = chunks.iter().map(|c| c.len()).sum();
                group.reserve_exact(total.min(ENCRYPT_STEP + chunk.len()));
            }
            group.extend_from_slice(chunk);
            if group.len() >= ENCRYPT_STEP {
                self.encrypt_group(&mut group, out)?;
            }
        }
        self.encrypt_group(&mut group, out)
    }

    /// Appends a `close_notify` alert to `out` (nothing before the handshake has completed).
    pub fn send_close_notify(&mut self, out: &mut Vec<u8>) {
        let mut read = Vec::new();
        let _ = self.drive_to(&mut read, out, |write, out| {
            append_sized(out, RECORD_OVERHEAD, |room| write.queue_close_notify(room))
        });
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

    /// True once the peer sent `close_notify`: it will send nothing more.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// A TLS 1.3 connection whose handshake is done (tickets sent) with nothing pending: ready for
    /// [`into_records`](Self::into_records).
    pub fn ready_for_records(&self) -> bool {
        !self.failed
            && !self.peer_closed
            && !self.conn.is_handshaking()
            && self.conn.protocol_version() == Some(ProtocolVersion::TLSv1_3)
            && self.unsent.is_empty()
    }

    /// Hands the connection over to our record layer: rustls' keys, sequence numbers and key
    /// schedule, and the received bytes rustls has not read yet.
    pub fn into_records(self) -> Result<RecordLayer, RecordError> {
        let (secrets, kernel) = self
            .conn
            .dangerous_into_kernel_connection()
            .map_err(|_| RecordError::Internal)?;
        RecordLayer::new(secrets, kernel, self.caught, self.incoming)
    }

    /// Runs rustls until it waits for input, then encrypts `send` (after anything kept in `unsent`)
    /// into `out` if application data may flow, else keeps it in `unsent`.
    fn drive(
        &mut self,
        plaintext: &mut Vec<u8>,
        out: &mut Vec<u8>,
        send: &[u8],
    ) -> Result<bool, TlsFailure> {
        if send.is_empty() && self.unsent.is_empty() {
            return self.drive_to(plaintext, out, |_, _| Ok(()));
        }
        let mut unsent = std::mem::take(&mut self.unsent);
        let sent = self.drive_to(plaintext, out, |write, out| {
            if !unsent.is_empty() {
                seal(write, &unsent, out)?;
                unsent = Vec::new();
            }
            seal(write, send, out)
        });
        // Kept only while the handshake is under way; after a close nothing more is sent.
        if let Ok(false) = sent
            && self.conn.is_handshaking()
        {
            unsent.extend_from_slice(send);
        }
        self.unsent = unsent;
        sent
    }

    /// Runs rustls over the received ciphertext until it needs more: decrypted application data is
    /// appended to `plaintext`, records rustls wants sent (handshake, tickets, key updates, alerts)
    /// to `out`. Then, if application data may be sent, calls `write` (true), else not (false).
    /// Consumed ciphertext is dropped, and the buffer freed once it is empty.
    fn drive_to(
        &mut self,
        plaintext: &mut Vec<u8>,
        out: &mut Vec<u8>,
        write: impl FnOnce(
            &mut WriteTraffic<'_, ServerConnectionData>,
            &mut Vec<u8>,
        ) -> Result<(), rustls::Error>,
    ) -> Result<bool, TlsFailure> {
        if self.failed {
            // The fatal alert is out; rustls is not driven again (nothing more is read or sent).
            return Ok(false);
        }
        let mut write = Some(write);
        let mut consumed = 0;
        let result = loop {
            let UnbufferedStatus { discard, state } = self
                .conn
                .process_tls_records(&mut self.incoming[consumed..]);
            let mut discard = discard;
            let step = match state {
                Err(e) => Err(e),
                Ok(ConnectionState::ReadTraffic(mut read)) => {
                    read_records!(read, plaintext, discard)
                }
                Ok(ConnectionState::ReadEarlyData(mut read)) => {
                    // Never offered (max_early_data_size 0); read like application data all the same.
                    read_records!(read, plaintext, discard)
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    let start = out.len();
                    let mut need = 0;
                    loop {
                        out.resize(start + need, 0);
                        match encode.encode(&mut out[start..]) {
                            Ok(n) => {
                                out.truncate(start + n);
                                break Ok(None);
                            }
                            Err(EncodeError::InsufficientSize(e)) if e.required_size > need => {
                                need = e.required_size;
                            }
                            Err(e) => {
                                out.truncate(start);
                                break Err(rustls::Error::General(e.to_string()));
                            }
                        }
                    }
                }
                // What was encoded is in `out`, which the caller sends.
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    Ok(None)
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    Ok(None)
                }
                Ok(ConnectionState::WriteTraffic(mut traffic)) => match write.take() {
                    Some(write) => write(&mut traffic, out).map(|()| Some(true)),
                    None => Ok(Some(true)),
                },
                Ok(ConnectionState::Closed) => {
                    self.peer_closed = true;
                    Ok(Some(false))
                }
                // BlockedHandshake (needs more input), or a state this version does not know.
                Ok(_) => Ok(Some(false)),
            };
            consumed += discard;
            match step {
                Ok(None) => {}
                Ok(Some(done)) => break Ok(done),
                Err(e) => break Err(e),
            }
        };
        // The secrets a handshake step derived in this call, and only in it (`keylog.rs`).
        if let Some(caught) = keylog::take() {
            self.caught = Some(caught);
        }
        self.incoming.drain(..consumed);
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        } else if self.incoming.capacity() > 2 * self.incoming.len() + 4096 {
            self.incoming.shrink_to_fit();
        }
        result.map_err(|e| {
            let failure = self.classify(e);
            self.flush_alert(out);
            self.failed = true;
            self.incoming = Vec::new();
            failure
        })
    }

    /// After an error: appends the alert rustls queued (if any) to `out`. A failed handshake's
    /// secrets are dropped (nothing derived in these calls is left for another connection either).
    fn flush_alert(&mut self, out: &mut Vec<u8>) {
        self.encode_queued_alert(out);
        self.caught = None;
        drop(keylog::take());
    }

    fn encode_queued_alert(&mut self, out: &mut Vec<u8>) {
        // Each round either encodes a queued record or reports a resting state; a few suffice.
        for _ in 0..8 {
            match self.conn.process_tls_records(&mut []).state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    let start = out.len();
                    let need = match encode.encode(&mut []) {
                        Err(EncodeError::InsufficientSize(e)) => e.required_size,
                        _ => continue,
                    };
                    out.resize(start + need, 0);
                    match encode.encode(&mut out[start..]) {
                        Ok(n) => out.truncate(start + n),
                        Err(_) => out.truncate(start),
                    }
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                _ => return,
            }
        }
    }

    /// Encrypts `group` (at most about [`ENCRYPT_STEP`] bytes) into `out` and empties it.
    fn encrypt_group(&mut self, group: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<(), TlsFailure> {
        if group.is_empty() {
            return Ok(());
        }
        let result = self.encrypt(group, out);
        group.clear();
        result
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
}

/// Encrypts `plaintext` into records appended to `out`.
fn seal(
    write: &mut WriteTraffic<'_, ServerConnectionData>,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    if plaintext.is_empty() {
        return Ok(());
    }
    let need = plaintext.len() + (plaintext.len() / RECORD_PAYLOAD + 1) * RECORD_OVERHEAD;
    append_sized(out, need, |room| write.encrypt(plaintext, room))
}

/// Append what `write` produces to `out`, giving it `need` bytes of room first and more when rustls
/// says that was too little (records it had queued, e.g. a key update, go out first and may not fit
/// an estimate).
fn append_sized(
    out: &mut Vec<u8>,
    mut need: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), rustls::Error> {
    let start = out.len();
    loop {
        out.resize(start + need, 0);
        match write(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(e)) if e.required_size > need => {
                need = e.required_size;
            }
            Err(e) => {
                out.truncate(start);
                return Err(rustls::Error::General(e.to_string()));
            }
        }
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
    fn rejection_bytes_are_exact() {
        assert_eq!(
            plaintext_rejection(),
            b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 30\r\n\
Connection: close\r\n\
\r\n\
this port speaks TLS (wss://)\n"
        );
    }

    #[test]
    fn version_names_in_messages() {
        let f = TlsFailure::ProtocolVersion {
            offered: Some(0x0302),
        };
        assert!(f.to_string().contains("TLS 1.1"), "{f}");
    }
}
