//! Certificates for TLS redis-servers in tests, made with the `openssl` CLI in a temp dir: a CA, a server
//! certificate it signed for `localhost` and `127.0.0.1` (not `127.0.0.2`: a server also bound there shows
//! a certificate for another name), and an unrelated CA (one the server's certificate does not chain to).

use std::path::PathBuf;
use std::process::Command;

use ringcast::cli::redis_server::{RedisServer, RedisServerError, TlsFiles};

use super::TempDir;

pub struct TestCerts {
    pub dir: TempDir,
}

/// A new P-256 key, unencrypted, SHA-256 signatures: the key arguments of every `openssl req` here.
const NEW_EC_KEY: &[&str] = &[
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-sha256",
];

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl (apt-get install -y openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCerts {
    pub fn new() -> TestCerts {
        let dir = TempDir::new("redis-tls");
        let certs = TestCerts { dir };
        certs.ca("ca");
        certs.ca("other-ca");
        certs.leaf("server", "ca", "DNS:localhost,IP:127.0.0.1");
        certs
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    /// `path(name)` as text, for command lines.
    pub fn arg(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    /// `name.ext` in the directory, as text, for openssl's command lines.
    fn file(&self, name: &str, ext: &str) -> String {
        self.arg(&format!("{name}.{ext}"))
    }

    fn ca(&self, name: &str) {
        let subject = format!("/CN=ringcast test {name}");
        openssl(
            &[
                &["req", "-x509"],
                NEW_EC_KEY,
                &[
                    "-days",
                    "2",
                    "-subj",
                    &subject,
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                    "-keyout",
                    &self.file(name, "key"),
                    "-out",
                    &self.file(name, "crt"),
                ],
            ]
            .concat(),
        );
    }

    fn leaf(&self, name: &str, ca: &str, san: &str) {
        let ext = self.dir.file(
            &format!("{name}.ext"),
            &format!(
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
                 extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={san}\n"
            ),
        );
        openssl(
            &[
                &["req"],
                NEW_EC_KEY,
                &[
                    "-subj",
                    "/CN=redis",
                    "-keyout",
                    &self.file(name, "key"),
                    "-out",
                    &self.file(name, "csr"),
                ],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-sha256",
            "-days",
            "2",
            "-in",
            &self.file(name, "csr"),
            "-CA",
            &self.file(ca, "crt"),
            "-CAkey",
            &self.file(ca, "key"),
            "-set_serial",
            "1",
            "-extfile",
            &ext,
            "-out",
            &self.file(name, "crt"),
        ]);
    }

    /// The files of the `name` certificate (`server`), signed by `ca`.
    pub fn files(&self, name: &str) -> (PathBuf, PathBuf, PathBuf) {
        (
            self.path(&format!("{name}.crt")),
            self.path(&format!("{name}.key")),
            self.path("ca.crt"),
        )
    }

    /// A TLS-only redis-server on `port` with the `name` certificate, `extra` arguments after the TLS ones.
    pub fn start_redis(
        &self,
        name: &str,
        port: u16,
        extra: &[&str],
    ) -> Result<RedisServer, RedisServerError> {
        let (cert, key, ca) = self.files(name);
        let files = TlsFiles {
            cert: &cert,
            key: &key,
            ca: &ca,
        };
        RedisServer::start_tls(port, &files, extra)
    }

    /// A TLS-only redis-server on a free port with the `name` certificate; `extra` as for `start_with`.
    /// The port is free on every address `extra` binds besides 127.0.0.1 too (a port free on
    /// 127.0.0.1 may be some connection's local port on 127.0.0.2); one taken meanwhile (another
    /// test's cluster bus) is retried on another, up to 5 times.
    pub fn redis(&self, name: &str, extra: &[&str]) -> RedisServer {
        let also: Vec<&str> = extra
            .iter()
            .skip_while(|a| **a != "--bind")
            .skip(1)
            .take_while(|a| !a.starts_with("--"))
            .copied()
            .filter(|a| *a != "127.0.0.1")
            .collect();
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = RedisServer::free_port().expect("a free port");
            if also
                .iter()
                .any(|ip| std::net::TcpListener::bind((*ip, port)).is_err())
            {
                continue;
            }
            match self.start_redis(name, port, extra) {
                Ok(r) => return r,
                Err(e) => failures.push(e.to_string()),
            }
        }
        panic!("no redis-server started in 5 tries: {failures:#?}")
    }

    /// [`TestCerts::redis`] with `requirepass` set to `password` (after start: the start waits for an
    /// unauthenticated PING).
    pub fn redis_with_password(&self, name: &str, password: &str, extra: &[&str]) -> RedisServer {
        let redis = self.redis(name, extra);
        super::config_set(&mut self.con(&redis.url()), "requirepass", password);
        redis
    }

    /// A connection to a TLS redis at `url` trusting the test CA.
    pub fn con(&self, url: &str) -> redis::Connection {
        let ca = std::fs::read(self.path("ca.crt")).unwrap();
        let client = ringcast::ingest::redis_tls::client(url, Some(&ca)).unwrap();
        let con = client
            .get_connection_with_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        con.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        con
    }
}
