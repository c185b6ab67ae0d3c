//! What can go wrong loading a certificate and key ([`TlsError`]), and what can go wrong on one
//! TLS connection ([`TlsFailure`]).
//!
//! `TlsError` is for the operator: every message names the file and says what to do about it.
//! `TlsFailure` is for the worker: it says whether to answer in plain HTTP, with an alert that is
//! already in `out`, or just to close.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Which of the two configured files an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// `--tls-cert`: the PEM certificate chain, leaf first.
    Cert,
    /// `--tls-key`: the PEM private key.
    Key,
    /// `--tls-ticket-keys`: the session-ticket keys (raw bytes, 80 per key).
    TicketKeys,
}

impl FileKind {
    fn describe(self) -> &'static str {
        match self {
            FileKind::Cert => "TLS certificate file (--tls-cert)",
            FileKind::Key => "TLS private key file (--tls-key)",
            FileKind::TicketKeys => "TLS session-ticket key file (--tls-ticket-keys)",
        }
    }
}

/// Loading the certificate chain and key, or building the rustls configuration, failed.
#[derive(Debug)]
pub enum TlsError {
    /// The file does not exist (or a symlink in its path dangles).
    MissingFile { kind: FileKind, path: PathBuf },
    /// The file exists but could not be read (permissions, a directory, an I/O error).
    Unreadable {
        kind: FileKind,
        path: PathBuf,
        source: io::Error,
    },
    /// The file is not valid PEM (a truncated block, bad base64).
    BadPem {
        kind: FileKind,
        path: PathBuf,
        detail: String,
    },
    /// No `CERTIFICATE` block in the certificate file. `looks_like_key` when it holds a key instead.
    NoCertificate { path: PathBuf, looks_like_key: bool },
    /// No private key block in the key file. `encrypted` when it holds only an encrypted key;
    /// `looks_like_cert` when it holds certificates instead.
    NoKey {
        path: PathBuf,
        encrypted: bool,
        looks_like_cert: bool,
    },
    /// The leaf certificate does not parse.
    BadCertificate { path: PathBuf, detail: String },
    /// The key parsed as PEM but rustls cannot sign with it (e.g. DSA, an unsupported curve).
    UnsupportedKey { path: PathBuf, detail: String },
    /// The key is not the one the leaf certificate was issued for.
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// The ticket-key file does not hold 1 to 16 keys of 80 bytes with distinct names.
    BadTicketKeys {
        path: PathBuf,
        problem: TicketKeysProblem,
    },
    /// rustls refused the configuration or could not make a ticket key (not a file problem).
    Config(rustls::Error),
}

/// What is wrong with a ticket-key file (`--tls-ticket-keys`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketKeysProblem {
    /// The file is empty.
    Empty,
    /// The size is not a multiple of 80 bytes. `looks_like_text` when it is all printable (hex or
    /// base64 instead of raw bytes).
    Length { len: usize, looks_like_text: bool },
    /// More than 16 keys.
    TooMany { count: usize },
    /// Two keys (numbered from 1) start with the same 16-byte name.
    DuplicateName { first: usize, second: usize },
    /// Deriving the cipher key failed (not a file problem).
    Crypto,
}

impl fmt::Display for TicketKeysProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TicketKeysProblem::Empty => write!(f, "the file is empty"),
            TicketKeysProblem::Length {
                len,
                looks_like_text,
            } => {
                write!(f, "{len} bytes is not a whole number of 80-byte keys")?;
                if *looks_like_text {
                    write!(
                        f,
                        " (it looks like text: the file holds raw bytes, not hex or base64)"
                    )?;
                }
                Ok(())
            }
            TicketKeysProblem::TooMany { count } => {
                write!(
                    f,
                    "{count} keys, at most 16 (one encrypts, the others only decrypt: two are enough to rotate)"
                )
            }
            TicketKeysProblem::DuplicateName { first, second } => write!(
                f,
                "keys {first} and {second} have the same name (first 16 bytes): was the same key added twice?"
            ),
            TicketKeysProblem::Crypto => write!(f, "the ticket cipher could not be set up"),
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TlsError::*;
        match self {
            MissingFile { kind, path } => write!(
                f,
                "{} {} does not exist: {}",
                kind.describe(),
                path.display(),
                match kind {
                    FileKind::Cert => "check the path (certbot: use live/<domain>/fullchain.pem)",
                    FileKind::Key => "check the path (certbot: use live/<domain>/privkey.pem)",
                    FileKind::TicketKeys =>
                        "check the path, or make one with `openssl rand 80 > FILE` (mode 0600; the same file on every server of the name)",
                }
            ),
            Unreadable { kind, path, source } => write!(
                f,
                "cannot read {} {}: {source} (is it readable by the user ringcast runs as? see certs/README.md, Permissions)",
                kind.describe(),
                path.display()
            ),
            BadPem { kind, path, detail } => write!(
                f,
                "{} {} is not valid PEM ({detail}): is it truncated or DER-encoded? convert with `openssl x509 -inform der` / `openssl pkey -inform der`",
                kind.describe(),
                path.display()
            ),
            NoCertificate {
                path,
                looks_like_key,
            } => {
                write!(
                    f,
                    "no certificate (-----BEGIN CERTIFICATE-----) in {}",
                    path.display()
                )?;
                if *looks_like_key {
                    write!(
                        f,
                        ": it holds a private key; were --tls-cert and --tls-key swapped?"
                    )
                } else {
                    write!(
                        f,
                        ": --tls-cert needs the PEM certificate chain, leaf first"
                    )
                }
            }
            NoKey {
                path,
                encrypted,
                looks_like_cert,
            } => {
                write!(f, "no private key in {}", path.display())?;
                if *encrypted {
                    write!(
                        f,
                        ": the key is passphrase-protected; write an unencrypted copy with `openssl pkey -in KEY -out KEY.plain` (mode 0600)"
                    )
                } else if *looks_like_cert {
                    write!(
                        f,
                        ": it holds certificates; were --tls-cert and --tls-key swapped?"
                    )
                } else {
                    write!(
                        f,
                        ": expected a PEM block PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY"
                    )
                }
            }
            BadCertificate { path, detail } => write!(
                f,
                "the first certificate in {} does not parse ({detail}): check it with `openssl x509 -in {} -noout -text`",
                path.display(),
                path.display()
            ),
            UnsupportedKey { path, detail } => write!(
                f,
                "unsupported private key in {} ({detail}): use ECDSA P-256/P-384, RSA (2048 bits or more) or Ed25519",
                path.display()
            ),
            KeyMismatch { cert, key } => write!(
                f,
                "the private key {} does not belong to the certificate {}: use the key the certificate was issued for (certbot: privkey.pem next to fullchain.pem)",
                key.display(),
                cert.display()
            ),
            BadTicketKeys { path, problem } => write!(
                f,
                "bad TLS session-ticket key file {}: {problem}; the file is 1 to 16 keys of 80 random bytes each, newest first (make one with `openssl rand 80 > FILE`, see docs/tls.md)",
                path.display()
            ),
            Config(e) => write!(f, "TLS configuration rejected by rustls: {e}"),
        }
    }
}

impl TlsError {
    /// The flag (and environment variable) whose file the error is about, for messages.
    pub fn flag(&self) -> &'static str {
        use TlsError::*;
        match self {
            MissingFile {
                kind: FileKind::TicketKeys,
                ..
            }
            | Unreadable {
                kind: FileKind::TicketKeys,
                ..
            }
            | BadTicketKeys { .. } => "--tls-ticket-keys (RINGCAST_TLS_TICKET_KEYS)",
            _ => "--tls-cert/--tls-key (RINGCAST_TLS_CERT/RINGCAST_TLS_KEY)",
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Unreadable { source, .. } => Some(source),
            TlsError::Config(e) => Some(e),
            _ => None,
        }
    }
}

/// Why one TLS connection must end. After any failure the session is finished: send what the call
/// appended to `out` (an alert, or the plain-HTTP 400 response), then close.
#[derive(Debug)]
pub enum TlsFailure {
    /// The first bytes were plain HTTP (`GET /…`): a `ws://` or `http://` client on the TLS port.
    /// `out` holds [`plaintext_rejection`](super::plaintext_rejection), not a TLS alert.
    PlaintextOnTlsPort,
    /// The client offered only TLS 1.1 or older (`offered` is the ClientHello's legacy version when
    /// known, e.g. `0x0301` for TLS 1.0). `out` holds a `protocol_version` alert.
    ProtocolVersion { offered: Option<u16> },
    /// The handshake failed (no common cipher suite or ALPN protocol, a malformed message, ...).
    /// `out` holds the alert rustls chose.
    Handshake(rustls::Error),
    /// After the handshake: a corrupt or forged record, an unexpected message.
    Connection(rustls::Error),
    /// The peer sent a fatal alert (a client rejecting our certificate sends `bad_certificate` or
    /// `unknown_ca`).
    Peer(rustls::AlertDescription),
    /// After the handshake, TLS 1.3 (our record layer, `record.rs`): what the peer sent is refused.
    /// `out` holds the alert [`RecordError::alert`] names.
    Record(RecordError),
}

/// What our TLS 1.3 record layer refuses after the handshake (`src/tls/record.rs`). Each has the
/// alert sent before closing: the one place they are mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// A record did not decrypt: forged, corrupted, or keys out of step.
    BadRecordMac,
    /// A record longer than TLS allows (2^14 bytes of plaintext, 2^14 + 256 of ciphertext).
    RecordOverflow,
    /// A record of a type not allowed after the handshake (an unencrypted outer type other than
    /// application data, an inner type other than data, alert or handshake, an empty one, or data
    /// in the middle of a split handshake message). `0`: an inner record with no type at all.
    UnexpectedRecord { content_type: u8 },
    /// A handshake message other than KeyUpdate after the handshake (a client never sends
    /// NewSessionTicket; a ClientHello would be renegotiation, which TLS 1.3 does not have).
    UnexpectedHandshake { msg_type: u8 },
    /// A KeyUpdate followed by more bytes in its record (keys change at the record boundary).
    KeyUpdateNotAtRecordEnd,
    /// A malformed alert or KeyUpdate.
    Malformed,
    /// A KeyUpdate whose request_update is neither 0 (update_not_requested) nor 1
    /// (update_requested): `illegal_parameter` (RFC 8446 §4.6.3).
    BadKeyUpdateRequest { value: u8 },
    /// Ours, not the peer's: a sequence number ran out, or a key could not be set up.
    Internal,
}

impl RecordError {
    /// The alert sent to the peer for this error.
    pub fn alert(self) -> rustls::AlertDescription {
        use rustls::AlertDescription as A;
        match self {
            RecordError::BadRecordMac => A::BadRecordMac,
            RecordError::RecordOverflow => A::RecordOverflow,
            RecordError::UnexpectedRecord { .. }
            | RecordError::UnexpectedHandshake { .. }
            | RecordError::KeyUpdateNotAtRecordEnd => A::UnexpectedMessage,
            RecordError::Malformed => A::DecodeError,
            RecordError::BadKeyUpdateRequest { .. } => A::IllegalParameter,
            RecordError::Internal => A::InternalError,
        }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::BadRecordMac => write!(f, "a record did not decrypt (bad_record_mac)"),
            RecordError::RecordOverflow => write!(f, "a record exceeds the TLS size limit"),
            RecordError::UnexpectedRecord { content_type } => {
                write!(
                    f,
                    "unexpected record of content type {content_type} after the handshake"
                )
            }
            RecordError::UnexpectedHandshake { msg_type } => write!(
                f,
                "unexpected handshake message {msg_type} after the handshake (only KeyUpdate is allowed)"
            ),
            RecordError::KeyUpdateNotAtRecordEnd => {
                write!(f, "KeyUpdate not at the end of its record")
            }
            RecordError::Malformed => write!(f, "malformed alert or KeyUpdate"),
            RecordError::BadKeyUpdateRequest { value } => {
                write!(
                    f,
                    "KeyUpdate with request_update {value} (only 0 and 1 exist)"
                )
            }
            RecordError::Internal => write!(f, "internal record layer error"),
        }
    }
}

impl TlsFailure {
    /// A short, stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            TlsFailure::PlaintextOnTlsPort => "plaintext on TLS port",
            TlsFailure::ProtocolVersion { .. } => "TLS version too old",
            TlsFailure::Handshake(_) => "TLS handshake failed",
            TlsFailure::Connection(_) => "TLS record error",
            TlsFailure::Peer(_) => "TLS alert from peer",
            TlsFailure::Record(_) => "TLS record error",
        }
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFailure::PlaintextOnTlsPort => {
                write!(
                    f,
                    "plain HTTP on the TLS port (client used ws:// or http://)"
                )
            }
            TlsFailure::ProtocolVersion { offered: Some(v) } => write!(
                f,
                "client offered only {} (TLS 1.2 or 1.3 required)",
                version_name(*v)
            ),
            TlsFailure::ProtocolVersion { offered: None } => {
                write!(f, "client offered no TLS version we support (1.2, 1.3)")
            }
            TlsFailure::Handshake(e) => write!(f, "TLS handshake failed: {e}"),
            TlsFailure::Connection(e) => write!(f, "TLS error: {e}"),
            TlsFailure::Peer(alert) => write!(f, "peer sent TLS alert {alert:?}"),
            TlsFailure::Record(e) => write!(f, "TLS error: {e}"),
        }
    }
}

impl std::error::Error for TlsFailure {}

/// `0x0301` → `"TLS 1.0"`, for messages.
fn version_name(v: u16) -> String {
    match v {
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        _ => format!("version {v:#06x}"),
    }
}
