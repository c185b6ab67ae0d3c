//! Shared helpers for integration tests: start the real `ringcast` binary, talk raw HTTP and raw
//! WebSocket frames to it over real sockets. Every wait is bounded; the server is killed on drop.
#![allow(dead_code)]

mod access;
pub mod cases;
pub mod cluster;
mod feed;
pub mod redis_tls;
mod temp_dir;

// Re-exported so `use common::*` finds them; a test binary that uses none of them must not warn.
#[allow(unused_imports)]
pub use access::*;
#[allow(unused_imports)]
pub use feed::*;
#[allow(unused_imports)]
pub use temp_dir::TempDir;

use std::io::{Read, Write};
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

pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Everything until the peer closes (or 5 s pass).
pub fn read_to_close<S: Read>(s: &mut S) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    out
}

/// Read an HTTP response head byte by byte (so nothing after it is consumed).
pub fn read_head<S: Read>(s: &mut S) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

pub fn status_of(resp: &[u8]) -> u16 {
    std::str::from_utf8(resp)
        .ok()
        .and_then(|t| t.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A masked client frame.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_with_len(fin, opcode, payload, None)
}

/// A masked client frame; `rsv` bits OR-ed into the first byte.
pub fn frame_rsv(rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = frame(true, opcode, payload);
    f[0] |= rsv;
    f
}

/// A masked client frame with the length encoded in a chosen form: `Some(126)` or `Some(127)` forces the
/// extended forms (for non-minimal encodings).
pub fn frame_with_len(fin: bool, opcode: u8, payload: &[u8], form: Option<u8>) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let len = payload.len();
    match form {
        Some(126) => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        Some(127) => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        _ if len < 126 => out.push(0x80 | len as u8),
        _ if len < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// An unmasked (invalid, from a client) frame.
pub fn unmasked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode, payload.len() as u8];
    out.extend_from_slice(payload);
    out
}

/// Read one server frame: (fin, opcode, payload). None on EOF or timeout.
pub fn read_frame<S: Read>(s: &mut S) -> Option<(bool, u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).ok()?;
    assert_eq!(h[1] & 0x80, 0, "server frames are never masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).ok()?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).ok()?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).ok()?;
    Some((h[0] & 0x80 != 0, h[0] & 0x0f, payload))
}

/// Read frames until a Close; returns its status code (None if the payload was empty or the stream ended).
pub fn read_close_code<S: Read>(s: &mut S) -> Option<u16> {
    loop {
        let (_, opcode, payload) = read_frame(s)?;
        if opcode == 0x8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
}

/// Read one text frame's payload.
pub fn read_text<S: Read>(s: &mut S) -> String {
    let (_, opcode, payload) = read_frame(s).expect("a frame");
    assert_eq!(opcode, 0x1, "expected a text frame");
    String::from_utf8(payload).unwrap()
}

/// True if the server closes the TCP connection within `within`.
pub fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
        if start.elapsed() > within {
            return false;
        }
    }
}

/// A real `redis-server` on a free port, stopped by PID when dropped.
pub fn start_redis() -> ringcast::cli::redis_server::RedisServer {
    use ringcast::cli::redis_server::RedisServer;
    let port = RedisServer::free_port().expect("a free port");
    RedisServer::start(port).unwrap_or_else(|e| panic!("{e}"))
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

// ---------------------------------------------------------------------------------------------------
// Helpers for the behaviour_* tests (one test per documented behaviour): other subcommands and process
// trees, captured output, polling with a deadline.

/// Stdout and stderr of a child, collected on threads as it runs.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// Take `child`'s piped stdout and stderr and collect them (interleaved by line arrival).
    pub fn of(child: &mut Child) -> Captured {
        let out = Captured::default();
        let pipes: Vec<Box<dyn Read + Send>> = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        for mut pipe in pipes {
            let sink = out.0.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
        out
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// `ringcast <args>` with extra environment, stdout and stderr piped (use `Captured::of`).
pub fn ringcast_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A finished command's stdout, then its stderr, as text.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
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

/// Poll `ready` every 20 ms; panics naming `what` if it is not true within `within`.
pub fn poll_until(within: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The PIDs of `pid`'s children.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![];
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `pid` and all its descendants.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        all.extend(children_of(all[i]));
        i += 1;
    }
    all
}

/// Whether `pid` is a running process (not gone, not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Send `sig` to `pid`.
pub fn kill_pid(pid: u32, sig: i32) {
    ringcast::runtime::signals::kill(pid, sig);
}

/// SIGKILLs every descendant of a process (found when dropped), for processes a test starts indirectly
/// (a supervisor's children, the demo's redis-server/server/feed). Declare it after the parent's handle
/// so it drops first, while the parent still holds them.
pub struct ReapDescendants(pub u32);

impl Drop for ReapDescendants {
    fn drop(&mut self) {
        for pid in process_tree(self.0).into_iter().skip(1) {
            kill_pid(pid, 9);
        }
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

/// Send one text message on a raw WebSocket connection.
pub fn send_text<S: Write>(s: &mut S, text: &str) {
    s.write_all(&frame(true, 0x1, text.as_bytes())).unwrap();
}

/// The next text message as JSON, skipping pings.
pub fn read_json<S: Read>(s: &mut S) -> serde_json::Value {
    loop {
        let (_, opcode, payload) = read_frame(s).expect("a message in time");
        match opcode {
            0x1 => return serde_json::from_slice(&payload).unwrap(),
            0x9 | 0xA => {}
            other => panic!("expected a text message, got opcode {other:#x}: {payload:?}"),
        }
    }
}

/// The next JSON message that is not a feed status: a server without a reachable Redis tells every
/// connection `{"type":"feed","status":"down"}` at a moment of its own, which may come before a reply.
pub fn read_reply<S: Read>(s: &mut S) -> serde_json::Value {
    loop {
        let v = read_json(s);
        if v["type"] != "feed" {
            return v;
        }
    }
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

/// The path of `tool` on PATH, or None after the line `{test}: skipped: {tool} not installed
/// ({install}){skipped}` — a failure under CI=true, where tests/run.sh has installed every tool.
pub fn installed_tool(test: &str, tool: &str, install: &str, skipped: &str) -> Option<String> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if found.is_none() {
        let ci = matches!(std::env::var("CI").as_deref(), Ok("true" | "1"));
        assert!(!ci, "{tool} is not installed (CI=true: {install})");
        println!("{test}: skipped: {tool} not installed ({install}){skipped}");
    }
    found
}
