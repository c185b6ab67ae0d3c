//! The abuse suite's harness: one `ringcast serve` (stderr captured to a file), a real password-protected
//! redis-server, a bystander subscriber fed a timestamped tick every 20 ms, a `/healthz` prober that also
//! samples the server's VmRSS, and per-attack windows that judge health, bystander lateness and RSS growth.
//! Every wait has a deadline; everything started here is stopped (by PID / by dropping it) at the end.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringcast::cli::redis_server::RedisServer;

use crate::common::{bin, frame, free_port, start_redis, upgrade_request};
pub use crate::net::*;

pub const PASSWORD: &str = "abuse-redis-pw-7f3a9c1e";
pub const SECRET: &str = "abuse-auth-secret-0123456789abcdef-5e1d";
pub const PREFIX: &str = "ab:";
pub const BYSTANDER: &str = "BYSTANDER";
/// The bystander's tick period.
pub const TICK_EVERY: Duration = Duration::from_millis(20);
/// The issue's bound on how late a bystander's tick or a health answer may be while attacks run.
pub const ISSUE_BOUND: Duration = Duration::from_millis(100);

/// One `/healthz` probe: when it started, how long the answer took (None: no 200 within the timeout),
/// and the server's VmRSS (kB) right after.
#[derive(Clone, Copy)]
struct Probe {
    at: Instant,
    took: Option<Duration>,
    rss_kb: u64,
}

/// What one attack window measured, and what it found wrong.
pub struct Window {
    pub item: &'static str,
    pub name: &'static str,
    pub start: Instant,
    pub end: Instant,
    pub rss_start_kb: u64,
    pub rss_peak_kb: u64,
    /// Ticks may be lost while the attack forces a Redis reconnect (pub/sub does not buffer): then only
    /// lateness and resumption are judged, not completeness.
    pub feed_gap: bool,
    pub health_max: Option<Duration>,
    pub health_unanswered: usize,
    pub late_max: Duration,
    pub missing: usize,
    pub failures: Vec<String>,
}

impl Window {
    pub fn fail(&mut self, why: impl Into<String>) {
        self.failures.push(why.into());
    }

    /// Record an RSS sample taken at the attack's peak (before its clients go away).
    pub fn peak(&mut self, rss_kb: u64) {
        self.rss_peak_kb = self.rss_peak_kb.max(rss_kb);
    }

    pub fn growth_mib(&self) -> f64 {
        self.rss_peak_kb.saturating_sub(self.rss_start_kb) as f64 / 1024.0
    }
}

/// The server under attack, its Redis, the bystander and the prober.
pub struct Suite {
    pub redis: RedisServer,
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    /// Every token the suite sent (none may appear in the log).
    pub tokens: Mutex<Vec<String>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    probes: Arc<Mutex<Vec<Probe>>>,
    /// (seq, publish time in µs since the epoch)
    sent: Arc<Mutex<Vec<(u64, u64)>>>,
    /// (seq, receive time in µs since the epoch); a u64::MAX seq marks the bystander's connection ending.
    received: Arc<Mutex<Vec<(u64, u64)>>>,
    pub windows: Vec<Window>,
}

impl Suite {
    /// Redis (password set after start, so the start-up PING needs none), stored ticks the attacks need,
    /// then the server with `args`, its stderr in a file.
    pub fn start(args: &[&str], seed: impl FnOnce(&mut redis::Connection)) -> Suite {
        let redis = start_redis();
        {
            let mut con = crate::common::redis_con(&redis.url());
            seed(&mut con);
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("requirepass")
                .arg(PASSWORD)
                .query(&mut con)
                .unwrap();
        }
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::env::temp_dir().join(format!("ringcast-abuse-{}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).unwrap();
        let redis_url = format!("redis://:{PASSWORD}@127.0.0.1:{}", redis.port());
        let child = Command::new(bin())
            .args(["--log", "info", "serve", "--listen", &addr.to_string()])
            .args(["--redis", &redis_url, "--prefix", PREFIX])
            .args(["--auth-secret", SECRET])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("start ringcast");
        let suite = Suite {
            redis,
            child,
            addr,
            log,
            tokens: Mutex::new(Vec::new()),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            probes: Arc::default(),
            sent: Arc::default(),
            received: Arc::default(),
            windows: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while probe(addr, "/healthz").is_none() {
            assert!(Instant::now() < deadline, "no /healthz within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        suite.wait_snapshots(1, Duration::from_secs(10));
        suite
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The server's VmRSS in kB.
    pub fn rss_kb(&self) -> u64 {
        rss_kb(self.pid())
    }

    /// An authenticated Redis connection.
    pub fn redis(&self) -> redis::Connection {
        let url = format!("redis://:{PASSWORD}@127.0.0.1:{}", self.redis.port());
        crate::common::redis_con(&url)
    }

    /// A signed token for `sub` (remembered for the log scan).
    pub fn token(&self, claims: serde_json::Value) -> String {
        let t = ringcast::auth::sign_hs256(&claims, SECRET.as_bytes());
        self.tokens.lock().unwrap().push(t.clone());
        t
    }

    pub fn user_token(&self, sub: &str) -> String {
        self.token(serde_json::json!({"sub": sub, "exp": now_s() + 600}))
    }

    /// A completed WebSocket upgrade from `source` with a token for `sub`.
    pub fn ws_from(&self, source: Ipv4Addr, sub: &str, rcvbuf: Option<usize>) -> TcpStream {
        let token = self.user_token(sub);
        let mut s = connect_from(self.addr, source, rcvbuf);
        s.write_all(upgrade_request(&format!("/?token={token}")).as_bytes())
            .unwrap();
        let head = read_head_within(&mut s, Duration::from_secs(3));
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "upgrade refused: {head:?}"
        );
        s
    }

    /// Sum of a metric over its label sets (None when /metrics does not answer).
    pub fn metric(&self, name: &str) -> Option<f64> {
        let text = probe_text(self.addr, "/metrics")?;
        Some(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter(|l| l.split(['{', ' ']).next() == Some(name))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
    }

    /// Wait (bounded) until the feed has taken `n` snapshots; false on timeout.
    pub fn wait_snapshots(&self, n: u32, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.metric("ringcast_feed_snapshots_total").unwrap_or(0.0) >= f64::from(n) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Start the bystander (subscribed to BYSTANDER from 127.0.0.1), its publisher (a tick every 20 ms:
    /// PUBLISH only, so a wrong-type hash key cannot stop it) and the health prober.
    pub fn start_background(&mut self) {
        let token = self.user_token("bystander");
        let mut s = connect_from(self.addr, Ipv4Addr::LOCALHOST, None);
        s.write_all(upgrade_request(&format!("/?token={token}")).as_bytes())
            .unwrap();
        assert!(read_head_within(&mut s, Duration::from_secs(3)).starts_with("HTTP/1.1 101"));
        s.write_all(&frame(true, 0x1, BYSTANDER.as_bytes()))
            .unwrap();
        let mut reader = FrameReader::new(s);
        match reader.next(Duration::from_secs(3)) {
            Frame::Data(0x1, ack) => assert!(
                String::from_utf8_lossy(&ack).contains("subscribed"),
                "bystander not subscribed: {}",
                String::from_utf8_lossy(&ack)
            ),
            _ => panic!("no subscribe ack for the bystander"),
        }
        let (stop, received) = (self.stop.clone(), self.received.clone());
        self.threads.push(std::thread::spawn(move || {
            bystander(reader, stop, received)
        }));
        let (stop, sent, mut con) = (self.stop.clone(), self.sent.clone(), self.redis());
        self.threads.push(std::thread::spawn(move || {
            let mut next = Instant::now();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let ts = now_us();
                let tick = format!(r#"{{"symbol":"{BYSTANDER}","seq":{seq},"ts":{ts}}}"#);
                let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                    .arg(format!("{PREFIX}ticks"))
                    .arg(tick)
                    .query(&mut con);
                if published.is_ok() {
                    sent.lock().unwrap().push((seq, ts));
                }
                seq += 1;
                next += TICK_EVERY;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        }));
        let (stop, probes, addr, pid) = (
            self.stop.clone(),
            self.probes.clone(),
            self.addr,
            self.pid(),
        );
        self.threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let at = Instant::now();
                let took = probe(addr, "/healthz").map(|()| at.elapsed());
                let rss_kb = rss_kb(pid);
                probes.lock().unwrap().push(Probe { at, took, rss_kb });
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
        // The bystander must be receiving before anything is measured.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.received.lock().unwrap().len() < 5 {
            assert!(
                Instant::now() < deadline,
                "bystander got no ticks within 5 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Run one attack in its own window, then judge it: health answers and bystander ticks within
    /// `bound` (None: not judged), RSS growth under `rss_bound_mib`.
    pub fn window(
        &mut self,
        item: &'static str,
        name: &'static str,
        rss_bound_mib: f64,
        attack: impl FnOnce(&Suite, &mut Window),
    ) {
        let mut w = Window {
            item,
            name,
            start: Instant::now(),
            end: Instant::now(),
            rss_start_kb: self.rss_kb(),
            rss_peak_kb: 0,
            feed_gap: false,
            health_max: None,
            health_unanswered: 0,
            late_max: Duration::ZERO,
            missing: 0,
            failures: Vec::new(),
        };
        let start_us = now_us();
        attack(self, &mut w);
        // Long enough for several health probes and bystander ticks.
        std::thread::sleep(
            (w.start + Duration::from_millis(500)).saturating_duration_since(Instant::now()),
        );
        w.end = Instant::now();
        let end_us = now_us();
        w.peak(self.rss_kb());
        // Ticks published up to the end get time to arrive (any still missing then are late anyway).
        std::thread::sleep(Duration::from_millis(300));
        self.judge(&mut w, start_us, end_us, rss_bound_mib);
        self.windows.push(w);
    }

    fn judge(&self, w: &mut Window, start_us: u64, end_us: u64, rss_bound_mib: f64) {
        let probes: Vec<Probe> = self
            .probes
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.at >= w.start && p.at <= w.end)
            .copied()
            .collect();
        for p in &probes {
            w.peak(p.rss_kb);
            match p.took {
                Some(t) => w.health_max = Some(w.health_max.map_or(t, |m| m.max(t))),
                None => w.health_unanswered += 1,
            }
        }
        let sent: Vec<(u64, u64)> = self
            .sent
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, ts)| *ts >= start_us && *ts <= end_us)
            .copied()
            .collect();
        let received = self.received.lock().unwrap().clone();
        let arrival = |seq: u64| received.iter().find(|(s, _)| *s == seq).map(|(_, at)| *at);
        for (seq, ts) in &sent {
            match arrival(*seq) {
                Some(at) => {
                    w.late_max = w
                        .late_max
                        .max(Duration::from_micros(at.saturating_sub(*ts)))
                }
                None => w.missing += 1,
            }
        }
        if w.feed_gap {
            // Ticks published while the feed reconnected are lost by Redis; the last 500 ms must arrive.
            let tail = sent
                .iter()
                .filter(|(_, ts)| *ts + 500_000 >= end_us)
                .filter(|(seq, _)| arrival(*seq).is_none())
                .count();
            if tail > 0 {
                w.fail(format!(
                    "the bystander's ticks did not resume: {tail} of the last 500 ms missing"
                ));
            }
        } else if w.missing > 0 {
            w.fail(format!(
                "bystander missed {} of {} ticks",
                w.missing,
                sent.len()
            ));
        }
        if probes.is_empty() {
            w.fail("no health probe ran during the window");
        }
        if w.health_unanswered > 0 {
            w.fail(format!(
                "/healthz unanswered within {PROBE_TIMEOUT:?}: {} of {} probes",
                w.health_unanswered,
                probes.len()
            ));
        }
        if w.growth_mib() > rss_bound_mib {
            w.fail(format!(
                "RSS grew {:.1} MiB (bound {rss_bound_mib} MiB)",
                w.growth_mib()
            ));
        }
    }

    /// Judge latency of every attack window against `bound` (computed after the quiet window).
    pub fn judge_latency(&mut self, health_bound: Duration, late_bound: Duration) {
        for w in self.windows.iter_mut().skip(1) {
            if let Some(h) = w.health_max
                && h > health_bound
            {
                w.failures.push(format!(
                    "/healthz took {} ms (bound {} ms)",
                    h.as_millis(),
                    health_bound.as_millis()
                ));
            }
            if w.late_max > late_bound {
                w.failures.push(format!(
                    "bystander tick {} ms late (bound {} ms)",
                    w.late_max.as_millis(),
                    late_bound.as_millis()
                ));
            }
        }
    }

    /// Stop the background threads (bounded: each loop checks `stop` at least every 2 s).
    pub fn stop_background(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("RINGCAST_ABUSE_KEEP_LOG").is_none() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// The bystander's loop: record each tick's arrival, answer pings, stop on `stop` or when closed.
fn bystander(mut r: FrameReader, stop: Arc<AtomicBool>, received: Arc<Mutex<Vec<(u64, u64)>>>) {
    while !stop.load(Ordering::Relaxed) {
        match r.next(Duration::from_millis(200)) {
            Frame::Data(0x1, payload) => {
                let at = now_us();
                let v: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
                if let Some(seq) = v.get("seq").and_then(|s| s.as_u64()) {
                    received.lock().unwrap().push((seq, at));
                }
            }
            Frame::Data(0x9, payload) => {
                let _ = r.s.write_all(&frame(true, 0xA, &payload));
            }
            Frame::Data(0x8, _) | Frame::Eof => {
                received.lock().unwrap().push((u64::MAX, now_us()));
                return;
            }
            Frame::Data(..) | Frame::Idle => {}
        }
    }
}
