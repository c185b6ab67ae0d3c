//! `ringcast-load client`: one process, one thread, one epoll loop holding up to ~19,000 WebSocket
//! connections. Reports JSON lines on stdout; takes commands (one per line) on stdin:
//!
//! - `report LABEL` — emit the counters and latency histogram since the last report, then start anew
//! - `reset`        — drop the counters gathered since the last report (warm-up)
//! - `slow FRAC`    — the first FRAC of the connections stop reading (their sockets back up)
//! - `churn RATE`   — churning connections (--churn-frac of them) close and reconnect, RATE per second
//! - `storm MARK`   — (`--reconnect-policy`) the server restarts at MARK (CLOCK_REALTIME ns): count
//!   each connection back once reconnected, acknowledged and current (`client/storm.rs`)
//! - `storm_report` — emit the storm figures (`{"kind":"storm",...}`)
//! - `timeline START_RT BUCKET_MS` — (`--stall`) also bucket each delivery's latency by its read time
//!   (`client/timeline.rs`); `timeline_report` emits the buckets (`{"kind":"timeline",...}`)
//! - `stop`         — close everything, emit the `final` line and exit
//!
//! Stdin reaching EOF (the coordinator went away) also stops the process.
//!
//! With `--tls` (and `--ca FILE`, `--server-name localhost`) every connection does a TLS handshake
//! after connect() and before the HTTP upgrade (wss://); see `tls.rs`.
//!
//! Split: this file has the configuration, the event loop and the commands; `client/net.rs` the
//! sockets (connect, upgrade, TLS, writes, reads, closes); `client/frames.rs` the WebSocket frames and
//! tick accounting; `client/stats.rs` the counters.

mod frames;
mod net;
mod stats;
mod storm;
mod timeline;

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddrV4;

use rustls::ClientConnection;
use serde_json::{Value, json};

use crate::cli::ClientArgs;
use crate::common::*;
use crate::{tls, ws};
use stats::{Counters, Stats};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Idle,
    Connecting,
    /// --tls: connected, TLS handshake in progress (the upgrade is not written yet).
    TlsHandshaking,
    /// Upgrade request written, waiting for the 101.
    Handshaking,
    Open,
    Closing,
    Closed,
}

struct Conn {
    fd: i32,
    generation: u32,
    state: State,
    churner: bool,
    slow: bool,
    acked: bool,
    initial: bool, // part of the initial connect wave, not yet resolved
    global: u64,
    syms: Box<[u32]>,
    last: Box<[u32]>,
    key: [u8; 24],
    sub_ns: u64, // CLOCK_REALTIME when the subscribe message went out
    t0: u64,     // monotonic, connect start
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    frag: Vec<u8>,
    /// --tls: the session (None before the connect completes and after the close).
    tls: Option<Box<ClientConnection>>,
    /// --tls-resume: this connection's client configuration (its own ticket store), kept across
    /// reconnects.
    tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// --tls: EPOLLOUT is armed because rustls holds records the socket did not take.
    out_armed: bool,
    /// storm: the close code of the last end (1006 when none came), the reconnect policy's attempt
    /// counter, refusals met since the storm began (503s and failed connects), back (reconnected, acknowledged, current), reconnected
    /// since the storm began, and which symbols (bit i: syms[i], the first 64) had a tick since then.
    close_code: u16,
    attempt: u32,
    refusals: u32,
    back: bool,
    reconnected: bool,
    fresh: u64,
}

pub struct Config {
    target: SocketAddrV4,
    host: String,
    path: String,
    conns: u64,
    offset: u64,
    src_base: u32,
    per_addr: u64,
    k: u32,
    dist: Dist,
    seed: u64,
    json_form: bool,
    concurrency: usize,
    churn_frac: f64,
    deadline_s: f64,
    connect_timeout_s: f64,
    max_frame: u64,
}

pub fn main(a: &ClientArgs) -> Result<(), String> {
    let cfg = Config {
        target: a.target,
        host: a.host.clone().unwrap_or_else(|| a.target.to_string()),
        path: a.path.clone(),
        conns: a.conns,
        offset: a.offset,
        src_base: u32::from(a.src_base),
        per_addr: a.per_addr,
        k: a.per_conn,
        dist: Dist::new(&a.sub_dist, a.symbols, a.zipf_s)?,
        seed: a.seed,
        json_form: a.form == "json",
        concurrency: a.connect_concurrency,
        churn_frac: a.churn_frac,
        deadline_s: a.deadline,
        connect_timeout_s: a.connect_timeout,
        max_frame: 16 << 20,
    };
    let t = &a.tls;
    let tls = if t.tls {
        let Some(ca) = &t.ca else {
            return Err("--tls needs --ca FILE (the PEM certificate(s) to trust)".into());
        };
        Some(tls::Tls::new(
            ca,
            &t.server_name,
            t.tls_resume,
            t.tls_groups.as_deref(),
        )?)
    } else {
        None
    };
    raise_nofile();
    let mut client = Client::new(cfg, tls);
    if let Some(p) = &a.reconnect_policy {
        let p =
            storm::Policy::parse(p).ok_or("--reconnect-policy: ringcast, seed or full-jitter")?;
        client.storm = Some(storm::Storm::new(p));
    }
    client.run()
}

fn raise_nofile() {
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
    }
}

pub fn nofile_limit() -> u64 {
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_max as u64
    }
}

const STDIN_TOKEN: u64 = u64::MAX;

/// Where a connection attempt failed (counted as connect_errors, tls_errors or handshake_errors).
#[derive(Clone, Copy, Debug)]
enum Fail {
    Connect,
    Tls,
    Upgrade,
}

struct Client {
    cfg: Config,
    ep: i32,
    conns: Vec<Conn>,
    queue: VecDeque<usize>,
    inflight: usize,
    open: usize,
    initial_pending: usize,
    initial_first: u64,
    initial_last: u64,
    connected_sent: bool,
    closing: VecDeque<(u64, usize, u32)>,
    churn_rate: f64,
    churn_start: u64,
    churn_done: u64,
    churn_cursor: usize,
    churners: Vec<usize>,
    slow_count: usize,
    st: Stats,
    total: Counters,
    rng: Rng,
    out: std::io::Stdout,
    stdin_buf: Vec<u8>,
    stop: bool,
    /// --tls: the client configuration (trust, server name) every session is made from.
    tls: Option<tls::Tls>,
    /// --tls: decrypted bytes of the current read (reused).
    plain: Vec<u8>,
    /// What the first TLS session negotiated (version, suite, key exchange), for the result file.
    tls_info: Value,
    /// The first connect/TLS/upgrade/protocol failure, reported to the coordinator.
    first_error: Option<String>,
    /// Kernel receive time (CLOCK_REALTIME ns, `SO_TIMESTAMPNS`) of the data being parsed, 0 if none:
    /// splits each delivery's latency into the part before the bytes reached this client's socket and
    /// the part they waited there for this process to read them.
    arrival_rt: u64,
    /// `--reconnect-policy`: every end reconnects (the storm scenario, `client/storm.rs`).
    storm: Option<storm::Storm>,
    /// `timeline ...`: latency per time bucket (`--stall`).
    timeline: Option<timeline::Timeline>,
}

impl Client {
    fn new(cfg: Config, tls: Option<tls::Tls>) -> Client {
        let mut conns = Vec::with_capacity(cfg.conns as usize);
        let mut churners = Vec::new();
        for i in 0..cfg.conns {
            let global = cfg.offset + i;
            let syms = subscriptions(global, cfg.k, &cfg.dist, cfg.seed).into_boxed_slice();
            let churner =
                cfg.churn_frac > 0.0 && (Rng::new(global ^ 0xC4u64).unit() < cfg.churn_frac);
            if churner {
                churners.push(i as usize);
            }
            conns.push(Conn {
                fd: -1,
                generation: 0,
                state: State::Idle,
                churner,
                slow: false,
                acked: false,
                initial: true,
                global,
                last: vec![0u32; syms.len()].into_boxed_slice(),
                syms,
                key: [0; 24],
                sub_ns: 0,
                t0: 0,
                rbuf: Vec::new(),
                wbuf: Vec::new(),
                frag: Vec::new(),
                tls: None,
                tls_config: None,
                out_armed: false,
                close_code: 1006,
                attempt: 0,
                refusals: 0,
                back: false,
                reconnected: false,
                fresh: 0,
            });
        }
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(ep >= 0, "epoll_create1");
        let n = conns.len();
        Client {
            queue: (0..n).collect(),
            initial_pending: n,
            rng: Rng::new(cfg.seed ^ cfg.offset ^ monotonic_ns()),
            cfg,
            ep,
            conns,
            inflight: 0,
            open: 0,
            initial_first: 0,
            initial_last: 0,
            connected_sent: false,
            closing: VecDeque::new(),
            churn_rate: 0.0,
            churn_start: 0,
            churn_done: 0,
            churn_cursor: 0,
            churners,
            slow_count: 0,
            st: Stats::new(),
            total: Counters::default(),
            out: std::io::stdout(),
            stdin_buf: Vec::new(),
            stop: false,
            tls,
            plain: Vec::new(),
            tls_info: Value::Null,
            first_error: None,
            arrival_rt: 0,
            storm: None,
            timeline: None,
        }
    }

    fn emit(&mut self, v: Value) {
        let mut line = serde_json::to_vec(&v).unwrap();
        line.push(b'\n');
        let mut lock = self.out.lock();
        let _ = lock.write_all(&line);
        let _ = lock.flush();
    }

    fn run(mut self) -> Result<(), String> {
        unsafe {
            let fl = libc::fcntl(0, libc::F_GETFL);
            libc::fcntl(0, libc::F_SETFL, fl | libc::O_NONBLOCK);
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: STDIN_TOKEN,
            };
            libc::epoll_ctl(self.ep, libc::EPOLL_CTL_ADD, 0, &mut ev);
        }
        let start = monotonic_ns();
        let deadline = start + (self.cfg.deadline_s * 1e9) as u64;
        let mut events: Vec<libc::epoll_event> =
            vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let mut rb = vec![0u8; 256 * 1024];
        let mut next_progress = start + 1_000_000_000;
        self.emit(
            json!({"kind": "started", "conns": self.cfg.conns, "offset": self.cfg.offset,
            "nofile": nofile_limit(), "churners": self.churners.len()}),
        );
        while !self.stop {
            let now = monotonic_ns();
            if now >= deadline {
                self.emit(json!({"kind": "timeout"}));
                break;
            }
            self.start_connects(now);
            self.churn_tick(now);
            let retrying = self.storm_tick(now);
            self.expire_closing(now);
            if !self.connected_sent && self.initial_pending == 0 {
                self.connected_sent = true;
                let v = json!({"kind": "connected", "open": self.open,
                    "first_ns": self.initial_first, "last_ns": self.initial_last,
                    "errors": self.st.c.connect_errors + self.st.c.handshake_errors + self.st.c.tls_errors,
                    "tls": self.tls_info, "first_error": self.first_error});
                self.emit(v);
            }
            if now >= next_progress {
                next_progress = now + 1_000_000_000;
                self.expire_connects(now);
                let mut c = self.total.clone();
                c.add(&self.st.c);
                let v = json!({"kind": "progress", "open": self.open, "inflight": self.inflight,
                    "deliveries": c.deliveries, "lost": c.lost, "connects": c.connects,
                    "errors": c.connect_errors + c.handshake_errors + c.tls_errors + c.protocol_errors,
                    "cpu_ns": self_cpu_ns(), "wall_ns": now - start,
                    "back": self.storm.as_ref().map_or(0, |s| s.back)});
                self.emit(v);
            }
            let timeout = if self.queue.is_empty()
                && self.churn_rate == 0.0
                && self.closing.is_empty()
                && !retrying
            {
                50
            } else {
                2
            };
            let n = unsafe {
                libc::epoll_wait(self.ep, events.as_mut_ptr(), events.len() as i32, timeout)
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("epoll_wait: {e}"));
            }
            for ev in &events[..n as usize] {
                let token = ev.u64;
                let flags = ev.events;
                if token == STDIN_TOKEN {
                    self.read_stdin();
                    continue;
                }
                let idx = (token & 0xffff_ffff) as usize;
                let generation = (token >> 32) as u32;
                if idx >= self.conns.len() || self.conns[idx].generation != generation {
                    continue;
                }
                self.on_event(idx, flags, &mut rb);
            }
        }
        // Final report and shutdown.
        let mut c = self.total.clone();
        c.add(&self.st.c);
        for i in 0..self.conns.len() {
            if self.conns[i].fd >= 0 {
                unsafe { libc::close(self.conns[i].fd) };
                self.conns[i].fd = -1;
            }
        }
        let v = json!({"kind": "final", "open": self.open, "counters": c.to_json(),
            "tls": self.tls_info, "first_error": self.first_error,
            "cpu_ns": self_cpu_ns(), "wall_ns": monotonic_ns() - start});
        self.emit(v);
        Ok(())
    }

    fn read_stdin(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            let n = unsafe { libc::read(0, buf.as_mut_ptr() as *mut _, buf.len()) };
            if n == 0 {
                self.stop = true;
                return;
            }
            if n < 0 {
                break;
            }
            self.stdin_buf.extend_from_slice(&buf[..n as usize]);
        }
        while let Some(p) = self.stdin_buf.iter().position(|&c| c == b'\n') {
            let line: Vec<u8> = self.stdin_buf.drain(..=p).collect();
            let line = String::from_utf8_lossy(&line).trim().to_string();
            self.command(&line);
        }
    }

    fn command(&mut self, line: &str) {
        let mut parts = line.splitn(2, ' ');
        let cmd = parts.next().unwrap_or("");
        let arg = parts.next().unwrap_or("").trim();
        match cmd {
            "report" => {
                let now = monotonic_ns();
                let cpu = self_cpu_ns();
                let st = std::mem::replace(&mut self.st, Stats::new());
                self.total.add(&st.c);
                let v = json!({"kind": "report", "label": arg, "open": self.open,
                    "counters": st.c.to_json(),
                    "hist": hist_to_b64(&st.hist), "churn_hist": hist_to_b64(&st.churn_hist),
                    "connect_hist": hist_to_b64(&st.connect_hist),
                    "arrival_hist": hist_to_b64(&st.arrival_hist),
                    "closes": st.closes,
                    "cpu_ns": cpu - st.since_cpu, "wall_ns": now - st.since_wall,
                    "slow": self.slow_count});
                self.emit(v);
            }
            "reset" => {
                let st = std::mem::replace(&mut self.st, Stats::new());
                self.total.add(&st.c);
            }
            "slow" => {
                let frac: f64 = arg.parse().unwrap_or(0.0);
                let want = ((self.conns.len() as f64) * frac).round() as usize;
                for i in 0..want.min(self.conns.len()) {
                    let c = &mut self.conns[i];
                    if c.churner {
                        continue;
                    }
                    c.slow = true;
                    self.slow_count += 1;
                    if c.fd >= 0 {
                        let mut ev = libc::epoll_event {
                            events: 0,
                            u64: (c.generation as u64) << 32 | i as u64,
                        };
                        unsafe { libc::epoll_ctl(self.ep, libc::EPOLL_CTL_MOD, c.fd, &mut ev) };
                    }
                }
            }
            "churn" => {
                self.churn_rate = arg.parse().unwrap_or(0.0);
                self.churn_start = monotonic_ns();
                self.churn_done = 0;
            }
            "storm" => self.storm_start(arg.parse().unwrap_or(0)),
            "storm_report" => {
                let v = self.storm_report();
                self.emit(v);
            }
            "timeline" => self.timeline = timeline::Timeline::parse(arg),
            "timeline_report" => {
                let v = self.timeline.as_ref().map_or_else(
                    || json!({"kind": "timeline", "buckets": []}),
                    |t| t.report(),
                );
                self.emit(v);
            }
            "stop" => self.stop = true,
            _ => {}
        }
    }

    /// Connects, TLS handshakes and upgrades that take longer than --connect-timeout fail.
    fn expire_connects(&mut self, now: u64) {
        if self.inflight == 0 {
            return;
        }
        let limit = (self.cfg.connect_timeout_s * 1e9) as u64;
        for idx in 0..self.conns.len() {
            let st = self.conns[idx].state;
            let fail = match st {
                State::Connecting => Fail::Connect,
                State::TlsHandshaking => Fail::Tls,
                State::Handshaking => Fail::Upgrade,
                _ => continue,
            };
            if now - self.conns[idx].t0 > limit {
                self.close_fd(idx, true);
                self.note_error(format!(
                    "{fail:?} timed out after {} s",
                    self.cfg.connect_timeout_s
                ));
                self.connect_failed(idx, fail);
            }
        }
    }

    fn churn_tick(&mut self, now: u64) {
        if self.churn_rate <= 0.0 || self.churners.is_empty() {
            return;
        }
        let due = ((now - self.churn_start) as f64 / 1e9 * self.churn_rate) as u64;
        let mut budget = due.saturating_sub(self.churn_done).min(1000);
        let mut scanned = 0;
        while budget > 0 && scanned < self.churners.len() {
            let idx = self.churners[self.churn_cursor % self.churners.len()];
            self.churn_cursor += 1;
            scanned += 1;
            if self.conns[idx].state != State::Open {
                continue;
            }
            // Polite close: send Close, wait for the server's Close / EOF (so TIME_WAIT stays on the
            // server side), give up after 2 s.
            let mut out = Vec::with_capacity(8);
            ws::encode_frame(
                &mut out,
                ws::OP_CLOSE,
                &1000u16.to_be_bytes(),
                self.rng.next() as u32,
            );
            self.conns[idx].state = State::Closing;
            if !self.send(idx, &out) {
                self.after_close(idx, true);
            } else {
                let g = self.conns[idx].generation;
                self.closing.push_back((now + 2_000_000_000, idx, g));
            }
            self.st.c.churn_closes += 1;
            self.churn_done += 1;
            budget -= 1;
        }
        if budget > 0 {
            // nothing open to churn: do not build up a debt
            self.churn_done = due;
        }
    }

    fn expire_closing(&mut self, now: u64) {
        while let Some(&(t, idx, g)) = self.closing.front() {
            if t > now {
                break;
            }
            self.closing.pop_front();
            if self.conns[idx].generation == g && self.conns[idx].state == State::Closing {
                self.close_fd(idx, true);
                if self.conns[idx].churner && self.churn_rate > 0.0 {
                    self.queue.push_back(idx);
                }
            }
        }
    }
}
