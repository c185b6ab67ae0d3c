//! Test support for tls_adapter: certificates from certs/make-dev-cert.sh, a rustls client, and an
//! in-memory link that moves bytes between that client and a `TlsSession`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ringcast::tls::{TlsConfig, TlsFailure, TlsSession};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, SupportedProtocolVersion};

pub use crate::common::TempDir;

/// A certificate and key pair made by certs/make-dev-cert.sh in its own directory.
pub struct DevCert {
    pub dir: TempDir,
}

impl DevCert {
    pub fn ecdsa() -> DevCert {
        DevCert::make(false)
    }

    pub fn rsa() -> DevCert {
        DevCert::make(true)
    }

    fn make(rsa: bool) -> DevCert {
        let dir = TempDir::new(if rsa { "rsa" } else { "ecdsa" });
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/make-dev-cert.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(script).arg("--force");
        if rsa {
            cmd.arg("--rsa");
        }
        let status = cmd.arg(&dir.0).output().unwrap();
        assert!(status.status.success(), "make-dev-cert.sh: {status:?}");
        DevCert { dir }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.0.join("cert.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.0.join("key.pem")
    }

    pub fn config(&self) -> TlsConfig {
        TlsConfig::new(self.cert(), self.key())
    }

    /// The leaf certificate, DER.
    pub fn leaf(&self) -> CertificateDer<'static> {
        leaf(&self.cert())
    }
}

/// A certificate and key copied into a directory of their own, which a test rewrites under a running
/// server (a deploy, a renewal). (For the tests that start a server; tls_adapter.rs does not.)
#[allow(dead_code)]
pub struct LiveCert {
    _dir: TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[allow(dead_code)]
impl LiveCert {
    /// A copy of `from`'s certificate and key, in a fresh directory named after `tag`.
    pub fn copy_of(tag: &str, from: &DevCert) -> LiveCert {
        let dir = TempDir::new(tag);
        let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
        std::fs::copy(from.cert(), &cert).unwrap();
        std::fs::copy(from.key(), &key).unwrap();
        LiveCert {
            _dir: dir,
            cert,
            key,
        }
    }

    /// The certificate's and the key's paths, for `--tls-cert` and `--tls-key`.
    pub fn paths(&self) -> (String, String) {
        (
            self.cert.to_string_lossy().into_owned(),
            self.key.to_string_lossy().into_owned(),
        )
    }
}

pub fn leaf(path: &Path) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
}

/// A client trusting exactly `trusted` (self-signed leaves), offering `versions` and `http/1.1`.
pub fn client_config(
    trusted: &[&DevCert],
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots.add(cert.leaf()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// A client connection and a server session joined in memory.
pub struct Link {
    pub client: ClientConnection,
    pub server: TlsSession,
    /// Decrypted by the server.
    pub at_server: Vec<u8>,
    /// Decrypted by the client.
    pub at_client: Vec<u8>,
    /// The first error the client hit (it then sends an alert).
    pub client_error: Option<rustls::Error>,
}

impl Link {
    pub fn new(cfg: &Arc<ClientConfig>, server: TlsSession) -> Link {
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = ClientConnection::new(Arc::clone(cfg), name).unwrap();
        client.set_buffer_limit(None);
        Link {
            client,
            server,
            at_server: Vec::new(),
            at_client: Vec::new(),
            client_error: None,
        }
    }

    /// A link that completed its handshake.
    pub fn connected(cfg: &Arc<ClientConfig>, server: TlsSession) -> Link {
        let mut link = Link::new(cfg, server);
        link.pump().unwrap();
        assert!(!link.server.is_handshaking());
        assert!(!link.client.is_handshaking());
        link
    }

    /// Moves bytes both ways until neither side has anything to send.
    pub fn pump(&mut self) -> Result<(), TlsFailure> {
        for _ in 0..100_000 {
            let mut to_server = Vec::new();
            while self.client.wants_write() {
                self.client.write_tls(&mut to_server).unwrap();
            }
            let mut to_client = Vec::new();
            let result = match to_server.is_empty() {
                true => Ok(()),
                false => self
                    .server
                    .receive(&to_server, &mut self.at_server, &mut to_client),
            };
            self.client_receive(&to_client);
            result?;
            if to_server.is_empty() && to_client.is_empty() {
                return Ok(());
            }
        }
        panic!("pump did not settle");
    }

    /// Feeds server output to the client, collecting its plaintext.
    pub fn client_receive(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.client_error.is_none() {
            if self.client.read_tls(&mut data).unwrap() == 0 {
                break;
            }
            match self.client.process_new_packets() {
                Ok(state) => {
                    let start = self.at_client.len();
                    let n = state.plaintext_bytes_to_read();
                    self.at_client.resize(start + n, 0);
                    self.client
                        .reader()
                        .read_exact(&mut self.at_client[start..])
                        .unwrap();
                }
                Err(e) => self.client_error = Some(e),
            }
        }
    }

    /// Server → client through `TlsSession::encrypt`.
    pub fn server_send(&mut self, data: &[u8]) {
        let mut out = Vec::new();
        self.server.encrypt(data, &mut out).unwrap();
        self.client_receive(&out);
        assert!(self.client_error.is_none(), "{:?}", self.client_error);
    }

    /// Client → server through `TlsSession::receive`.
    pub fn client_send(&mut self, data: &[u8]) {
        self.client.writer().write_all(data).unwrap();
        self.pump().unwrap();
    }

    /// Sends a message each way and checks it arrived.
    pub fn echo_check(&mut self, tag: &str) {
        let (up, down) = (format!("up {tag}"), format!("down {tag}"));
        self.client_send(up.as_bytes());
        assert_eq!(std::mem::take(&mut self.at_server), up.as_bytes());
        self.server_send(down.as_bytes());
        assert_eq!(std::mem::take(&mut self.at_client), down.as_bytes());
    }

    /// The certificate the server presented, as the client saw it.
    pub fn presented(&self) -> CertificateDer<'static> {
        self.client.peer_certificates().unwrap()[0]
            .clone()
            .into_owned()
    }
}

/// A minimal ClientHello with legacy version `version` and no extensions (what TLS 1.0/1.1-only
/// clients send), one cipher suite (TLS_RSA_WITH_AES_128_CBC_SHA), in a record of version 0x0301.
pub fn legacy_client_hello(version: u16) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0, 2, 0x00, 0x2f]); // cipher suites
    body.extend_from_slice(&[1, 0]); // compression: null
    let mut hs = vec![1, 0, 0, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01, 0, hs.len() as u8];
    record.extend_from_slice(&hs);
    record
}
