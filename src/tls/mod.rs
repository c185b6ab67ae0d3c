//! TLS termination for `wss://`: a sans-IO adapter over rustls that the io_uring workers drive.
//!
//! No sockets here. A worker owns one [`TlsSession`] per TLS connection and moves bytes:
//! received ciphertext goes into [`TlsSession::receive`], which appends decrypted bytes for the
//! HTTP/WebSocket layer and TLS records to send; everything the server sends goes through
//! [`TlsSession::encrypt`] before the connection's outbox.
//!
//! - [`TlsAcceptor`]: the certificate chain + key from [`TlsConfig`], and one
//!   `Arc<rustls::ServerConfig>` shared by every worker: TLS 1.2 and 1.3, ALPN `http/1.1`,
//!   stateless session tickets and a server-side session cache, so a session started on one core
//!   resumes on any other.
//! - [`TlsReloader`] / [`WorkerTls`]: replace the certificate without a restart (SIGHUP, file
//!   watch); a bad file keeps the old configuration. Tickets survive reloads.
//! - [`FileTicketer`]: session-ticket keys from a file (`--tls-ticket-keys`), so tickets resume
//!   across restarts and on every server sharing the file; [`KxGroups`]: `--tls-groups`.
//! - [`TlsSession`], [`TlsFailure`], [`plaintext_rejection`]: one connection.
//!
//! See docs/tls.md for the operator's view (flags, reload, memory and CPU cost).

mod error;
mod groups;
mod keylog;
mod load;
mod record;
mod record_keys;
mod reload;
mod rustls_conn;
mod session;
mod tickets;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};

pub use error::{FileKind, RecordError, TicketKeysProblem, TlsError, TlsFailure};
pub use groups::{DEFAULT_GROUPS, KxGroups};
/// Our TLS 1.3 record layer on its own, for fuzzing and tests ([`RecordLayer::with_secrets`]).
#[doc(hidden)]
pub use record::{Received, RecordLayer};
pub use reload::{TlsReloader, WorkerTls};
pub use rustls_conn::plaintext_rejection;
pub use session::TlsSession;
pub use tickets::{FileTicketer, MAX_TICKET_KEYS, TICKET_KEY_LEN, TICKET_LIFETIME_S};

/// The only application protocol offered in ALPN: WebSocket upgrades are HTTP/1.1.
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Entries of the server-side session cache (TLS 1.2 session-ID resumption; TLS 1.3 and TLS 1.2
/// clients with ticket support use stateless tickets and never touch it). An entry is a few
/// hundred bytes, so this is a few MiB at most, shared by all workers.
pub const SESSION_CACHE_ENTRIES: usize = 16 * 1024;

/// Where the certificate chain, private key and ticket keys live, and the key-exchange groups. The
/// files are re-read on every reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// Certificate chain, leaf first (certbot: `live/<domain>/fullchain.pem`).
    pub cert_path: PathBuf,
    /// Private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (certbot: `live/<domain>/privkey.pem`).
    pub key_path: PathBuf,
    /// Session-ticket keys shared by a fleet ([`FileTicketer`]); `None`: random keys of this process.
    pub ticket_keys: Option<PathBuf>,
    /// Key-exchange groups accepted.
    pub groups: KxGroups,
}

impl TlsConfig {
    /// A certificate and key, with process-random ticket keys and the default groups.
    pub fn new(cert_path: PathBuf, key_path: PathBuf) -> TlsConfig {
        TlsConfig {
            cert_path,
            key_path,
            ticket_keys: None,
            groups: KxGroups::default(),
        }
    }
}

/// Resumption state: kept across reloads and shared by every configuration a process builds, so
/// a ticket or session ID issued by any worker, before or after a reload, resumes on any worker.
#[derive(Clone)]
struct Resumption {
    ticketer: Arc<dyn ProducesTickets>,
    cache: Arc<dyn StoresServerSessions>,
}

impl Resumption {
    fn new(cfg: &TlsConfig) -> Result<Resumption, TlsError> {
        let ticketer: Arc<dyn ProducesTickets> = match &cfg.ticket_keys {
            Some(path) => Arc::new(FileTicketer::load(path)?),
            // Random keys, rotated every 6 hours (the previous key still decrypts).
            None => rustls::crypto::aws_lc_rs::Ticketer::new().map_err(TlsError::Config)?,
        };
        Ok(Resumption {
            ticketer,
            cache: ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES),
        })
    }

    /// For a reload: the ticket-key file read again (it may have been rotated); the session cache
    /// and process-random ticket keys kept.
    fn reloaded(&self, cfg: &TlsConfig) -> Result<Resumption, TlsError> {
        Ok(Resumption {
            ticketer: match &cfg.ticket_keys {
                Some(path) => Arc::new(FileTicketer::load(path)?),
                None => Arc::clone(&self.ticketer),
            },
            cache: Arc::clone(&self.cache),
        })
    }
}

/// A loaded certificate and key, and the rustls configuration every new connection uses.
///
/// Cheap to clone (two `Arc`s and the paths). Build it once per process and share
/// [`server_config`](Self::server_config) with every worker; [`TlsReloader`] wraps it for reloads.
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
    paths: TlsConfig,
    resumption: Resumption,
}

impl TlsAcceptor {
    /// Loads `cfg.cert_path` and `cfg.key_path` (and `cfg.ticket_keys`) and builds the
    /// configuration, with an empty session cache (and fresh ticket keys without a key file).
    pub fn new(cfg: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
        TlsAcceptor::build(cfg, Resumption::new(cfg)?)
    }

    /// Loads the files again, keeping `resumption` (the reload path).
    fn build(cfg: &TlsConfig, resumption: Resumption) -> Result<TlsAcceptor, TlsError> {
        let provider = Arc::new(rustls::crypto::CryptoProvider {
            kx_groups: cfg.groups.to_vec(),
            ..rustls::crypto::aws_lc_rs::default_provider()
        });
        let key = load::load_certified_key(&cfg.cert_path, &cfg.key_path, &provider)?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(load::resolver(key));
        config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        config.ticketer = Arc::clone(&resumption.ticketer);
        config.session_storage = Arc::clone(&resumption.cache);
        // No 0-RTT (the default, spelled out): early data can be replayed.
        config.max_early_data_size = 0;
        // TLS 1.3 connections leave rustls after the handshake for our record layer (record.rs),
        // which takes the traffic keys from rustls: an idle connection then holds two keys.
        config.enable_secret_extraction = true;
        // ... and its two application traffic secrets, so the record layer derives KeyUpdate keys
        // itself instead of keeping rustls' key schedule (784 B) per connection (keylog.rs).
        config.key_log = Arc::new(keylog::TrafficSecrets);
        Ok(TlsAcceptor {
            config: Arc::new(config),
            paths: cfg.clone(),
            resumption,
        })
    }

    /// The shared configuration: hand a clone of this `Arc` to [`TlsSession::new`].
    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// A session for one new connection.
    pub fn session(&self) -> Result<TlsSession, TlsError> {
        TlsSession::new(Arc::clone(&self.config))
    }

    /// The files this acceptor was loaded from.
    pub fn paths(&self) -> &TlsConfig {
        &self.paths
    }
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}
