//! Shared helpers for integration tests: start the real `ringcast` binary, talk raw HTTP and raw
//! WebSocket frames to it over real sockets. Every wait is bounded; the server is killed on drop.
#![allow(dead_code)]

mod access;
pub mod cases;
pub mod cluster;
mod feed;
mod process;
pub mod redis_tls;
mod temp_dir;
mod ws;

// Re-exported so `use common::*` finds them; a test binary that uses none of them must not warn.
#[allow(unused_imports)]
pub use access::*;
#[allow(unused_imports)]
pub use feed::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use temp_dir::TempDir;
#[allow(unused_imports)]
pub use ws::*;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The `ringcast` binary under test: cargo's build, or `RINGCAST_TEST_BIN` (e.g. an older build, to show
/// that a new regression test fails on it).
pub fn bin() -> String {
    std::env::var("RINGCAST_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ringcast").to_string())
}

/// A running `ringcast serve`, stopped (SIGKILL) when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// `ringcast serve --listen 127.0.0.1:<free port> <args>`; returns once `/healthz` answers.
    pub fn start(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    /// A server whose port speaks TLS: ready once it accepts TCP (health is checked over TLS by the test).
    pub fn start_tls(args: &[&str]) -> Server {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::env::var("RINGCAST_TEST_LOG").unwrap_or_else(|_| "warn".into());
        let mut cmd = Command::new(bin());
        cmd.args(["--log", &log, "serve", "--listen", &addr.to_string()])
            .args(args);
        let child = cmd.stdin(Stdio::null()).spawn().expect("start ringcast");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "TLS server did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, addr }
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_under(&[], args, env)
    }

    /// A server whose RLIMIT_NOFILE (soft and hard) is `limit`: started under `prlimit`, which execs it
    /// (the PID is the server's).
    pub fn start_with_nofile(limit: u64, args: &[&str]) -> Server {
        let nofile = format!("--nofile={limit}:{limit}");
        Self::start_under(&["prlimit", &nofile, "--"], args, &[])
    }

    /// `ringcast serve --listen <addr> <args>` (e.g. a replacement with `--join` on the port of a server
    /// still running); returns once `/healthz` on `addr` answers.
    pub fn start_at(addr: SocketAddr, args: &[&str]) -> Server {
        Self::start_under_at(addr, &[], args, &[])
    }

    /// `wrapper… ringcast serve …` (an empty wrapper runs ringcast itself); returns once `/healthz` answers.
    fn start_under(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Server {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::start_under_at(addr, wrapper, args, env)
    }

    fn start_under_at(
        addr: SocketAddr,
        wrapper: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let log = std::env::var("RINGCAST_TEST_LOG").unwrap_or_else(|_| "warn".into());
        let bin = bin();
        let mut cmd = match wrapper {
            [] => Command::new(&bin),
            [first, rest @ ..] => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(&bin);
                cmd
            }
        };
        cmd.args(["--log", &log, "serve", "--listen", &addr.to_string()])
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.stdin(Stdio::null()).spawn().expect("start ringcast");
        let server = Server { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok((200, _)) = server.try_get("/healthz") {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "server did not answer /healthz within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal to the server process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Wait until the process exits; its exit code, or None if it is still running after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn try_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
        let resp = read_to_close(&mut s);
        Ok((
            status_of(&resp),
            String::from_utf8_lossy(&resp).into_owned(),
        ))
    }

    /// `GET path` → (status, whole response text).
    pub fn get(&self, path: &str) -> (u16, String) {
        self.try_get(path).expect("GET")
    }

    /// Sum of a metric over all its label sets, from `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let (status, text) = self.get("/metrics");
        assert_eq!(status, 200);
        metric_sum(&text, name)
    }

    /// Values of a per-worker metric, indexed by worker.
    pub fn metric_per_worker(&self, name: &str) -> Vec<f64> {
        let (_, text) = self.get("/metrics");
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{worker=")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .collect()
    }

    /// Wait until the server's feed is up (its first Redis snapshot taken), so ticks published next reach it.
    pub fn wait_feed_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.metric("ringcast_feed_snapshots_total") < 1.0 {
            assert!(
                Instant::now() < deadline,
                "the feed did not come up within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Raw TCP connection with timeouts.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// A raw connection that completed the WebSocket upgrade.
    pub fn ws(&self) -> TcpStream {
        let mut s = self.connect();
        s.write_all(upgrade_request("/").as_bytes()).unwrap();
        let head = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101"), "expected 101, got {head}");
        s
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sum of metric `name` over all its label sets, in a `/metrics` text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A real `redis-server` on a free port, stopped by PID when dropped.
pub fn start_redis() -> ringcast::cli::redis_server::RedisServer {
    use ringcast::cli::redis_server::RedisServer;
    let port = RedisServer::free_port().expect("a free port");
    RedisServer::start(port).unwrap_or_else(|e| panic!("{e}"))
}

/// `CONFIG SET key value` on a Redis connection.
pub fn config_set(con: &mut redis::Connection, key: &str, value: &str) {
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(key)
        .arg(value)
        .query(con)
        .unwrap();
}

/// A Redis connection with timeouts.
pub fn redis_con(url: &str) -> redis::Connection {
    let client = redis::Client::open(url).unwrap();
    let con = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    con.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    con
}

impl Server {
    /// A server started by the test itself (e.g. without `--listen`, or `--processes N`), reachable at
    /// `addr`, killed when dropped; returns once `/healthz` answers 200.
    /// A deadline, not a speed target: 30 s leaves room for a loaded 2-core CI box (a `demo` starts
    /// redis-server first); a process that exits meanwhile fails at once, with its status.
    pub fn adopt(child: Child, addr: SocketAddr) -> Server {
        let mut server = Server { child, addr };
        poll_until(Duration::from_secs(30), "/healthz answers 200", || {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the process exited before /healthz answered: {status}");
            }
            matches!(server.try_get("/healthz"), Ok((200, _)))
        });
        server
    }

    /// `ringcast serve --listen 127.0.0.1:<free port> <args>` at the default log level (`RINGCAST_LOG`
    /// unset: info), its output captured; returns once `/healthz` answers.
    pub fn start_logged(args: &[&str]) -> (Server, Captured) {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let listen = addr.to_string();
        let mut all = vec!["serve", "--listen", &listen];
        all.extend_from_slice(args);
        let mut child = ringcast_command(&all, &[])
            .env_remove("RINGCAST_LOG")
            .spawn()
            .expect("start ringcast");
        let out = Captured::of(&mut child);
        (Server::adopt(child, addr), out)
    }

    /// The value of one labelled series, e.g. `metric_labelled("ringcast_refusals_total", "code=\"401\"")`
    /// (0 when absent).
    pub fn metric_labelled(&self, name: &str, labels: &str) -> f64 {
        let (status, text) = self.get("/metrics");
        assert_eq!(status, 200);
        let series = format!("{name}{{{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series)?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Wait (at most 5 s) until the refusal with `code` is counted `count` times in `/metrics`
    /// (`ringcast_refusals_total{code}`) and logged at info level (`INFO … refused code=<code>`) in `out`.
    pub fn refusal_counted_and_logged(&self, out: &Captured, code: u16, count: f64) {
        let labels = format!("code=\"{code}\"");
        let field = format!("code={code} ");
        poll_until(
            Duration::from_secs(5),
            &format!("refusal {code} counted {count} times and logged"),
            || {
                self.metric_labelled("ringcast_refusals_total", &labels) == count
                    && out
                        .text()
                        .lines()
                        .any(|l| l.contains("INFO") && l.contains("refused") && l.contains(&field))
            },
        );
    }

    /// `GET path` that may fail (e.g. while the server is stopping).
    pub fn try_status(&self, path: &str) -> Option<u16> {
        self.try_get(path).ok().map(|(status, _)| status)
    }

    /// Whether the process has exited (without waiting).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

/// HSET the tick as the latest of its symbol and PUBLISH it, atomically (what `ringcast publish` does).
pub fn publish_tick(con: &mut redis::Connection, prefix: &str, tick: &str) {
    let v: serde_json::Value = serde_json::from_str(tick).unwrap();
    let symbol = v["symbol"].as_str().unwrap();
    let () = redis::pipe()
        .atomic()
        .hset(format!("{prefix}ticks"), symbol, tick)
        .ignore()
        .publish(format!("{prefix}ticks"), tick)
        .ignore()
        .query(con)
        .unwrap();
}

impl Server {
    /// A child that serves no port (e.g. `ringcast feed`), handled like a server: signals, exit, killed
    /// when dropped.
    pub fn process(child: Child) -> Server {
        Server {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }
}
