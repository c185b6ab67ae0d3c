//! TLS in the `Sim` (wss://): the core terminates TLS with a real `WorkerTls` (a certificate made once
//! per test process by `certs/make-dev-cert.sh`), and each client is a real rustls `ClientConnection`
//! driven in memory. What a client writes is encrypted and its records are the bytes the core receives;
//! what the core sends is fed to the client's `read_tls`, and the plaintext it yields is the client's
//! `inbox` — so every helper of `sim.rs` (`open_ws`, `send_text`, `frames`, ...) works unchanged on a
//! TLS sim.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::sim::{Client, Sim, TABLE};
use crate::runtime::core::WorkerSettings;
use crate::tls::{TlsConfig, TlsReloader, WorkerTls};

/// The server's certificate (loaded) and a client configuration trusting it, made once per process.
fn certificate() -> &'static (Arc<TlsReloader>, Arc<ClientConfig>) {
    static CERT: OnceLock<(Arc<TlsReloader>, Arc<ClientConfig>)> = OnceLock::new();
    CERT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ringcast-core-sim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/make-dev-cert.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .arg("--force")
            .arg(&dir)
            .output()
            .expect("run certs/make-dev-cert.sh");
        assert!(out.status.success(), "make-dev-cert.sh: {out:?}");
        let cfg = TlsConfig::new(dir.join("cert.pem"), dir.join("key.pem"));
        let reloader = TlsReloader::new(&cfg).expect("load the test certificate");
        let leaf = CertificateDer::pem_file_iter(&cfg.cert_path)
            .expect("cert.pem")
            .next()
            .expect("a certificate")
            .expect("PEM");
        // Loaded: the files are not needed any more (no test reloads them).
        let _ = std::fs::remove_dir_all(&dir);
        let mut roots = RootCertStore::empty();
        roots.add(leaf).expect("trust the leaf");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        (Arc::new(reloader), Arc::new(client))
    })
}

impl Sim {
    /// A sim whose listener speaks TLS (wss://): every client connects with a rustls client.
    pub fn new_tls(settings: WorkerSettings) -> Sim {
        let (reloader, client) = certificate();
        let worker = WorkerTls::new(Arc::clone(reloader));
        Sim::build(settings, TABLE, Some((worker, Arc::clone(client))))
    }

    /// A client that connects to the TLS listener without TLS (its bytes go on the wire as they are).
    pub fn connect_raw(&mut self) -> u32 {
        let cfg = self.client_tls.take();
        let slot = self.connect(None);
        self.client_tls = cfg;
        slot
    }

    /// Raw bytes on the wire, client → server, bypassing the client's TLS (garbage, plain HTTP).
    pub fn write_raw(&mut self, slot: u32, bytes: &[u8]) {
        self.client_mut(slot).outgoing.push_back(bytes.to_vec());
        self.run();
    }

    /// The TLS client sends `close_notify` (it will write nothing more).
    pub fn close_notify(&mut self, slot: u32) {
        let client = self.client_mut(slot);
        let tls = client.tls.as_mut().expect("a TLS client");
        tls.conn.send_close_notify();
        tls.flush(&mut client.outgoing);
        self.run();
    }
}

/// The client side of one TLS connection.
pub struct ClientTls {
    pub conn: ClientConnection,
    /// The first error the client's rustls hit (the server sent something invalid).
    pub error: Option<rustls::Error>,
    /// The server sent `close_notify`.
    pub peer_closed: bool,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("handshaking", &self.conn.is_handshaking())
            .field("error", &self.error)
            .field("peer_closed", &self.peer_closed)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Move every record the client wants to send onto the wire, as one write.
    fn flush(&mut self, wire: &mut VecDeque<Vec<u8>>) {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            self.conn.write_tls(&mut out).expect("write to a Vec");
        }
        if !out.is_empty() {
            wire.push_back(out);
        }
    }
}

impl Client {
    /// Start the TLS client: its ClientHello goes out at once.
    pub(super) fn start_tls(&mut self, cfg: &Arc<ClientConfig>) {
        let name = ServerName::try_from("localhost").expect("a DNS name");
        let mut conn = ClientConnection::new(Arc::clone(cfg), name).expect("a client connection");
        conn.set_buffer_limit(None);
        let mut tls = ClientTls {
            conn,
            error: None,
            peer_closed: false,
        };
        tls.flush(&mut self.outgoing);
        self.tls = Some(Box::new(tls));
    }

    /// Bytes the server sent arrive: plain ones land in `inbox`; on TLS they are decrypted into it (and
    /// what the client must answer — handshake, alerts — goes out on the wire).
    pub(super) fn receive_wire(&mut self, mut bytes: &[u8]) {
        let Some(tls) = self.tls.as_mut() else {
            self.inbox.extend_from_slice(bytes);
            return;
        };
        while !bytes.is_empty() && tls.error.is_none() {
            match tls.conn.read_tls(&mut bytes) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => panic!("client read_tls: {e}"),
            }
            match tls.conn.process_new_packets() {
                Ok(state) => {
                    let start = self.inbox.len();
                    let n = state.plaintext_bytes_to_read();
                    self.inbox.resize(start + n, 0);
                    tls.conn
                        .reader()
                        .read_exact(&mut self.inbox[start..])
                        .expect("decrypted bytes");
                    tls.peer_closed |= state.peer_has_closed();
                }
                Err(e) => tls.error = Some(e),
            }
        }
        tls.flush(&mut self.outgoing);
    }

    /// Bytes the client writes: plain on the wire, or encrypted first (before the handshake completes
    /// rustls holds them and sends them once it has).
    pub(super) fn send_wire(&mut self, bytes: &[u8]) {
        match self.tls.as_mut() {
            None => self.outgoing.push_back(bytes.to_vec()),
            Some(tls) => {
                tls.conn.writer().write_all(bytes).expect("buffered");
                tls.flush(&mut self.outgoing);
            }
        }
    }
}
