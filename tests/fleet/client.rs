//! The client host: N WebSocket clients with reconnect logic, run in the client namespace. The test
//! binary runs itself there (`ip netns exec <client ns> <test binary> fleet_client_host --ignored`), and
//! [`ClientHost`] drives it over stdin/stdout: `state` answers one line `FLEET {json}` with every
//! client's connect times, close codes and latest values; `probe` makes one upgrade with a foreign
//! `Origin` and answers its HTTP status; `stop` (or stdin closed) exits.
//!
//! A client connects to the balancer, upgrades, subscribes to its symbols (the snapshot brings the
//! latest values), reads ticks and answers pings; when the connection ends (a Close such as 1012 from
//! a draining edge, or EOF when the edge died: 1006) it reconnects after 50–150 ms and resubscribes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{frame, read_frame, read_head, status_of, upgrade_request};

/// What one client has seen.
#[derive(Default)]
struct Seen {
    connected: bool,
    /// Milliseconds since the client host started, of every successful upgrade (the first is the
    /// initial connect, the others reconnects).
    connects: Vec<u64>,
    /// Close codes received (1006: the connection ended without a Close).
    closes: Vec<u16>,
    /// Attempts that did not get a 101 (refused, a 503 from the balancer or a draining edge): the
    /// status line, or what failed.
    failures: Vec<String>,
    /// `{"type":"feed","status":"down"}` messages received.
    feed_down: u64,
    /// Every p received per symbol, in order.
    ps: HashMap<String, Vec<i64>>,
}

/// One client's connections, forever (the process exits on `stop`).
fn run_client(i: usize, lb: SocketAddr, symbols: String, seen: Arc<Mutex<Seen>>, t0: Instant) {
    loop {
        let code = session(lb, &symbols, &seen, t0).unwrap_or(1006);
        {
            let mut s = seen.lock().unwrap();
            if s.connected {
                s.closes.push(code);
            }
            s.connected = false;
        }
        std::thread::sleep(Duration::from_millis(50 + (i as u64 * 37) % 100));
    }
}

/// One connection: Some(close code) when the server sent a Close, None when it just ended.
fn session(lb: SocketAddr, symbols: &str, seen: &Mutex<Seen>, t0: Instant) -> Option<u16> {
    let mut s = match TcpStream::connect_timeout(&lb, Duration::from_secs(2)) {
        Ok(s) => s,
        Err(e) => {
            seen.lock().unwrap().failures.push(format!("connect: {e}"));
            return None;
        }
    };
    s.set_nodelay(true).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(upgrade_request("/").as_bytes()).ok()?;
    let head = read_head(&mut s);
    if !head.starts_with("HTTP/1.1 101") {
        let status = head.lines().next().unwrap_or("no response (EOF or 5 s)");
        seen.lock().unwrap().failures.push(status.to_string());
        return None;
    }
    // Ringcast pings every 25 s: a minute of silence means a dead path.
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    {
        let mut seen = seen.lock().unwrap();
        seen.connected = true;
        seen.connects.push(t0.elapsed().as_millis() as u64);
    }
    s.write_all(&frame(true, 0x1, symbols.as_bytes())).ok()?;
    loop {
        let (_, opcode, payload) = read_frame(&mut s)?;
        match opcode {
            0x1 => {
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&payload) else {
                    continue;
                };
                let ticks = match v {
                    serde_json::Value::Array(list) => list,
                    one => vec![one],
                };
                let mut seen = seen.lock().unwrap();
                for t in ticks {
                    if let (Some(sym), Some(p)) = (t["symbol"].as_str(), t["p"].as_i64()) {
                        seen.ps.entry(sym.to_string()).or_default().push(p);
                    } else if t["type"] == "feed" && t["status"] == "down" {
                        seen.feed_down += 1;
                    }
                }
            }
            0x9 => s.write_all(&frame(true, 0xA, &payload)).ok()?,
            0x8 => {
                let code =
                    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                let _ = s.write_all(&frame(true, 0x8, &payload[..payload.len().min(2)]));
                return Some(code.unwrap_or(1005));
            }
            _ => {}
        }
    }
}

/// One upgrade with an Origin the edges do not allow: the HTTP status.
fn probe(lb: SocketAddr) -> u16 {
    let Ok(mut s) = TcpStream::connect_timeout(&lb, Duration::from_secs(2)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = upgrade_request("/").replace("Host:", "Origin: http://elsewhere.test\r\nHost:");
    let _ = s.write_all(req.as_bytes());
    status_of(read_head(&mut s).as_bytes())
}

/// The client host program (inside the client namespace): `FLEET_LB`, `FLEET_SUBSCRIPTIONS` (one
/// client's symbols per `;`-separated entry).
pub fn client_host_main() {
    let lb: SocketAddr = std::env::var("FLEET_LB").unwrap().parse().unwrap();
    let subscriptions = std::env::var("FLEET_SUBSCRIPTIONS").unwrap();
    let t0 = Instant::now();
    let mut all = Vec::new();
    for (i, symbols) in subscriptions.split(';').enumerate() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        all.push(seen.clone());
        let symbols = symbols.to_string();
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || run_client(i, lb, symbols, seen, t0))
            .unwrap();
    }
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let answer = match line.trim() {
            "state" => {
                let clients: Vec<serde_json::Value> = all
                    .iter()
                    .map(|s| {
                        let s = s.lock().unwrap();
                        serde_json::json!({
                            "connected": s.connected,
                            "connects": s.connects,
                            "closes": s.closes,
                            "failures": s.failures,
                            "feed_down": s.feed_down,
                            "ps": s.ps,
                        })
                    })
                    .collect();
                serde_json::json!({"now": t0.elapsed().as_millis() as u64, "clients": clients})
            }
            "probe" => serde_json::json!(probe(lb)),
            _ => break,
        };
        let mut out = stdout.lock();
        writeln!(out, "FLEET {answer}").unwrap();
        out.flush().unwrap();
    }
    std::process::exit(0);
}

/// One client as the test sees it (from a `state` answer).
pub struct ClientState {
    pub connected: bool,
    pub connects: Vec<u64>,
    pub closes: Vec<u16>,
    pub failures: Vec<String>,
    pub feed_down: u64,
    pub ps: HashMap<String, Vec<i64>>,
}

impl ClientState {
    pub fn latest(&self, symbol: &str) -> Option<i64> {
        self.ps.get(symbol).and_then(|ps| ps.last().copied())
    }
}

/// The client host process, driven from the test.
pub struct ClientHost {
    child: Child,
    stdin: ChildStdin,
    answers: Receiver<String>,
}

impl ClientHost {
    /// Start the client host in namespace `ns`: one client per entry of `subscriptions` (its symbols,
    /// comma-separated), all through the balancer at `lb`.
    pub fn start(ns: &str, lb: SocketAddr, subscriptions: &[String]) -> ClientHost {
        let exe = std::env::current_exe().unwrap();
        let mut child = super::netns::in_ns(ns, exe.to_str().unwrap())
            .args([
                "fleet_client_host",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("FLEET_LB", lb.to_string())
            .env("FLEET_SUBSCRIPTIONS", subscriptions.join(";"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the client host");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, answers) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The first answer follows libtest's `test fleet_client_host ... ` on its line.
                if let Some(at) = line.find("FLEET ")
                    && tx.send(line[at + 6..].to_string()).is_err()
                {
                    break;
                }
            }
        });
        ClientHost {
            child,
            stdin,
            answers,
        }
    }

    fn ask(&mut self, what: &str) -> serde_json::Value {
        writeln!(self.stdin, "{what}").expect("the client host reads");
        let line = self
            .answers
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("the client host did not answer `{what}`: {e}"));
        serde_json::from_str(&line).unwrap()
    }

    /// (the client host's clock in ms, every client's state)
    pub fn state(&mut self) -> (u64, Vec<ClientState>) {
        let v = self.ask("state");
        let clients = v["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| ClientState {
                connected: c["connected"].as_bool().unwrap(),
                connects: serde_json::from_value(c["connects"].clone()).unwrap(),
                closes: serde_json::from_value(c["closes"].clone()).unwrap(),
                failures: serde_json::from_value(c["failures"].clone()).unwrap(),
                feed_down: c["feed_down"].as_u64().unwrap(),
                ps: serde_json::from_value(c["ps"].clone()).unwrap(),
            })
            .collect();
        (v["now"].as_u64().unwrap(), clients)
    }

    /// The status of one upgrade with a foreign Origin.
    pub fn probe(&mut self) -> u16 {
        self.ask("probe").as_u64().unwrap() as u16
    }
}

impl Drop for ClientHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
