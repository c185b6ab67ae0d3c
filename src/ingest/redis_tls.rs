//! TLS to Redis (`rediss://`): which certificates are trusted, and the TLS connections of the cluster
//! subscriber (the only Redis connections Ringcast makes itself; the others go through the redis crate,
//! built with its `tls-rustls` feature).
//!
//! Trust: with `--redis-ca FILE` (PEM, one or more certificates) exactly those CAs; without it the
//! system's roots (what `rustls-native-certs` finds: `/etc/ssl/certs`, `SSL_CERT_FILE`…). The server's
//! certificate must name the host of the URL (a DNS name, or an IP address as an IP SAN); nothing here
//! turns verification off.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redis::{ConnectionAddr, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// What `explain` adds to a TLS verification failure.
pub const UNTRUSTED_HINT: &str = "the Redis server's TLS certificate is not trusted: give the CA that signed it with --redis-ca FILE (RINGCAST_REDIS_CA), and use a host name the certificate names";

/// The PEM text of `--redis-ca`, checked to hold at least one certificate.
pub fn load_ca(path: &Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| {
        format!(
            "--redis-ca (RINGCAST_REDIS_CA): cannot read {}: {e}",
            path.display()
        )
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--redis-ca: {} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--redis-ca: {} holds no certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(pem)
}

/// A redis crate client for `url`; a `rediss://` URL trusts `ca` (PEM) when given, else the system roots.
pub fn client(url: &str, ca: Option<&[u8]>) -> redis::RedisResult<redis::Client> {
    let client = redis::Client::open(url)?;
    match (client.get_connection_info().addr(), ca) {
        (ConnectionAddr::TcpTls { .. }, Some(pem)) => redis::Client::build_with_tls(
            client.get_connection_info().clone(),
            TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        ),
        _ => Ok(client),
    }
}

/// The rustls client configuration of the cluster subscriber: the same trust as [`client`].
pub fn client_config(ca: Option<&[u8]>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("--redis-ca: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("--redis-ca: not a CA certificate: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert); // a malformed system root is skipped, as curl does
            }
        }
    }
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A connection to a Redis node: plain TCP or TLS over it.
pub enum Link {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Link {
    /// Connect to `host:port` (within `connect_timeout`), with `read_write` as the socket's timeouts, and
    /// with `tls` finish the TLS handshake (the certificate checked against `host`). Also returns a clone
    /// of the socket, to shut it down from another thread.
    pub fn connect(
        host: &str,
        port: u16,
        tls: Option<&Arc<ClientConfig>>,
        connect_timeout: Duration,
        read_write: Duration,
    ) -> Result<(Link, TcpStream), String> {
        let addr: SocketAddr = (host, port)
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("no address")?;
        let mut sock =
            TcpStream::connect_timeout(&addr, connect_timeout).map_err(|e| e.to_string())?;
        sock.set_nodelay(true).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(read_write))
            .and_then(|()| sock.set_write_timeout(Some(read_write)))
            .map_err(|e| e.to_string())?;
        let clone = sock.try_clone().map_err(|e| e.to_string())?;
        let Some(config) = tls else {
            return Ok((Link::Plain(sock), clone));
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("`{host}` cannot be checked against a certificate: {e}"))?;
        let mut conn = ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut sock) {
                return Err(handshake_error(&e));
            }
        }
        Ok((Link::Tls(Box::new(StreamOwned::new(conn, sock))), clone))
    }

    /// Set the socket's read timeout.
    pub fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.set_read_timeout(Some(timeout)),
            Link::Tls(s) => s.sock.set_read_timeout(Some(timeout)),
        }
    }
}

/// A failed TLS handshake, said plainly.
fn handshake_error(e: &io::Error) -> String {
    let text = e.to_string();
    if is_untrusted(&text) {
        format!("TLS handshake failed: {UNTRUSTED_HINT} [{text}]")
    } else {
        format!("TLS handshake failed: {text} (is this a TLS port? check the URL's scheme)")
    }
}

/// Whether an error text is a certificate verification failure.
pub fn is_untrusted(text: &str) -> bool {
    text.contains("invalid peer certificate") || text.contains("certificate not valid")
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.read(buf),
            Link::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.write(buf),
            Link::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.flush(),
            Link::Tls(s) => s.flush(),
        }
    }
}
