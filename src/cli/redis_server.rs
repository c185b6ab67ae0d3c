//! A throw-away `redis-server` child on 127.0.0.1 (no persistence): for `ringcast demo` when no Redis
//! answers, and for the integration tests (a real Redis, never a mock).

use std::fmt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::process;

/// How long a starting redis-server gets to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why redis-server could not be started.
#[derive(Debug)]
pub enum RedisServerError {
    /// No `redis-server` binary (`RINGCAST_REDIS_SERVER` or PATH).
    NotInstalled,
    /// The binary would not run.
    Spawn { binary: PathBuf, error: String },
    /// It exited, or did not answer PING in time; `log` is the end of its log.
    NotReady { port: u16, why: String, log: String },
}

impl fmt::Display for RedisServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisServerError::NotInstalled => write!(
                f,
                "redis-server is not installed (nor set in RINGCAST_REDIS_SERVER); install it with: \
                 apt-get install -y redis-server"
            ),
            RedisServerError::Spawn { binary, error } => {
                write!(f, "cannot run {}: {error}", binary.display())
            }
            RedisServerError::NotReady { port, why, log } => {
                write!(f, "redis-server on port {port} {why}")?;
                if !log.is_empty() {
                    write!(f, "; its log ends with:\n{log}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for RedisServerError {}

/// A running redis-server child, stopped (by PID) on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
    log: PathBuf,
    /// Serving TLS only (`--port 0 --tls-port <port>`).
    tls: bool,
}

/// The certificate files of a TLS redis-server (PEM).
pub struct TlsFiles<'a> {
    pub cert: &'a std::path::Path,
    pub key: &'a std::path::Path,
    /// The CA that signed `cert`: what a client trusts (`--redis-ca`).
    pub ca: &'a std::path::Path,
}

impl RedisServer {
    /// The redis-server binary: `RINGCAST_REDIS_SERVER`, else the first `redis-server` on PATH.
    pub fn binary() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("RINGCAST_REDIS_SERVER").filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    }

    /// A TCP port that was free a moment ago on 127.0.0.1.
    pub fn free_port() -> std::io::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    }

    /// Start `redis-server --port <port> --bind 127.0.0.1 --save '' --appendonly no` and wait (bounded)
    /// until it answers PING.
    pub fn start(port: u16) -> Result<RedisServer, RedisServerError> {
        RedisServer::start_with(port, &[])
    }

    /// `start` with extra redis-server arguments (later ones win, e.g. `--dir D --dbfilename F` to load
    /// a saved dataset).
    pub fn start_with(port: u16, extra: &[&str]) -> Result<RedisServer, RedisServerError> {
        RedisServer::spawn(port, None, extra)
    }

    /// `start_with`, serving TLS only on `port` (`--port 0 --tls-port <port>`, clients not asked for a
    /// certificate; `extra` may add `--tls-cluster yes` and so on); ready once it answers PING over TLS.
    pub fn start_tls(
        port: u16,
        tls: &TlsFiles,
        extra: &[&str],
    ) -> Result<RedisServer, RedisServerError> {
        RedisServer::spawn(port, Some(tls), extra)
    }

    fn spawn(
        port: u16,
        tls: Option<&TlsFiles>,
        extra: &[&str],
    ) -> Result<RedisServer, RedisServerError> {
        let binary = RedisServer::binary().ok_or(RedisServerError::NotInstalled)?;
        let log =
            std::env::temp_dir().join(format!("ringcast-redis-{port}-{}.log", std::process::id()));
        let spawn_error = |error: String| RedisServerError::Spawn {
            binary: binary.clone(),
            error,
        };
        let log_file = std::fs::File::create(&log).map_err(|e| spawn_error(e.to_string()))?;
        let mut cmd = Command::new(&binary);
        match tls {
            None => cmd.args(["--port", &port.to_string()]),
            Some(t) => cmd
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(t.cert)
                .arg("--tls-key-file")
                .arg(t.key)
                .arg("--tls-ca-cert-file")
                .arg(t.ca)
                .args(["--tls-auth-clients", "no"]),
        };
        cmd.args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::null());
        process::guard(&mut cmd);
        let child = cmd.spawn().map_err(|e| spawn_error(e.to_string()))?;
        let mut server = RedisServer {
            child,
            port,
            log,
            tls: tls.is_some(),
        };
        let url = server.url();
        let ca = match tls {
            Some(t) => Some(std::fs::read(t.ca).map_err(|e| spawn_error(e.to_string()))?),
            None => None,
        };
        let ready = process::wait_for(READY_TIMEOUT, || {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Some(Err(format!("exited ({status})")));
            }
            ping_with(&url, ca.as_deref()).then_some(Ok(()))
        });
        match ready {
            Some(Ok(())) => Ok(server),
            Some(Err(why)) => Err(server.not_ready(why)),
            None => Err(server.not_ready(format!("did not answer PING within {READY_TIMEOUT:?}"))),
        }
    }

    fn not_ready(&mut self, why: String) -> RedisServerError {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let log = lines[lines.len().saturating_sub(5)..].join("\n");
        RedisServerError::NotReady {
            port: self.port,
            why,
            log,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` when serving TLS)
    pub fn url(&self) -> String {
        let s = if self.tls { "s" } else { "" };
        format!("redis{s}://127.0.0.1:{}", self.port)
    }

    /// Kill it at once (SIGKILL), like a crash; waits for the process to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        process::stop(&mut self.child, Duration::from_secs(3));
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Whether a Redis at `url` answers PING within about a second.
pub fn ping(url: &str) -> bool {
    ping_with(url, None)
}

/// [`ping`], a `rediss://` URL trusting `ca` (PEM) if given.
pub fn ping_with(url: &str, ca: Option<&[u8]>) -> bool {
    let Ok(client) = crate::ingest::redis_tls::client(url, ca) else {
        return false;
    };
    let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
        return false;
    };
    if con.set_read_timeout(Some(Duration::from_secs(1))).is_err() {
        return false;
    }
    redis::cmd("PING").query::<String>(&mut con).is_ok()
}
