//! `ringcast-load client`: one process, one thread, one epoll loop holding up to ~19,000 WebSocket
//! connections. Reports JSON lines on stdout; takes commands (one per line) on stdin:
//!
//! - `report LABEL` — emit the counters and latency histogram since the last report, then start anew
//! - `reset`        — drop the counters gathered since the last report (warm-up)
//! - `slow FRAC`    — the first FRAC of the connections stop reading (their sockets back up)
//! - `churn RATE`   — churning connections (--churn-frac of them) close and reconnect, RATE per second
//! - `stop`         — close everything, emit the `final` line and exit
//!
//! Stdin reaching EOF (the coordinator went away) also stops the process.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::common::*;
use crate::tick::{Item, for_each_item};
use crate::ws;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Idle,
    Connecting,
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
}

#[derive(Default, Clone)]
struct Counters {
    deliveries: u64,
    snapshots: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    unsubscribed: u64,
    unknown: u64,
    acks: u64,
    control_errors: u64,
    bytes: u64,
    frames: u64,
    reads: u64,
    connects: u64,
    connect_errors: u64,
    handshake_errors: u64,
    protocol_errors: u64,
    server_closed: u64,
    server_closed_churners: u64,
    churn_closes: u64,
    churn_deliveries: u64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        macro_rules! a { ($($f:ident),*) => { $( self.$f += o.$f; )* } }
        a!(
            deliveries,
            snapshots,
            lost,
            duplicated,
            out_of_order,
            unsubscribed,
            unknown,
            acks,
            control_errors,
            bytes,
            frames,
            reads,
            connects,
            connect_errors,
            handshake_errors,
            protocol_errors,
            server_closed,
            server_closed_churners,
            churn_closes,
            churn_deliveries
        );
    }
    fn to_json(&self) -> Value {
        json!({
            "deliveries": self.deliveries, "snapshots": self.snapshots, "lost": self.lost,
            "duplicated": self.duplicated, "out_of_order": self.out_of_order,
            "unsubscribed": self.unsubscribed, "unknown": self.unknown, "acks": self.acks,
            "control_errors": self.control_errors, "bytes": self.bytes, "frames": self.frames,
            "reads": self.reads, "connects": self.connects, "connect_errors": self.connect_errors,
            "handshake_errors": self.handshake_errors, "protocol_errors": self.protocol_errors,
            "server_closed": self.server_closed, "server_closed_churners": self.server_closed_churners, "churn_closes": self.churn_closes,
            "churn_deliveries": self.churn_deliveries,
        })
    }
}

struct Stats {
    c: Counters,
    hist: Histogram<u64>,       // publish→receive latency, stable (non-churning, reading) connections
    churn_hist: Histogram<u64>, // the same for churning connections
    connect_hist: Histogram<u64>, // connect() → upgrade done, µs
    since_wall: u64,
    since_cpu: u64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            c: Counters::default(),
            hist: new_hist(),
            churn_hist: new_hist(),
            connect_hist: new_hist(),
            since_wall: monotonic_ns(),
            since_cpu: self_cpu_ns(),
        }
    }
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

pub fn main(flags: &Flags) -> Result<(), String> {
    let target: SocketAddrV4 = flags
        .str("target", "127.0.0.1:3001")
        .parse()
        .map_err(|e| format!("--target: {e}"))?;
    let src: Ipv4Addr = flags
        .str("src-base", "127.0.0.2")
        .parse()
        .map_err(|e| format!("--src-base: {e}"))?;
    let symbols: u32 = flags.num("symbols", 100);
    let cfg = Config {
        target,
        host: flags.str("host", &target.to_string()),
        path: flags.str("path", "/"),
        conns: flags.num("conns", 100),
        offset: flags.num("offset", 0),
        src_base: u32::from(src),
        per_addr: flags.num("per-addr", 28_000),
        k: flags.num("per-conn", 1),
        dist: Dist::new(
            &flags.str("sub-dist", "uniform"),
            symbols,
            flags.num("zipf-s", 1.0),
        )?,
        seed: flags.num("seed", 1),
        json_form: flags.str("form", "plain") == "json",
        concurrency: flags.num("connect-concurrency", 2000),
        churn_frac: flags.num("churn-frac", 0.0),
        deadline_s: flags.secs("deadline", 600.0),
        connect_timeout_s: flags.secs("connect-timeout", 10.0),
        max_frame: 16 << 20,
    };
    let unknown = flags.unknown();
    if !unknown.is_empty() {
        return Err(format!("unknown flags: --{}", unknown.join(", --")));
    }
    raise_nofile();
    Client::new(cfg).run()
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
}

impl Client {
    fn new(cfg: Config) -> Client {
        let mut conns = Vec::with_capacity(cfg.conns as usize);
        let mut churners = Vec::new();
        for i in 0..cfg.conns {
            let global = cfg.offset + i;
            let syms = subscriptions(global, cfg.k, &cfg.dist, cfg.seed).into_boxed_slice();
            let churner = cfg.churn_frac > 0.0
                && (Rng::new(global ^ 0xC4u64).unit() < cfg.churn_frac);
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
        self.emit(json!({"kind": "started", "conns": self.cfg.conns, "offset": self.cfg.offset,
            "nofile": nofile_limit(), "churners": self.churners.len()}));
        while !self.stop {
            let now = monotonic_ns();
            if now >= deadline {
                self.emit(json!({"kind": "timeout"}));
                break;
            }
            self.start_connects(now);
            self.churn_tick(now);
            self.expire_closing(now);
            if !self.connected_sent && self.initial_pending == 0 {
                self.connected_sent = true;
                let v = json!({"kind": "connected", "open": self.open,
                    "first_ns": self.initial_first, "last_ns": self.initial_last,
                    "errors": self.st.c.connect_errors + self.st.c.handshake_errors});
                self.emit(v);
            }
            if now >= next_progress {
                next_progress = now + 1_000_000_000;
                self.expire_connects(now);
                let mut c = self.total.clone();
                c.add(&self.st.c);
                let v = json!({"kind": "progress", "open": self.open, "inflight": self.inflight,
                    "deliveries": c.deliveries, "lost": c.lost, "connects": c.connects,
                    "errors": c.connect_errors + c.handshake_errors + c.protocol_errors,
                    "cpu_ns": self_cpu_ns(), "wall_ns": now - start});
                self.emit(v);
            }
            let timeout = if self.queue.is_empty() && self.churn_rate == 0.0 && self.closing.is_empty() {
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
            "stop" => self.stop = true,
            _ => {}
        }
    }

    fn start_connects(&mut self, now: u64) {
        while self.inflight < self.cfg.concurrency {
            let Some(idx) = self.queue.pop_front() else { break };
            self.connect(idx, now);
        }
    }

    fn connect(&mut self, idx: usize, now: u64) {
        let addr_idx = (self.conns[idx].global - self.cfg.offset) / self.cfg.per_addr;
        let src = Ipv4Addr::from(self.cfg.src_base + addr_idx as u32);
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            self.connect_failed(idx, false);
            return;
        }
        let one: libc::c_int = 1;
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const _ as *const _,
                4,
            );
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                &one as *const _ as *const _,
                4,
            );
        }
        let sa = sockaddr(SocketAddrV4::new(src, 0));
        let rc = unsafe {
            libc::bind(
                fd,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if rc != 0 {
            unsafe { libc::close(fd) };
            self.connect_failed(idx, false);
            return;
        }
        let da = sockaddr(self.cfg.target);
        let rc = unsafe {
            libc::connect(
                fd,
                &da as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if rc != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINPROGRESS) {
            unsafe { libc::close(fd) };
            self.connect_failed(idx, false);
            return;
        }
        if self.initial_first == 0 {
            self.initial_first = realtime_ns();
        }
        let c = &mut self.conns[idx];
        c.generation = c.generation.wrapping_add(1);
        c.fd = fd;
        c.state = State::Connecting;
        c.t0 = now;
        c.acked = false;
        c.rbuf.clear();
        c.wbuf.clear();
        c.frag.clear();
        c.last.iter_mut().for_each(|x| *x = 0);
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLOUT | libc::EPOLLIN) as u32,
            u64: (c.generation as u64) << 32 | idx as u64,
        };
        unsafe { libc::epoll_ctl(self.ep, libc::EPOLL_CTL_ADD, fd, &mut ev) };
        self.inflight += 1;
    }

    fn connect_failed(&mut self, idx: usize, handshake: bool) {
        if handshake {
            self.st.c.handshake_errors += 1;
        } else {
            self.st.c.connect_errors += 1;
        }
        let c = &mut self.conns[idx];
        if c.initial {
            c.initial = false;
            self.initial_pending -= 1;
        }
        c.state = State::Closed;
        if c.churner && self.churn_rate > 0.0 {
            // keep churning: try again later
            self.queue.push_back(idx);
        }
    }

    fn close_fd(&mut self, idx: usize, abort: bool) {
        let c = &mut self.conns[idx];
        if c.fd >= 0 {
            if abort {
                let l = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                unsafe {
                    libc::setsockopt(
                        c.fd,
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        &l as *const _ as *const _,
                        std::mem::size_of::<libc::linger>() as u32,
                    )
                };
            }
            unsafe { libc::close(c.fd) };
            c.fd = -1;
        }
        match c.state {
            State::Connecting | State::Handshaking => self.inflight -= 1,
            State::Open | State::Closing => self.open -= 1,
            _ => {}
        }
        c.state = State::Closed;
        c.generation = c.generation.wrapping_add(1);
    }

    fn set_events(&self, idx: usize, events: u32) {
        let c = &self.conns[idx];
        let mut ev = libc::epoll_event {
            events,
            u64: (c.generation as u64) << 32 | idx as u64,
        };
        unsafe { libc::epoll_ctl(self.ep, libc::EPOLL_CTL_MOD, c.fd, &mut ev) };
    }

    fn on_event(&mut self, idx: usize, flags: u32, rb: &mut [u8]) {
        let state = self.conns[idx].state;
        match state {
            State::Connecting => {
                let mut err: libc::c_int = 0;
                let mut len = 4u32;
                unsafe {
                    libc::getsockopt(
                        self.conns[idx].fd,
                        libc::SOL_SOCKET,
                        libc::SO_ERROR,
                        &mut err as *mut _ as *mut _,
                        &mut len,
                    )
                };
                if err != 0 || flags & (libc::EPOLLERR as u32) != 0 {
                    self.close_fd(idx, true);
                    self.connect_failed(idx, false);
                    return;
                }
                if flags & (libc::EPOLLOUT as u32) == 0 {
                    return;
                }
                let key = ws::make_key(
                    (self.rng.next() as u128) << 64 | self.rng.next() as u128,
                );
                self.conns[idx].key = key;
                let req = ws::upgrade_request(&self.cfg.host, &self.cfg.path, &key);
                self.conns[idx].state = State::Handshaking;
                self.set_events(idx, libc::EPOLLIN as u32);
                if !self.send(idx, &req) {
                    self.close_fd(idx, true);
                    self.connect_failed(idx, true);
                }
            }
            State::Handshaking | State::Open | State::Closing => {
                if flags & (libc::EPOLLOUT as u32) != 0 {
                    self.flush(idx);
                }
                if self.conns[idx].slow {
                    if flags & ((libc::EPOLLERR | libc::EPOLLHUP) as u32) != 0 {
                        self.st.c.server_closed += 1;
                        self.close_fd(idx, true);
                    }
                    return;
                }
                if flags & ((libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32) != 0 {
                    self.read_conn(idx, rb);
                }
            }
            State::Idle | State::Closed => {}
        }
    }

    /// Writes now, or keeps the rest and waits for EPOLLOUT. False on a hard error.
    fn send(&mut self, idx: usize, data: &[u8]) -> bool {
        let c = &mut self.conns[idx];
        if !c.wbuf.is_empty() {
            c.wbuf.extend_from_slice(data);
            return true;
        }
        let n = unsafe { libc::write(c.fd, data.as_ptr() as *const _, data.len()) };
        let n = if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                0
            } else {
                return false;
            }
        } else {
            n as usize
        };
        if n < data.len() {
            c.wbuf.extend_from_slice(&data[n..]);
            let ev = if c.slow { 0 } else { libc::EPOLLIN as u32 } | libc::EPOLLOUT as u32;
            self.set_events(idx, ev);
        }
        true
    }

    fn flush(&mut self, idx: usize) {
        let c = &mut self.conns[idx];
        if c.wbuf.is_empty() {
            return;
        }
        let n = unsafe { libc::write(c.fd, c.wbuf.as_ptr() as *const _, c.wbuf.len()) };
        if n > 0 {
            c.wbuf.drain(..n as usize);
        }
        if c.wbuf.is_empty() {
            let ev = if c.slow { 0 } else { libc::EPOLLIN as u32 };
            self.set_events(idx, ev);
        }
    }

    fn read_conn(&mut self, idx: usize, rb: &mut [u8]) {
        // A few reads at most, then back to epoll (level-triggered) so one busy connection cannot starve
        // the others or the command pipe.
        for _ in 0..4 {
            let fd = self.conns[idx].fd;
            if fd < 0 {
                return;
            }
            let n = unsafe { libc::read(fd, rb.as_mut_ptr() as *mut _, rb.len()) };
            if n > 0 {
                let n = n as usize;
                self.st.c.reads += 1;
                self.st.c.bytes += n as u64;
                let now_rt = realtime_ns();
                let mut buf = std::mem::take(&mut self.conns[idx].rbuf);
                let res = if buf.is_empty() {
                    let r = self.consume(idx, &rb[..n], now_rt);
                    if let Ok(used) = r {
                        buf.extend_from_slice(&rb[used..n]);
                    }
                    r
                } else {
                    buf.extend_from_slice(&rb[..n]);
                    let r = self.consume(idx, &buf, now_rt);
                    if let Ok(used) = r {
                        buf.drain(..used);
                    }
                    r
                };
                if self.conns[idx].fd < 0 || self.conns[idx].generation_changed_marker() {
                    return;
                }
                self.conns[idx].rbuf = buf;
                match res {
                    Ok(_) => {}
                    Err(Closed::Protocol) => {
                        self.st.c.protocol_errors += 1;
                        self.after_close(idx, true);
                        return;
                    }
                    Err(Closed::Handshake) => {
                        self.close_fd(idx, true);
                        self.connect_failed(idx, true);
                        return;
                    }
                    Err(Closed::CloseFrame) => {
                        // Server sent Close (we answered): a churner that asked for it, or the server
                        // dropping us.
                        self.after_close(idx, false);
                        return;
                    }
                }
                if n < rb.len() {
                    return;
                }
            } else if n == 0 {
                self.after_close(idx, false);
                return;
            } else {
                let e = std::io::Error::last_os_error().raw_os_error();
                if e == Some(libc::EAGAIN) || e == Some(libc::EINTR) {
                    return;
                }
                self.after_close(idx, true);
                return;
            }
        }
    }

    /// The connection ended (EOF, Close frame, error).
    fn after_close(&mut self, idx: usize, abort: bool) {
        let was = self.conns[idx].state;
        let handshaking = was == State::Handshaking;
        self.close_fd(idx, abort);
        if handshaking {
            self.connect_failed(idx, true);
            return;
        }
        let c = &self.conns[idx];
        if was == State::Closing {
            // we asked for it (churn)
        } else if c.churner {
            self.st.c.server_closed_churners += 1;
        } else {
            self.st.c.server_closed += 1;
        }
        if c.churner && self.churn_rate > 0.0 {
            self.queue.push_back(idx);
        }
    }

    /// Parses frames in `data`; returns the bytes used.
    fn consume(&mut self, idx: usize, data: &[u8], now_rt: u64) -> Result<usize, Closed> {
        let mut pos = 0;
        if self.conns[idx].state == State::Handshaking {
            let key = self.conns[idx].key;
            match ws::check_response(data, &key) {
                ws::Handshake::Partial => return Ok(0),
                ws::Handshake::Failed(_) => return Err(Closed::Handshake),
                ws::Handshake::Done(n) => {
                    pos = n;
                    self.opened(idx);
                }
            }
        }
        while pos < data.len() {
            match ws::parse_frame(&data[pos..], self.cfg.max_frame) {
                ws::Parsed::Partial => break,
                ws::Parsed::Error(_) => return Err(Closed::Protocol),
                ws::Parsed::Frame(f, used) => {
                    pos += used;
                    self.st.c.frames += 1;
                    match f.opcode {
                        ws::OP_TEXT | ws::OP_BINARY => {
                            if f.fin {
                                self.on_message(idx, f.payload, now_rt);
                            } else {
                                self.conns[idx].frag.clear();
                                self.conns[idx].frag.extend_from_slice(f.payload);
                            }
                        }
                        ws::OP_CONT => {
                            self.conns[idx].frag.extend_from_slice(f.payload);
                            if f.fin {
                                let msg = std::mem::take(&mut self.conns[idx].frag);
                                self.on_message(idx, &msg, now_rt);
                            }
                        }
                        ws::OP_PING => {
                            let mut out = Vec::with_capacity(f.payload.len() + 8);
                            ws::encode_frame(&mut out, ws::OP_PONG, f.payload, self.rng.next() as u32);
                            self.send(idx, &out);
                        }
                        ws::OP_PONG => {}
                        ws::OP_CLOSE => {
                            if self.conns[idx].state != State::Closing {
                                let mut out = Vec::with_capacity(8);
                                let code = if f.payload.len() >= 2 { &f.payload[..2] } else { &[] };
                                ws::encode_frame(&mut out, ws::OP_CLOSE, code, self.rng.next() as u32);
                                self.send(idx, &out);
                            }
                            return Err(Closed::CloseFrame);
                        }
                        _ => return Err(Closed::Protocol),
                    }
                }
            }
        }
        Ok(pos)
    }

    fn opened(&mut self, idx: usize) {
        let now = monotonic_ns();
        self.inflight -= 1;
        self.open += 1;
        self.st.c.connects += 1;
        let c = &mut self.conns[idx];
        c.state = State::Open;
        let us = ((now - c.t0) / 1000).clamp(1, 60_000_000);
        let _ = self.st.connect_hist.record(us);
        // subscribe
        let names: Vec<String> = c.syms.iter().map(|&s| symbol_name(s)).collect();
        let msg = if self.cfg.json_form {
            serde_json::to_string(&json!({"op": "subscribe", "symbols": names})).unwrap()
        } else {
            names.join(",")
        };
        c.sub_ns = realtime_ns();
        if c.initial {
            c.initial = false;
            self.initial_pending -= 1;
            self.initial_last = c.sub_ns;
        }
        let mut out = Vec::with_capacity(msg.len() + 14);
        ws::encode_frame(&mut out, ws::OP_TEXT, msg.as_bytes(), self.rng.next() as u32);
        self.send(idx, &out);
    }

    #[inline]
    fn on_message(&mut self, idx: usize, msg: &[u8], now_rt: u64) {
        let c = &mut self.conns[idx];
        let st = &mut self.st;
        let churner = c.churner;
        for_each_item(msg, |item| match item {
            Item::Tick { symbol, seq, ts_ns } => {
                let Ok(i) = c.syms.binary_search(&symbol) else {
                    st.c.unsubscribed += 1;
                    return;
                };
                let seq = seq as u32;
                let last = c.last[i];
                st.c.deliveries += 1;
                if churner {
                    st.c.churn_deliveries += 1;
                }
                if last == 0 {
                    c.last[i] = seq;
                    if ts_ns < c.sub_ns {
                        st.c.snapshots += 1;
                        return;
                    }
                } else if seq == last.wrapping_add(1) {
                    c.last[i] = seq;
                } else if seq > last {
                    st.c.lost += (seq - last - 1) as u64;
                    c.last[i] = seq;
                } else if seq == last {
                    st.c.duplicated += 1;
                } else {
                    st.c.out_of_order += 1;
                }
                let us = (now_rt.saturating_sub(ts_ns) / 1000).clamp(1, 60_000_000);
                if churner {
                    let _ = st.churn_hist.record(us);
                } else {
                    let _ = st.hist.record(us);
                }
            }
            Item::Control { error } => {
                if error {
                    st.c.control_errors += 1;
                } else if !c.acked {
                    c.acked = true;
                    st.c.acks += 1;
                }
            }
            Item::Unknown => st.c.unknown += 1,
        });
    }

    /// Connects and upgrades that take longer than --connect-timeout fail.
    fn expire_connects(&mut self, now: u64) {
        if self.inflight == 0 {
            return;
        }
        let limit = (self.cfg.connect_timeout_s * 1e9) as u64;
        for idx in 0..self.conns.len() {
            let st = self.conns[idx].state;
            if (st == State::Connecting || st == State::Handshaking) && now - self.conns[idx].t0 > limit {
                self.close_fd(idx, true);
                self.connect_failed(idx, st == State::Handshaking);
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
            ws::encode_frame(&mut out, ws::OP_CLOSE, &1000u16.to_be_bytes(), self.rng.next() as u32);
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

enum Closed {
    Protocol,
    Handshake,
    CloseFrame,
}

impl Conn {
    #[inline]
    fn generation_changed_marker(&self) -> bool {
        self.state == State::Closed
    }
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}
