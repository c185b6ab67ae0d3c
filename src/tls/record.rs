//! The TLS 1.3 record layer after the handshake, sans IO: our own, so an idle connection holds two
//! keys and little else (docs/tls.md, "Memory per idle wss connection").
//!
//! rustls runs the handshake ([`super::TlsSession`]); once it is done (and the session tickets are
//! out) the session is turned into rustls' kernel-TLS form (`dangerous_into_kernel_connection`):
//! the traffic keys, IVs and sequence numbers of both directions, and a [`KernelConnection`] that
//! derives the next keys on a KeyUpdate. That key schedule is dropped when the two application
//! traffic secrets were caught during the handshake (`keylog.rs`) and check out against rustls' IVs:
//! the next keys then come from the secrets (`record_keys::Secrets`, 97 B instead of 784 B held per
//! connection). From then on [`RecordLayer`] seals and opens records with aws-lc-rs (the AEAD rustls
//! used), per RFC 8446 §5:
//!
//! - sealing: all the plaintext given in one call is packed into as few records as possible (up to
//!   16 KiB each), written straight into the caller's send buffer (one copy, encrypted in place);
//! - the sending key is an aws-lc context (built once); the receiving key is kept as raw bytes and
//!   its context built per [`RecordLayer::receive`] call (clients send little: a context per call
//!   costs ~0.23 µs and saves ~600 B of C heap per idle connection);
//! - received records: application data → plaintext; `close_notify` → closed; any other alert →
//!   [`TlsFailure::Peer`]; KeyUpdate → the receiving key is replaced (and ours too, with a
//!   KeyUpdate sent first, when the peer asks); any other handshake message, or anything malformed,
//!   → a [`RecordError`] whose alert is already sealed into `out`;
//! - before the sending sequence number reaches the AEAD's confidentiality limit we send a
//!   KeyUpdate and change keys (rustls did the same).

use aws_lc_rs::aead::{Aad, LessSafeKey, NONCE_LEN};
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{AlertDescription, ExtractedSecrets};
use zeroize::Zeroize;

use super::error::{RecordError, TlsFailure};
use super::keylog::Caught;
use super::record_keys::{Cipher, KeySchedule, RawKey, Secrets, nonce};

/// Record header: type (1), legacy version (2), length (2).
pub const HEADER_LEN: usize = 5;
/// AEAD tag of every TLS 1.3 suite.
pub const TAG_LEN: usize = 16;
/// Plaintext bytes per record (2^14, RFC 8446 §5.1).
pub const MAX_PAYLOAD: usize = 16 * 1024;
/// Bytes a record adds to its payload: header, inner content type, tag.
pub const RECORD_OVERHEAD: usize = HEADER_LEN + 1 + TAG_LEN;
/// Largest ciphertext a record may carry (2^14 + 256, RFC 8446 §5.2).
const MAX_CIPHERTEXT: usize = MAX_PAYLOAD + 256;

const CONTENT_ALERT: u8 = 21;
const CONTENT_HANDSHAKE: u8 = 22;
const CONTENT_APPLICATION_DATA: u8 = 23;
const HANDSHAKE_KEY_UPDATE: u8 = 24;
const ALERT_CLOSE_NOTIFY: u8 = 0;
const ALERT_USER_CANCELED: u8 = 90;

/// Records sealed under one key before we change it with a KeyUpdate: below the AES-GCM
/// confidentiality limit (2^24 records for AES-128-GCM in rustls' aws-lc provider, 2^23 for
/// AES-256-GCM), the same for every suite.
const KEY_UPDATE_AFTER: u64 = 1 << 22;

/// What [`RecordLayer::receive`] found besides plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// The connection goes on.
    Open,
    /// The peer sent `close_notify`: it sends nothing more (later bytes are ignored).
    PeerClosed,
}

/// The sending direction: an aws-lc context, built once.
struct Sealer {
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
}

impl Drop for Sealer {
    fn drop(&mut self) {
        self.iv.zeroize();
    }
}

/// A TLS 1.3 connection after its handshake: keys, sequence numbers and what little else a record
/// layer needs (see the module docs).
pub struct RecordLayer {
    tx: Sealer,
    rx: RawKey,
    rx_seq: u64,
    /// Derives the next traffic keys on a KeyUpdate: the caught secrets (97 B), else rustls' (784 B).
    keys: KeySchedule,
    /// A received record not complete yet: empty (no allocation) between records.
    partial: Vec<u8>,
    /// A handshake message split across records (legal, rare): empty otherwise.
    handshake: Vec<u8>,
    peer_closed: bool,
}

impl std::fmt::Debug for RecordLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordLayer")
            .field("cipher", &self.rx.cipher)
            .field("tx_seq", &self.tx.seq)
            .field("rx_seq", &self.rx_seq)
            .field("partial", &self.partial.len())
            .field("peer_closed", &self.peer_closed)
            .finish_non_exhaustive()
    }
}

impl RecordLayer {
    /// Takes over from rustls: `secrets` and `kernel` from `dangerous_into_kernel_connection` of a
    /// TLS 1.3 connection whose handshake is done and whose records are all sent; `caught`: its
    /// application traffic secrets, if the key log caught them; `partial`: received bytes rustls had
    /// not read (the start of the next record), opened by the next [`receive`](Self::receive).
    pub(super) fn new(
        secrets: ExtractedSecrets,
        kernel: KernelConnection<ServerConnectionData>,
        caught: Option<Box<Caught>>,
        partial: Vec<u8>,
    ) -> Result<RecordLayer, RecordError> {
        let ExtractedSecrets {
            tx: (tx_seq, tx),
            rx: (rx_seq, rx),
        } = secrets;
        let tx = RawKey::from_rustls(&tx)?;
        let rx = RawKey::from_rustls(&rx)?;
        let keys = match caught.and_then(|c| Secrets::matching(c.client(), c.server(), &rx, &tx)) {
            Some(secrets) => KeySchedule::Secrets(Box::new(secrets)),
            None => KeySchedule::Rustls(Box::new(kernel)),
        };
        Ok(RecordLayer {
            tx: Sealer {
                key: tx.context()?,
                iv: tx.iv,
                seq: tx_seq,
            },
            rx,
            rx_seq,
            keys,
            partial,
            handshake: Vec::new(),
            peer_closed: false,
        })
    }

    /// A record layer with fixed traffic secrets instead of a handshake, for fuzzing and tests:
    /// `suite` is the TLS 1.3 cipher suite (0x1301, 0x1302, 0x1303), the secrets are the client's
    /// and the server's application traffic secrets (as long as the suite's hash), and KeyUpdates
    /// step them as RFC 8446 §7.2 says. `rx_seq`, `tx_seq`: the first sequence numbers.
    #[doc(hidden)]
    pub fn with_secrets(
        suite: u16,
        client_secret: &[u8],
        server_secret: &[u8],
        rx_seq: u64,
        tx_seq: u64,
    ) -> Result<RecordLayer, RecordError> {
        let cipher = Cipher::from_suite(suite).ok_or(RecordError::Internal)?;
        let secrets = Secrets::new(cipher, client_secret, server_secret)?;
        let tx = secrets.current(false)?;
        Ok(RecordLayer {
            tx: Sealer {
                key: tx.context()?,
                iv: tx.iv,
                seq: tx_seq,
            },
            rx: secrets.current(true)?,
            rx_seq,
            keys: KeySchedule::Secrets(Box::new(secrets)),
            partial: Vec::new(),
            handshake: Vec::new(),
            peer_closed: false,
        })
    }

    /// True once the peer sent `close_notify`.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Seals `chunks`, as one stream, into application-data records appended to `out`: as few records
    /// as the 16 KiB limit allows, each byte copied once (into `out`) and encrypted there.
    pub fn seal<'a, I>(&mut self, chunks: I, out: &mut Vec<u8>) -> Result<(), RecordError>
    where
        I: Iterator<Item = &'a [u8]> + Clone,
    {
        let total: usize = chunks.clone().map(<[u8]>::len).sum();
        if total == 0 {
            return Ok(());
        }
        out.reserve(total + total.div_ceil(MAX_PAYLOAD) * RECORD_OVERHEAD);
        let mut pieces = chunks.filter(|c| !c.is_empty());
        let mut current: &[u8] = &[];
        let mut left = total;
        while left > 0 {
            self.key_update_if_due(out)?;
            let payload = left.min(MAX_PAYLOAD);
            let start = self.open_record(out, payload);
            let mut need = payload;
            while need > 0 {
                if current.is_empty() {
                    current = pieces.next().unwrap_or_default();
                }
                let take = need.min(current.len());
                out.extend_from_slice(&current[..take]);
                current = &current[take..];
                need -= take;
            }
            left -= payload;
            self.close_record(out, start, CONTENT_APPLICATION_DATA)?;
        }
        Ok(())
    }

    /// Appends a sealed `close_notify` alert to `out`.
    pub fn close_notify(&mut self, out: &mut Vec<u8>) -> Result<(), RecordError> {
        self.seal_message(CONTENT_ALERT, &[1, ALERT_CLOSE_NOTIFY], out)
    }

    /// Opens the records in `ciphertext` (after any partial record kept from the last call):
    /// application data is appended to `plaintext`; records we must send (a KeyUpdate answer, the
    /// fatal alert on an error) to `out`. A record not complete yet is kept for the next call.
    pub fn receive(
        &mut self,
        ciphertext: &[u8],
        plaintext: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<Received, TlsFailure> {
        if self.peer_closed {
            return Ok(Received::PeerClosed);
        }
        let kept = std::mem::take(&mut self.partial);
        let mut joined;
        let input = if kept.is_empty() {
            ciphertext
        } else {
            joined = kept;
            joined.extend_from_slice(ciphertext);
            &joined[..]
        };
        let result = self.open_all(input, plaintext, out);
        if let Err(TlsFailure::Record(e)) = &result {
            // Best effort: the peer may not be able to read it (e.g. after a bad MAC it can).
            let _ = self.seal_message(CONTENT_ALERT, &[2, u8::from(e.alert())], out);
        }
        match result {
            Ok(rest) => {
                if !rest.is_empty() && !self.peer_closed {
                    self.partial = rest.to_vec();
                }
                Ok(if self.peer_closed {
                    Received::PeerClosed
                } else {
                    Received::Open
                })
            }
            Err(e) => {
                self.partial = Vec::new();
                self.handshake = Vec::new();
                Err(e)
            }
        }
    }

    /// Opens every complete record of `input`; returns the bytes of an incomplete last record.
    /// Requests for a KeyUpdate are answered once, after the last record (RFC 8446 §4.6.3 asks for
    /// one before our next application data: a flood of requests costs one answer per read).
    fn open_all<'a>(
        &mut self,
        mut input: &'a [u8],
        plaintext: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<&'a [u8], TlsFailure> {
        let mut key: Option<LessSafeKey> = None;
        let mut answer_key_update = false;
        let rest = loop {
            if self.peer_closed {
                // Anything after close_notify is ignored (RFC 8446 §6.1).
                break input;
            }
            if input.len() < HEADER_LEN {
                // A wrong outer type is refused as soon as its first byte is here.
                match input.first() {
                    Some(&content_type) if content_type != CONTENT_APPLICATION_DATA => {
                        return Err(RecordError::UnexpectedRecord { content_type }.into());
                    }
                    _ => break input,
                }
            }
            let header: [u8; HEADER_LEN] = input[..HEADER_LEN].try_into().unwrap_or_default();
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            if header[0] != CONTENT_APPLICATION_DATA {
                // Unencrypted records (a change_cipher_spec is allowed only during the handshake).
                return Err(RecordError::UnexpectedRecord {
                    content_type: header[0],
                }
                .into());
            }
            if len > MAX_CIPHERTEXT {
                return Err(RecordError::RecordOverflow.into());
            }
            if len < TAG_LEN + 1 {
                // Too short for a tag and the inner content type: cannot be authentic.
                return Err(RecordError::BadRecordMac.into());
            }
            if input.len() < HEADER_LEN + len {
                break input;
            }
            let body = &input[HEADER_LEN..HEADER_LEN + len];
            input = &input[HEADER_LEN + len..];
            let start = plaintext.len();
            if let Err(e) = self.open_one(header, body, &mut key, plaintext, &mut answer_key_update)
            {
                // Only the content of records accepted before the bad one stays.
                plaintext.truncate(start);
                return Err(e);
            }
        };
        if answer_key_update {
            self.key_update(out)?;
        }
        Ok(rest)
    }

    /// Opens one complete record: application data stays in `plaintext` (after `start`), alerts
    /// and handshake messages are taken out and acted on.
    fn open_one(
        &mut self,
        header: [u8; HEADER_LEN],
        body: &[u8],
        key: &mut Option<LessSafeKey>,
        plaintext: &mut Vec<u8>,
        answer_key_update: &mut bool,
    ) -> Result<(), TlsFailure> {
        let opener = match key {
            Some(key) => key,
            None => key.insert(self.rx.context()?),
        };
        let start = plaintext.len();
        plaintext.extend_from_slice(body);
        let seq = self.rx_seq;
        // The peer must change keys before its sequence number would wrap (RFC 8446 §5.3); one
        // that did not is stopped at 2^64 - 1 (it cannot get there: 2^64 records).
        self.rx_seq = seq.checked_add(1).ok_or(RecordError::Internal)?;
        let opened = opener
            .open_in_place(
                nonce(&self.rx.iv, seq),
                Aad::from(header),
                &mut plaintext[start..],
            )
            .map(|p| p.len())
            .map_err(|_| RecordError::BadRecordMac)?;
        plaintext.truncate(start + opened);
        // The whole inner plaintext, padding included, is at most 2^14 + 1 bytes (RFC 8446 §5.4).
        if opened > MAX_PAYLOAD + 1 {
            return Err(RecordError::RecordOverflow.into());
        }
        // Inner plaintext: content, the real content type, zero padding (RFC 8446 §5.2).
        let Some(end) = plaintext[start..].iter().rposition(|&b| b != 0) else {
            return Err(RecordError::UnexpectedRecord { content_type: 0 }.into());
        };
        let content_type = plaintext[start + end];
        plaintext.truncate(start + end);
        if content_type == CONTENT_APPLICATION_DATA {
            if !self.handshake.is_empty() {
                // A handshake message must not be interleaved with other records.
                return Err(RecordError::UnexpectedRecord { content_type }.into());
            }
            return Ok(());
        }
        let content = plaintext.split_off(start);
        match content_type {
            CONTENT_ALERT => self.on_alert(&content),
            CONTENT_HANDSHAKE => {
                if self.on_handshake(&content, answer_key_update)? {
                    // The receiving key changed: the next record opens with the new one.
                    *key = None;
                }
                Ok(())
            }
            other => Err(RecordError::UnexpectedRecord {
                content_type: other,
            }
            .into()),
        }
    }

    fn on_alert(&mut self, alert: &[u8]) -> Result<(), TlsFailure> {
        if !self.handshake.is_empty() {
            return Err(RecordError::UnexpectedRecord {
                content_type: CONTENT_ALERT,
            }
            .into());
        }
        let [_level, description] = alert else {
            return Err(RecordError::Malformed.into());
        };
        match *description {
            ALERT_CLOSE_NOTIFY => {
                self.peer_closed = true;
                Ok(())
            }
            // A warning with no effect in TLS 1.3 (a close_notify should follow).
            ALERT_USER_CANCELED => Ok(()),
            other => Err(TlsFailure::Peer(AlertDescription::from(other))),
        }
    }

    /// Handles the handshake bytes of one record; true when the receiving key changed. A KeyUpdate
    /// with update_requested sets `answer_key_update`.
    fn on_handshake(
        &mut self,
        bytes: &[u8],
        answer_key_update: &mut bool,
    ) -> Result<bool, TlsFailure> {
        if bytes.is_empty() {
            return Err(RecordError::UnexpectedRecord {
                content_type: CONTENT_HANDSHAKE,
            }
            .into());
        }
        self.handshake.extend_from_slice(bytes);
        let mut rekeyed = false;
        loop {
            let held = &self.handshake;
            if held.len() < 4 {
                break;
            }
            let (msg_type, len) = (
                held[0],
                u32::from_be_bytes([0, held[1], held[2], held[3]]) as usize,
            );
            if msg_type != HANDSHAKE_KEY_UPDATE {
                // A NewSessionTicket (only servers send it), a ClientHello (renegotiation), ...
                return Err(RecordError::UnexpectedHandshake { msg_type }.into());
            }
            if len != 1 {
                return Err(RecordError::Malformed.into());
            }
            if held.len() < 5 {
                break;
            }
            let request = held[4];
            if held.len() > 5 {
                // Keys change after a KeyUpdate: it must end its record (RFC 8446 §5.1).
                return Err(RecordError::KeyUpdateNotAtRecordEnd.into());
            }
            self.handshake = Vec::new();
            if request > 1 {
                // Neither update_not_requested (0) nor update_requested (1): RFC 8446 §4.6.3.
                return Err(RecordError::BadKeyUpdateRequest { value: request }.into());
            }
            let (seq, key) = self.keys.next_rx()?;
            self.rx = key;
            self.rx_seq = seq;
            rekeyed = true;
            *answer_key_update |= request == 1;
        }
        Ok(rekeyed)
    }

    /// Sends a KeyUpdate (update_not_requested) under the current key, then changes our key.
    fn key_update(&mut self, out: &mut Vec<u8>) -> Result<(), RecordError> {
        self.seal_message(CONTENT_HANDSHAKE, &[HANDSHAKE_KEY_UPDATE, 0, 0, 1, 0], out)?;
        let (seq, raw) = self.keys.next_tx()?;
        self.tx = Sealer {
            key: raw.context()?,
            iv: raw.iv,
            seq,
        };
        Ok(())
    }

    fn key_update_if_due(&mut self, out: &mut Vec<u8>) -> Result<(), RecordError> {
        if self.tx.seq >= KEY_UPDATE_AFTER {
            self.key_update(out)?;
        }
        Ok(())
    }

    /// One record of `content_type` holding `content` (an alert, a handshake message).
    fn seal_message(
        &mut self,
        content_type: u8,
        content: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        let start = self.open_record(out, content.len());
        out.extend_from_slice(content);
        self.close_record(out, start, content_type)
    }

    /// Appends a record header for `payload` bytes (the length filled in by `close_record`).
    fn open_record(&self, out: &mut Vec<u8>, payload: usize) -> usize {
        out.reserve(payload + RECORD_OVERHEAD);
        let start = out.len();
        out.extend_from_slice(&[CONTENT_APPLICATION_DATA, 3, 3, 0, 0]);
        start
    }

    /// Seals the record begun at `start` (its payload appended since): content type, encryption in
    /// place, tag.
    fn close_record(
        &mut self,
        out: &mut Vec<u8>,
        start: usize,
        content_type: u8,
    ) -> Result<(), RecordError> {
        out.push(content_type);
        let body = out.len() - start - HEADER_LEN;
        let len = u16::try_from(body + TAG_LEN).map_err(|_| RecordError::Internal)?;
        out[start + 3..start + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        let header: [u8; HEADER_LEN] = out[start..start + HEADER_LEN]
            .try_into()
            .map_err(|_| RecordError::Internal)?;
        let seq = self.tx.seq;
        self.tx.seq = seq.checked_add(1).ok_or(RecordError::Internal)?;
        let tag = self
            .tx
            .key
            .seal_in_place_separate_tag(
                nonce(&self.tx.iv, seq),
                Aad::from(header),
                &mut out[start + HEADER_LEN..],
            )
            .map_err(|_| RecordError::Internal)?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
