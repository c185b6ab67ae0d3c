//! wss://: the client side of TLS over the harness's own non-blocking sockets, with rustls.
//!
//! The epoll client owns the socket; rustls never touches it. Ciphertext read from the socket is fed
//! to [`receive`] (`read_tls` from a slice, `process_new_packets`, plaintext out of `reader()`), and
//! [`flush`] writes the records rustls has queued (`write_tls` on the descriptor, stopping at
//! `WouldBlock`). Plaintext goes in through `writer()` ([`send`]). The coordinator's `/healthz` probe
//! uses the same configuration over a blocking stream ([`healthz`]).
//!
//! Trust: the certificates of one PEM file (`--ca`, by default the throwaway certificate the
//! coordinator generated for the server it started); server name `--server-name` (`localhost`).
//! Verification ([`Pinned`]): an end-entity certificate byte-for-byte equal to one in that file is
//! trusted as it is (pinned: no chain building, no name or validity check, as for a self-signed
//! certificate distributed out of band), anything else goes through rustls' WebPKI verifier (chain to
//! a certificate of the file, name, validity). Either way the server proves it holds the certificate's
//! key: its handshake signature is verified. This keeps a full handshake's client CPU to the key
//! exchange and one signature check, so a wss storm measures the server rather than the harness.
//! Resumption is off, so every connection does a full handshake, as distinct browsers would; with
//! `--tls-resume` each connection keeps its own ticket store (rustls' in-memory cache: the server's
//! TLS 1.3 tickets, each used once, more from every handshake), so each connection's first handshake is
//! full and every reconnect (churn) resumes, as a returning browser would. `--tls-groups` limits the
//! key-exchange groups offered (default: rustls', the post-quantum hybrid X25519MLKEM768 first).

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use serde_json::{Value, json};

/// One client configuration per process, shared by every connection.
pub struct Tls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    resume: bool,
}

impl Tls {
    /// Trusts every certificate in the PEM file `ca` and expects the server to present `server_name`;
    /// `resume`: reuse sessions; `groups`: comma-separated key-exchange group names to offer, in order
    /// (`X25519MLKEM768`, `x25519`, `secp256r1`, ...).
    pub fn new(
        ca: &str,
        server_name: &str,
        resume: bool,
        groups: Option<&str>,
    ) -> Result<Tls, String> {
        let pem = std::fs::read(ca).map_err(|e| format!("--ca {ca}: {e}"))?;
        let mut roots = RootCertStore::empty();
        let mut pins = Vec::new();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("--ca {ca}: {e}"))?;
            pins.push(cert.clone());
            roots.add(cert).map_err(|e| format!("--ca {ca}: {e}"))?;
        }
        if roots.is_empty() {
            return Err(format!("--ca {ca}: no CERTIFICATE block in the file"));
        }
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        // Offer suites in a browser's order (Chrome, Firefox and Safari put TLS13_AES_128_GCM_SHA256
        // first; rustls' own order starts with AES-256/SHA-384, which costs the server ~14 % more
        // instructions per resumed handshake and more per record): the server follows the client's order.
        if let Some(i) = provider
            .cipher_suites
            .iter()
            .position(|s| s.suite() == rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        {
            let aes128 = provider.cipher_suites.remove(i);
            provider.cipher_suites.insert(0, aes128);
        }
        if let Some(list) = groups {
            provider.kx_groups = list
                .split(',')
                .map(|name| {
                    rustls::crypto::aws_lc_rs::ALL_KX_GROUPS
                        .iter()
                        .find(|g| format!("{:?}", g.name()).eq_ignore_ascii_case(name.trim()))
                        .copied()
                        .ok_or_else(|| format!("--tls-groups: unknown group `{name}`"))
                })
                .collect::<Result<_, _>>()?;
        }
        let provider = Arc::new(provider);
        let verifier = Pinned {
            pins,
            webpki: WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("--ca {ca}: {e}"))?,
            algs: provider.signature_verification_algorithms,
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        if !resume {
            config.resumption = rustls::client::Resumption::disabled();
        }
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|e| format!("--server-name {server_name}: {e}"))?;
        Ok(Tls {
            config: Arc::new(config),
            name,
            resume,
        })
    }

    /// A new session; its ClientHello is queued (write it with [`flush`]). With `--tls-resume`,
    /// `own` is the connection's own configuration (made at its first session: its own ticket store),
    /// reused by its reconnects.
    pub fn session(
        &self,
        own: &mut Option<Arc<ClientConfig>>,
    ) -> Result<Box<ClientConnection>, String> {
        let config = if self.resume {
            own.get_or_insert_with(|| {
                let mut c = (*self.config).clone();
                c.resumption = rustls::client::Resumption::in_memory_sessions(1);
                Arc::new(c)
            })
            .clone()
        } else {
            self.config.clone()
        };
        let mut c = ClientConnection::new(config, self.name.clone()).map_err(|e| e.to_string())?;
        // Our own code bounds what we queue (subscribe, pong, close): no limit, no silent short writes.
        c.set_buffer_limit(None);
        Ok(Box::new(c))
    }
}

/// The server's certificate: pinned (byte-equal to one of the `--ca` file) or WebPKI-verified; the
/// handshake signature always checked (see the module doc).
#[derive(Debug)]
struct Pinned {
    pins: Vec<CertificateDer<'static>>,
    webpki: Arc<WebPkiServerVerifier>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pins.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// What the peer did, as far as TLS can tell.
pub enum Received {
    /// Decrypted bytes (possibly none) were appended.
    Data,
    /// The server sent close_notify: no more plaintext will come.
    Closed,
}

/// Feeds `data` (ciphertext just read from the socket) to the session and appends the plaintext to
/// `out`. An error is a TLS failure (bad record, certificate refused, alert from the server).
pub fn receive(
    conn: &mut ClientConnection,
    mut data: &[u8],
    out: &mut Vec<u8>,
) -> Result<Received, String> {
    let mut closed = false;
    while !data.is_empty() {
        // Takes at most what fits in rustls's record buffer (a record or 4 KiB at a time); 0 once
        // close_notify has arrived (anything after it is ignored).
        if conn.read_tls(&mut data).map_err(|e| e.to_string())? == 0 {
            closed = true;
            break;
        }
        let state = conn.process_new_packets().map_err(|e| e.to_string())?;
        let n = state.plaintext_bytes_to_read();
        closed |= state.peer_has_closed();
        if n > 0 {
            let start = out.len();
            out.resize(start + n, 0);
            conn.reader()
                .read_exact(&mut out[start..])
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(if closed {
        Received::Closed
    } else {
        Received::Data
    })
}

/// Queues `data` as application data (encrypted at once; written by [`flush`]).
pub fn send(conn: &mut ClientConnection, data: &[u8]) {
    // With no buffer limit, write_all only fails after close_notify was sent; nothing to send then.
    let _ = conn.writer().write_all(data);
}

/// Writes queued TLS records to `fd` until done or the socket is full. Ok(true): all written;
/// Ok(false): some left (wait for EPOLLOUT); Err: the socket failed.
pub fn flush(conn: &mut ClientConnection, fd: i32) -> std::io::Result<bool> {
    let mut w = Fd(fd);
    while conn.wants_write() {
        match conn.write_tls(&mut w) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// What was negotiated, for the result file.
pub fn describe(conn: &ClientConnection) -> Value {
    json!({
        "version": conn.protocol_version().map(|v| format!("{v:?}")),
        "cipher_suite": conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())),
        "key_exchange": conn.negotiated_key_exchange_group().map(|g| format!("{:?}", g.name())),
        "handshake": conn.handshake_kind().map(|k| format!("{k:?}")),
        "alpn": conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
    })
}

/// `GET /healthz` over TLS (blocking, short timeouts): Ok on a 200, else what went wrong.
pub fn healthz(tls: &Tls, target: SocketAddrV4) -> Result<(), String> {
    let tcp = TcpStream::connect_timeout(&target.into(), Duration::from_millis(500))
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(2)));
    let mut s = rustls::StreamOwned::new(*tls.session(&mut None)?, tcp);
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    // The handshake runs inside the first write: a refused certificate shows up here.
    s.write_all(req.as_bytes())
        .map_err(|e| format!("TLS: {e}"))?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(format!("TLS: {e}")),
        }
    }
    if buf[..n].starts_with(b"HTTP/1.1 200") || buf[..n].starts_with(b"HTTP/1.0 200") {
        Ok(())
    } else {
        Err(format!(
            "answer `{}`",
            String::from_utf8_lossy(&buf[..n]).trim()
        ))
    }
}

/// A raw descriptor as `Write` for `write_tls` (EAGAIN comes back as `WouldBlock`).
struct Fd(i32);

impl Write for Fd {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = unsafe { libc::write(self.0, buf.as_ptr() as *const _, buf.len()) };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        let n = unsafe {
            libc::writev(
                self.0,
                bufs.as_ptr() as *const libc::iovec,
                bufs.len().min(64) as i32,
            )
        };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
