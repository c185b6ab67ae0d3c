//! The pieces of tests/fleet_netns.rs: namespaces ([`netns`]), the Redis Cluster ([`cluster`]), the
//! client host ([`client`]), and here the edges and the HAProxy host.

pub mod client;
pub mod cluster;
pub mod netns;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::common::{Captured, bin, metric_sum, poll_until, read_to_close};
use netns::{Proc, in_ns};

/// The feed's key prefix and shard count in the fleet.
pub const PREFIX: &str = "fl:";
pub const SHARDS: u32 = 16;
/// The edges' `--drain-window` (RINGCAST_DRAIN_WINDOW).
pub const DRAIN_WINDOW_S: u64 = 2;

/// One edge host: `ringcast serve --redis-cluster … --proxy-protocol --trusted-proxies …` in its
/// namespace, its log captured.
pub struct Edge {
    pub ns: String,
    pub addr: SocketAddr,
    pub proc: Option<Proc>,
    pub log: Captured,
}

impl Edge {
    /// Start (or restart) the edge; returns once it logs "listening" and its feed is up.
    pub fn start(ns: &str, addr: SocketAddr, seeds: &str, trusted: &str) -> Edge {
        let mut edge = Edge {
            ns: ns.to_string(),
            addr,
            proc: None,
            log: Captured::default(),
        };
        edge.restart(seeds, trusted);
        edge
    }

    pub fn restart(&mut self, seeds: &str, trusted: &str) {
        let listen = self.addr.to_string();
        let shards = SHARDS.to_string();
        let mut child = in_ns(&self.ns, &bin())
            .args([
                "--log",
                "info",
                "serve",
                "--listen",
                &listen,
                "--workers",
                "1",
            ])
            .args(["--redis-cluster", seeds, "--prefix", PREFIX])
            .args(["--feed-shards", &shards])
            .args(["--proxy-protocol", "--trusted-proxies", trusted])
            // Clients without an Origin are let in; a foreign one is refused (403) and logged with
            // the address the edge sees: the client host's, from the PROXY header.
            .args(["--origins", "http://fleet.test"])
            .env("RINGCAST_DRAIN_WINDOW", format!("{DRAIN_WINDOW_S}s"))
            .env_remove("RINGCAST_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start ringcast");
        let log = Captured::of(&mut child);
        let mut proc = Proc(child);
        poll_until(Duration::from_secs(15), "the edge listening", || {
            assert!(!proc.exited(), "the edge exited:\n{}", log.text());
            log.text().contains("listening")
        });
        self.proc = Some(proc);
        self.log = log;
        poll_until(Duration::from_secs(15), "the edge's feed up", || {
            self.try_metric("ringcast_feed_snapshots_total")
                .is_some_and(|n| n >= 1.0)
        });
    }

    /// `/metrics`, asked from the root namespace (a trusted proxy) behind a PROXY v2 `LOCAL` header.
    pub fn metrics(&self) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut req = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
        req.extend_from_slice(b"GET /metrics HTTP/1.1\r\nHost: fleet\r\n\r\n");
        s.write_all(&req).ok()?;
        let text = String::from_utf8_lossy(&read_to_close(&mut s)).into_owned();
        text.starts_with("HTTP/1.1 200").then_some(text)
    }

    pub fn try_metric(&self, name: &str) -> Option<f64> {
        self.metrics().map(|t| metric_sum(&t, name))
    }

    /// Open WebSocket connections: `ringcast_connections_open` counts every TCP connection, the
    /// `/metrics` request that asks too.
    pub fn websockets(&self) -> usize {
        self.metric("ringcast_connections_open") as usize - 1
    }

    pub fn metric(&self, name: &str) -> f64 {
        self.try_metric(name)
            .unwrap_or_else(|| panic!("{}: no /metrics", self.addr))
    }

    /// Send `sig` to the edge process and wait (bounded) for it to exit.
    pub fn stop(&mut self, sig: i32, within: Duration) {
        let mut proc = self.proc.take().expect("a running edge");
        crate::common::kill_pid(proc.pid(), sig);
        let deadline = std::time::Instant::now() + within;
        while !proc.exited() {
            if std::time::Instant::now() > deadline {
                let log = self.log.text();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!(
                    "edge {} still running {within:?} after signal {sig}; its log ends:\n{}",
                    self.addr,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `deploy/haproxy.cfg` for the fleet: listening on `listen`, the edges at `edges` (with the file's
/// `default-server` options: `/readyz` checks, send-proxy-v2, leastconn), in the foreground, its stats
/// socket at `stats`. Nothing else changes.
pub fn haproxy_config(listen: SocketAddr, edges: &[SocketAddr], stats: &Path) -> String {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy.cfg"))
            .expect("deploy/haproxy.cfg");
    let mut out = String::new();
    let mut section = "";
    let mut servers_written = false;
    for line in text.lines() {
        let word = line.split_whitespace().next().unwrap_or("");
        if !line.starts_with(' ') && !word.is_empty() && !word.starts_with('#') {
            section = word;
        }
        match (section, word) {
            (_, "") => {}
            _ if word.starts_with('#') => {}
            ("global", "log" | "user" | "group" | "daemon") => {}
            ("global", "stats") => out.push_str(&format!(
                "    stats socket {} mode 600 level admin\n",
                stats.display()
            )),
            ("global", "maxconn") => out.push_str("    maxconn 2000\n"),
            (_, "bind") => out.push_str(&format!("    bind {listen}\n")),
            (_, "server") => {
                if !servers_written {
                    for (i, e) in edges.iter().enumerate() {
                        out.push_str(&format!("    server edge{} {e}\n", i + 1));
                    }
                    servers_written = true;
                }
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    assert!(servers_written, "server lines in deploy/haproxy.cfg");
    out
}

/// HAProxy's view of each edge (`show stat` on its stats socket): (name, status and last check, current
/// sessions, total sessions).
pub fn haproxy_servers(stats: &Path) -> Vec<(String, String, u64, u64)> {
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(stats) else {
        return Vec::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(b"show stat\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .filter(|l| l.starts_with("ringcast_edges,edge"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let check = format!("{} {} {}", f[17], f[36], f[37]);
            (
                f[1].to_string(),
                check.trim().to_string(),
                f[4].parse().unwrap_or(0),
                f[7].parse().unwrap_or(0),
            )
        })
        .collect()
}

/// Wait until HAProxy says every edge in `up` is UP (and the others are not).
pub fn wait_haproxy(stats: &Path, up: &[bool], within: Duration) {
    poll_until(within, "HAProxy's edge states", || {
        let servers = haproxy_servers(stats);
        servers.len() == up.len()
            && servers
                .iter()
                .zip(up)
                .all(|((_, status, _, _), &u)| status.starts_with("UP") == u)
    });
}

/// Samples HAProxy's edge states every 50 ms until dropped: the longest time no edge was UP.
pub struct NoEdgeUp {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Duration>>,
}

impl NoEdgeUp {
    pub fn start(stats: &Path) -> NoEdgeUp {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, stats) = (stop.clone(), stats.to_path_buf());
        let thread = std::thread::spawn(move || {
            let (mut longest, mut since) = (Duration::ZERO, None::<std::time::Instant>);
            while !s.load(Ordering::Relaxed) {
                let servers = haproxy_servers(&stats);
                let none = !servers.is_empty() && servers.iter().all(|s| !s.1.starts_with("UP"));
                match (none, since) {
                    (true, None) => since = Some(std::time::Instant::now()),
                    (false, Some(t)) => {
                        longest = longest.max(t.elapsed());
                        since = None;
                    }
                    _ => {}
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            since.map_or(longest, |t| longest.max(t.elapsed()))
        });
        NoEdgeUp {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop sampling; the longest time without an edge UP.
    pub fn longest(mut self) -> Duration {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for NoEdgeUp {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
