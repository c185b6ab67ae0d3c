//! Replacing the certificate and key without a restart.
//!
//! One [`TlsReloader`] per process, shared (`Arc`) by every worker and by whoever watches for
//! SIGHUP and file changes. Each worker keeps a [`WorkerTls`]: it caches the current
//! `Arc<ServerConfig>` and only takes the lock when the reloader's generation moved, so the
//! accept path costs one atomic load per new connection.
//!
//! A reload builds a new configuration from the files and swaps it in; sessions already open keep
//! the configuration they started with (their own `Arc`). A failed reload changes nothing. The
//! session cache and process-random ticket keys carry over, so sessions from before a reload still
//! resume; a ticket-key file (`--tls-ticket-keys`) is read again with the certificate, so a rotated
//! file applies to new tickets at once and still decrypts what its older keys issued.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use rustls::ServerConfig;

use super::{TlsAcceptor, TlsConfig, TlsError, TlsSession};

/// The current configuration of a process, reloadable from its files.
#[derive(Debug)]
pub struct TlsReloader {
    current: RwLock<Current>,
    /// Copy of `current.generation`, readable without the lock.
    generation: AtomicU64,
    /// The files as they were when last loaded (or when a load was last attempted). Also
    /// serializes reloads.
    attempted: Mutex<Stamps>,
}

#[derive(Debug)]
struct Current {
    generation: u64,
    acceptor: TlsAcceptor,
}

impl TlsReloader {
    /// Loads the files (see [`TlsAcceptor::new`]).
    pub fn new(cfg: &TlsConfig) -> Result<TlsReloader, TlsError> {
        let stamps = Stamps::read(cfg);
        Ok(TlsReloader::with_stamps(TlsAcceptor::new(cfg)?, stamps))
    }

    /// Wraps an already loaded acceptor; reloads re-read its files.
    pub fn from_acceptor(acceptor: TlsAcceptor) -> TlsReloader {
        let stamps = Stamps::read(acceptor.paths());
        TlsReloader::with_stamps(acceptor, stamps)
    }

    fn with_stamps(acceptor: TlsAcceptor, stamps: Stamps) -> TlsReloader {
        TlsReloader {
            current: RwLock::new(Current {
                generation: 0,
                acceptor,
            }),
            generation: AtomicU64::new(0),
            attempted: Mutex::new(stamps),
        }
    }

    /// Re-reads the files and, if they load, makes them the configuration of new connections.
    /// On error the previous configuration stays in use and the error is returned for the caller
    /// to log. Open connections are never affected.
    pub fn reload(&self) -> Result<(), TlsError> {
        let mut attempted = self
            .attempted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (paths, resumption) = {
            let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
            (
                current.acceptor.paths().clone(),
                current.acceptor.resumption.clone(),
            )
        };
        // Stamp before reading: a change during the load shows up at the next check. A failed
        // load is not retried (and re-logged) until the files change again.
        *attempted = Stamps::read(&paths);
        let acceptor = TlsAcceptor::build(&paths, resumption.reloaded(&paths)?)?;
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        current.generation += 1;
        current.acceptor = acceptor;
        self.generation.store(current.generation, Ordering::Release);
        Ok(())
    }

    /// True when a file's modification time, size or inode differs from the last load (or failed
    /// load attempt), including appearing or disappearing. Two or three `stat` calls; meant for a
    /// timer every few seconds, followed by [`reload`](Self::reload).
    pub fn changed_on_disk(&self) -> bool {
        let attempted = self
            .attempted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let paths = self.paths();
        Stamps::read(&paths) != *attempted
    }

    /// The configuration for a new connection. Takes the read lock: workers should use
    /// [`WorkerTls`] instead.
    pub fn config(&self) -> Arc<ServerConfig> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(current.acceptor.server_config())
    }

    /// Incremented by every successful reload (0 after loading).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The configured file paths.
    pub fn paths(&self) -> TlsConfig {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current.acceptor.paths().clone()
    }

    fn snapshot(&self) -> (u64, Arc<ServerConfig>) {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        (
            current.generation,
            Arc::clone(current.acceptor.server_config()),
        )
    }
}

/// A worker's view of the [`TlsReloader`]: the configuration for new connections, refreshed only
/// when a reload happened (one atomic load per call otherwise).
#[derive(Debug)]
pub struct WorkerTls {
    reloader: Arc<TlsReloader>,
    generation: u64,
    config: Arc<ServerConfig>,
}

impl WorkerTls {
    /// Starts with the reloader's current configuration.
    pub fn new(reloader: Arc<TlsReloader>) -> WorkerTls {
        let (generation, config) = reloader.snapshot();
        WorkerTls {
            reloader,
            generation,
            config,
        }
    }

    /// The configuration new connections should use.
    pub fn config(&mut self) -> &Arc<ServerConfig> {
        if self.reloader.generation() != self.generation {
            (self.generation, self.config) = self.reloader.snapshot();
        }
        &self.config
    }

    /// A session for one new connection with the current configuration.
    pub fn session(&mut self) -> Result<TlsSession, TlsError> {
        TlsSession::new(Arc::clone(self.config()))
    }
}

/// What `stat` says about the files; `None` for a file that cannot be stat'ed (or, for the ticket
/// keys, is not configured).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamps {
    cert: Option<FileStamp>,
    key: Option<FileStamp>,
    ticket_keys: Option<FileStamp>,
}

/// Identity and version of one file, following symlinks (certbot's `live/` links to `archive/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    dev: u64,
    ino: u64,
}

impl Stamps {
    fn read(cfg: &TlsConfig) -> Stamps {
        Stamps {
            cert: FileStamp::read(&cfg.cert_path),
            key: FileStamp::read(&cfg.key_path),
            ticket_keys: cfg.ticket_keys.as_deref().and_then(FileStamp::read),
        }
    }
}

impl FileStamp {
    fn read(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}
