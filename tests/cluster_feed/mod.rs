//! The two ends of a Redis Cluster feed for tests/ingest_cluster.rs: a raw WebSocket client whose reader
//! thread records every tick, status and retirement it receives, and `ringcast publish --redis-cluster`.

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{self, Server, output_text, poll_until, read_frame, send_text};

pub const PREFIX: &str = "tc:";
pub const SHARDS: u32 = 16;

/// What one WebSocket client has received, collected by its reader thread.
#[derive(Default)]
pub struct Seen {
    /// Every tick as (symbol, p), in arrival order.
    pub ticks: Vec<(String, i64)>,
    /// When each of `ticks` arrived.
    pub arrivals: Vec<Instant>,
    /// Latest p per symbol.
    pub latest: HashMap<String, i64>,
    pub statuses: Vec<String>,
    /// Symbols announced `retired`.
    pub retired: Vec<String>,
    /// The connection ended while the test did not end it.
    pub dropped: bool,
}

pub struct Client {
    pub seen: Arc<Mutex<Seen>>,
    pub sock: TcpStream,
    pub ending: Arc<AtomicBool>,
    pub thread: Option<JoinHandle<()>>,
}

impl Client {
    pub fn connect(server: &Server, symbols: &[String]) -> Client {
        let mut ws = server.ws();
        ws.set_read_timeout(None).unwrap();
        send_text(&mut ws, &symbols.join(","));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let ending = Arc::new(AtomicBool::new(false));
        let (s, e) = (seen.clone(), ending.clone());
        let mut reader = ws.try_clone().unwrap();
        let thread = std::thread::spawn(move || {
            while let Some((_, opcode, payload)) = read_frame(&mut reader) {
                if opcode != 0x1 {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                let mut seen = s.lock().unwrap();
                if let (Some(sym), Some(p)) = (v["symbol"].as_str(), v["p"].as_i64()) {
                    seen.ticks.push((sym.to_string(), p));
                    seen.arrivals.push(Instant::now());
                    seen.latest.insert(sym.to_string(), p);
                } else if v["type"] == "retired" {
                    seen.retired
                        .push(v["symbol"].as_str().unwrap_or("").to_string());
                } else if v["type"] == "feed" {
                    seen.statuses
                        .push(v["status"].as_str().unwrap_or("").to_string());
                }
            }
            if !e.load(Ordering::Relaxed) {
                s.lock().unwrap().dropped = true;
            }
        });
        Client {
            seen,
            sock: ws,
            ending,
            thread: Some(thread),
        }
    }

    pub fn has_latest(&self, symbols: &[String], p: i64) -> bool {
        let seen = self.seen.lock().unwrap();
        symbols.iter().all(|s| seen.latest.get(s) == Some(&p))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.ending.store(true, Ordering::Relaxed);
        let _ = self.sock.shutdown(Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `ringcast publish --redis-cluster <seeds>` of one tick `{"symbol":s,"p":p}` per symbol, as one message.
pub fn publish(seeds: &str, symbols: &[String], p: i64) {
    let out = common::cluster::publish_command(seeds, PREFIX, SHARDS, symbols, p)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
}

/// A server on the cluster feed at `seeds` (`extra` arguments first), once its feed is up.
pub fn serve(seeds: &str, extra: &[&str]) -> Server {
    let shards = SHARDS.to_string();
    let mut args = extra.to_vec();
    args.extend([
        "--redis-cluster",
        seeds,
        "--prefix",
        PREFIX,
        "--feed-shards",
        &shards,
    ]);
    let server = Server::start(&args);
    server.wait_feed_up();
    server
}

/// Two symbols of every shard.
pub fn symbols() -> Vec<String> {
    common::cluster::two_symbols_per_shard('T', SHARDS)
}

pub fn wait_all(clients: &[Client], symbols: &[String], p: i64, within: Duration, what: &str) {
    poll_until(within, what, || {
        clients.iter().all(|c| c.has_latest(symbols, p))
    });
}

pub fn info_field(con: &mut redis::Connection, section: &str, field: &str) -> Option<String> {
    let info: String = redis::cmd("INFO").arg(section).query(con).ok()?;
    info.lines()
        .find_map(|l| l.trim().strip_prefix(field).map(String::from))
}
