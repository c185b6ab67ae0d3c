//! `Sim`: a [`Core`] driven in memory, in the manner of quinn-proto's `Pair`. It plays the ring and the
//! kernel: it carries out the core's intents on simulated sockets (a send copies the outbox's bytes to
//! the client side — all of them, or at most the client's `window`, to model a slow reader), frees
//! slots on close, and takes accepts from a queue of connecting clients. Time only moves when a test
//! says so (`advance`), so heartbeats, idle timeouts and shutdown windows run in microseconds.
//!
//! Client helpers write masked frames and parse the server's frames with the crate's own codecs.
//! After every step the core's invariants are checked (`Core::check_invariants`).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use crate::fanout::{FeedEvent, PreparedFrame, Symbol, prepare_text};
use crate::http::Exposition;
use crate::protocol::frame::{self, OpCode};
use crate::protocol::handshake::HeadLimits;
use crate::protocol::mask::apply_mask;
use crate::protocol::{CloseCode, Limits};
use crate::runtime::core::{App, ConnId, Core, Epochs, Intent, RecvEnd, WorkerSettings};
use crate::runtime::stats::WorkerStats;
use crate::tls::WorkerTls;

use super::sim_tls::ClientTls;

/// Settings for a test: the ticker, small limits, no coalescing (override fields as needed).
pub fn settings() -> WorkerSettings {
    WorkerSettings {
        app: App::Ticker,
        limits: Limits::default(),
        head_limits: HeadLimits::default(),
        handshake_timeout_ms: 5_000,
        max_conns: 1_000,
        recv_buffers: 16,
        recv_buffer_size: 4096,
        max_symbols_per_conn: 100,
        max_symbols: 10_000,
        fetch_latest: false,
        slow_policy: crate::runtime::core::SlowPolicy::Conflate,
        slow_grace_ms: 2_000,
        ping_interval_s: 20,
        idle_timeout_s: 60,
        shutdown_window_ms: 1_000,
        max_backlog: 64 * 1024,
        metrics: Arc::new(NoMetrics),
        gate: crate::http::Gate::default(),
        max_conns_per_ip: 0,
        proxy_protocol: false,
        trusted_proxies: Default::default(),
        per_ip: Default::default(),
        accept_rate: None,
        message_limit: None,
        coalesce_us: 0,
    }
}

/// `/metrics` of a sim: empty (the renderer is the server's, tested over real sockets).
#[derive(Debug)]
struct NoMetrics;

impl Exposition for NoMetrics {
    fn render(&self) -> String {
        String::new()
    }
    fn feed_up(&self) -> Option<bool> {
        None
    }
}

/// A frame the server sent, as the client reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerFrame {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<CloseCode>, String),
}

/// The client side of one simulated socket.
#[derive(Debug)]
pub struct Client {
    pub id: ConnId,
    pub peer: Option<IpAddr>,
    /// Bytes the server sent that the client has not parsed yet.
    pub inbox: Vec<u8>,
    /// All bytes the server sent, ever.
    pub sent_total: usize,
    /// The most bytes one send completes (a slow reader's small window); `usize::MAX`: all.
    pub window: usize,
    /// The client stopped reading: sends stay in flight until it reads again.
    pub stalled: bool,
    /// Bytes the client wrote that the server has not received yet.
    pub outgoing: VecDeque<Vec<u8>>,
    /// The server shut its write side, or closed the descriptor.
    pub write_shut: bool,
    pub closed: bool,
    /// The client closed its side (EOF to the server).
    pub hung_up: bool,
    /// The client's TLS side (wss://, see `sim_tls.rs`): the wire carries its records, `inbox` holds
    /// what it decrypted.
    pub tls: Option<Box<ClientTls>>,
}

/// One simulated socket's operations in flight.
#[derive(Debug, Default)]
struct Socket {
    recv_armed: bool,
    send: Option<ConnId>,
}

/// A core and the simulated kernel around it.
pub struct Sim {
    pub core: Core,
    pub now_us: u64,
    /// Clients by descriptor slot (a closed one stays until its slot is reused).
    pub clients: HashMap<u32, Client>,
    sockets: HashMap<u32, Socket>,
    free_slots: BTreeSet<u32>,
    connecting: VecDeque<Option<IpAddr>>,
    accepts_armed: usize,
    /// Completions to deliver at the next step (aux ops and closes complete one step later).
    aux_done: Vec<ConnId>,
    closes: Vec<ConnId>,
    /// Set when a graceful shutdown completed.
    pub stopped: bool,
    /// Symbols the core asked ingest for (`Core::next_fetch`), in order.
    pub fetches: Vec<Symbol>,
    /// Ingest's end of the fetch channel is gone: fetches are reported unsent.
    pub fetch_fails: bool,
    /// TLS listener: the client configuration every accepted client connects with.
    pub(super) client_tls: Option<Arc<rustls::ClientConfig>>,
    /// Check the core's invariants after every step (on unless a test with thousands of connections,
    /// where each check costs O(connections), turns it off).
    pub check_invariants: bool,
    /// Bytes the next accepted client writes first, before anything else (a load balancer's PROXY
    /// protocol header, ahead of the TLS ClientHello).
    pub preamble: Option<Vec<u8>>,
}

/// The core's table unless a test sizes it: (descriptor slots, WebSocket connections).
pub(super) const TABLE: (u32, u32) = (1_064, 1_000);

impl Sim {
    pub fn new(settings: WorkerSettings) -> Sim {
        Sim::with_table(settings, TABLE)
    }

    /// A sim whose core has `table` = (descriptor slots, WebSocket connections).
    pub fn with_table(settings: WorkerSettings, table: (u32, u32)) -> Sim {
        Sim::build(settings, table, None)
    }

    /// A sim whose core terminates TLS with `tls` (its `WorkerTls`, and the configuration of the
    /// clients that connect to it), or plain.
    pub(super) fn build(
        settings: WorkerSettings,
        table: (u32, u32),
        tls: Option<(WorkerTls, Arc<rustls::ClientConfig>)>,
    ) -> Sim {
        let (worker_tls, client_tls) = tls.unzip();
        let stats = Arc::new(WorkerStats::default());
        let epochs = Epochs {
            unix_s: 1_700_000_000,
            admission_ms: 0,
        };
        let mut core = Core::new(0, Arc::new(settings), stats, table, worker_tls, epochs);
        core.start();
        let mut sim = Sim {
            core,
            now_us: 0,
            clients: HashMap::new(),
            sockets: HashMap::new(),
            free_slots: (0..table.0).collect(),
            connecting: VecDeque::new(),
            accepts_armed: 0,
            aux_done: Vec::new(),
            closes: Vec::new(),
            stopped: false,
            fetches: Vec::new(),
            fetch_fails: false,
            client_tls,
            check_invariants: true,
            preamble: None,
        };
        sim.run();
        sim
    }

    /// Move the clock on by `ms` and run until nothing more happens.
    pub fn advance(&mut self, ms: u64) {
        self.now_us += ms * 1000;
        self.run();
    }

    /// Move the clock in steps of `step_ms` for `total_ms` (timers and upkeep fire on the way).
    pub fn advance_by_steps(&mut self, total_ms: u64, step_ms: u64) {
        let mut left = total_ms;
        while left > 0 {
            let step = step_ms.min(left);
            self.advance(step);
            left -= step;
        }
    }

    /// Loop iterations until a quiet one (bounded: a test that never settles fails).
    pub fn run(&mut self) {
        for _ in 0..10_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the simulation did not settle");
    }

    /// One loop iteration, like the driver's: deliver completions, poll, carry out intents. Returns
    /// whether anything happened.
    pub fn step(&mut self) -> bool {
        self.core.set_now(self.now_us);
        let mut busy = self.complete();
        if self.core.poll() {
            self.stopped = true;
        }
        busy |= self.carry_out();
        if self.check_invariants {
            self.core.check_invariants();
        }
        busy
    }

    /// The completions of the operations in flight, as events.
    fn complete(&mut self) -> bool {
        let mut busy = false;
        for id in std::mem::take(&mut self.aux_done) {
            self.core.on_aux_done(id);
            busy = true;
        }
        for id in std::mem::take(&mut self.closes) {
            self.sockets.remove(&id.slot);
            self.free_slots.insert(id.slot);
            if let Some(c) = self.clients.get_mut(&id.slot) {
                c.closed = true;
                c.write_shut = true;
            }
            self.core.on_closed(id);
            busy = true;
        }
        while self.accepts_armed > 0 && !self.connecting.is_empty() {
            let peer = self.connecting.pop_front().expect("queued");
            let slot = self
                .free_slots
                .pop_first()
                .expect("a free slot for an armed accept");
            self.accepts_armed -= 1;
            self.sockets.insert(slot, Socket::default());
            self.core.on_accepted(slot, peer);
            let id = ConnId {
                slot,
                generation: self.core.conns()[slot as usize].generation,
            };
            self.clients.insert(
                slot,
                Client {
                    id,
                    peer,
                    inbox: Vec::new(),
                    sent_total: 0,
                    window: usize::MAX,
                    stalled: false,
                    outgoing: VecDeque::new(),
                    write_shut: false,
                    closed: false,
                    hung_up: false,
                    tls: None,
                },
            );
            if let Some(preamble) = self.preamble.take() {
                let client = self.clients.get_mut(&slot).expect("client");
                client.outgoing.push_back(preamble);
            }
            if let Some(cfg) = &self.client_tls {
                self.clients.get_mut(&slot).expect("client").start_tls(cfg);
            }
            busy = true;
        }
        let slots: Vec<u32> = self.sockets.keys().copied().collect();
        for slot in slots {
            busy |= self.complete_socket(slot);
        }
        busy
    }

    fn complete_socket(&mut self, slot: u32) -> bool {
        let mut busy = false;
        let client = self.clients.get_mut(&slot).expect("a client per socket");
        let socket = self.sockets.get_mut(&slot).expect("socket");
        if let Some(id) = socket.send
            && !client.stalled
        {
            let bytes: Vec<u8> = self.core.in_flight(slot).concat();
            let n = bytes.len().min(client.window);
            client.receive_wire(&bytes[..n]);
            client.sent_total += n;
            socket.send = None;
            self.core.on_sent(id, n as i32);
            busy = true;
        }
        let client = self.clients.get_mut(&slot).expect("client");
        let socket = self.sockets.get_mut(&slot).expect("socket");
        if socket.recv_armed {
            if let Some(mut bytes) = client.outgoing.pop_front() {
                self.core.on_receive(client.id, Ok(&mut bytes), true);
                busy = true;
            } else if client.hung_up {
                socket.recv_armed = false;
                self.core.on_receive(client.id, Err(RecvEnd::Eof), false);
                busy = true;
            }
        }
        busy
    }

    /// The core's intents, on the simulated sockets.
    fn carry_out(&mut self) -> bool {
        let intents: Vec<Intent> = self.core.intents().collect();
        let busy = !intents.is_empty();
        for intent in intents {
            match intent {
                Intent::Accept => self.accepts_armed += 1,
                Intent::Receive(id) => {
                    let socket = self
                        .sockets
                        .get_mut(&id.slot)
                        .expect("receive on an open slot");
                    assert!(
                        !socket.recv_armed,
                        "receive armed twice on slot {}",
                        id.slot
                    );
                    socket.recv_armed = true;
                }
                Intent::Send(id, _) => {
                    let client = &self.clients[&id.slot];
                    assert_eq!(
                        client.id, id,
                        "send to a stale connection of slot {}",
                        id.slot
                    );
                    assert!(
                        !client.write_shut,
                        "send on slot {} after its write side was shut",
                        id.slot
                    );
                    let socket = self
                        .sockets
                        .get_mut(&id.slot)
                        .expect("send on an open slot");
                    assert!(
                        socket.send.is_none(),
                        "two sends in flight on slot {}",
                        id.slot
                    );
                    assert!(
                        !self.clients[&id.slot].closed,
                        "send to closed slot {}",
                        id.slot
                    );
                    socket.send = Some(id);
                }
                Intent::ShutWrite(id) => {
                    if let Some(c) = self.clients.get_mut(&id.slot) {
                        c.write_shut = true;
                    }
                    self.aux_done.push(id);
                }
                Intent::Cancel(id) => {
                    let socket = self
                        .sockets
                        .get_mut(&id.slot)
                        .expect("cancel on an open slot");
                    if std::mem::take(&mut socket.recv_armed) {
                        self.core
                            .on_receive(id, Err(RecvEnd::Error(libc::ECANCELED)), false);
                    }
                    if let Some(send) = socket.send.take() {
                        self.core.on_sent(send, -libc::ECANCELED);
                    }
                    self.aux_done.push(id);
                }
                Intent::Close(id) => {
                    let socket = &self.sockets[&id.slot];
                    assert!(
                        !socket.recv_armed && socket.send.is_none(),
                        "close of slot {} with operations in flight",
                        id.slot
                    );
                    self.closes.push(id);
                }
            }
        }
        while let Some(symbol) = self.core.next_fetch() {
            self.core.on_fetch_sent(&symbol, !self.fetch_fails);
            self.fetches.push(symbol);
        }
        // Events raised while carrying out (cancellations) may have produced intents of their own.
        if !self.core.intents.is_empty() {
            self.carry_out();
        }
        busy
    }

    /// A client connects (from `peer`); returns its slot once accepted.
    pub fn connect(&mut self, peer: Option<IpAddr>) -> u32 {
        let before: BTreeSet<u32> = self.free_slots.clone();
        self.connecting.push_back(peer);
        self.run();
        let taken: Vec<u32> = before.difference(&self.free_slots).copied().collect();
        *taken.first().expect("accepted")
    }

    /// A client connects (from `peer`) and is accepted, and its slot may already be free again (the core
    /// closed it on accept); returns the slot it had.
    pub fn connect_once(&mut self, peer: Option<IpAddr>) -> u32 {
        let accepted = WorkerStats::get(&self.core.stats.accepted);
        self.connecting.push_back(peer);
        self.run();
        assert_eq!(
            WorkerStats::get(&self.core.stats.accepted),
            accepted + 1,
            "accepted"
        );
        self.clients
            .iter()
            .filter(|(_, c)| c.peer == peer)
            .map(|(&slot, c)| (c.id.generation, slot))
            .max()
            .expect("a client")
            .1
    }

    /// Connect and complete the WebSocket upgrade; returns the slot.
    pub fn open_ws(&mut self) -> u32 {
        let slot = self.connect(Some([10, 0, 0, 1].into()));
        self.write(slot, UPGRADE.as_bytes());
        let head = self.read_http(slot);
        assert!(head.starts_with("HTTP/1.1 101 "), "upgrade answered {head}");
        slot
    }

    /// Client → server bytes (delivered at the next step).
    pub fn write(&mut self, slot: u32, bytes: &[u8]) {
        self.clients
            .get_mut(&slot)
            .expect("client")
            .send_wire(bytes);
        self.run();
    }

    /// Send a masked client frame.
    pub fn send_frame(&mut self, slot: u32, opcode: OpCode, payload: &[u8]) {
        let mut out = Vec::new();
        client_frame(opcode, payload, &mut out);
        self.write(slot, &out);
    }

    pub fn send_text(&mut self, slot: u32, text: &str) {
        self.send_frame(slot, OpCode::Text, text.as_bytes());
    }

    /// The client closes its side (the server reads EOF).
    pub fn hang_up(&mut self, slot: u32) {
        self.clients.get_mut(&slot).expect("client").hung_up = true;
        self.run();
    }

    /// Take an HTTP response head (and body bytes up to the end of the head) from the client's inbox.
    pub fn read_http(&mut self, slot: u32) -> String {
        let inbox = &mut self.clients.get_mut(&slot).expect("client").inbox;
        let end = inbox
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete response head")
            + 4;
        let head: Vec<u8> = inbox.drain(..end).collect();
        String::from_utf8(head).expect("ASCII head")
    }

    /// Everything the client has received and not yet read, as whole server frames.
    pub fn frames(&mut self, slot: u32) -> Vec<ServerFrame> {
        let inbox = &mut self.clients.get_mut(&slot).expect("client").inbox;
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(f) = frame::read_framing(&inbox[at..]) {
            let end = at + f.header_len + f.payload_len as usize;
            if end > inbox.len() {
                break;
            }
            let payload = inbox[at + f.header_len..end].to_vec();
            out.push(match OpCode::from_u8(f.opcode).expect("a known opcode") {
                OpCode::Text => ServerFrame::Text(String::from_utf8(payload).expect("UTF-8")),
                OpCode::Binary => ServerFrame::Binary(payload),
                OpCode::Ping => ServerFrame::Ping(payload),
                OpCode::Pong => ServerFrame::Pong(payload),
                OpCode::Close => {
                    let code = (payload.len() >= 2)
                        .then(|| CloseCode(u16::from_be_bytes([payload[0], payload[1]])));
                    let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or(&[])).into();
                    ServerFrame::Close(code, reason)
                }
                OpCode::Continuation => panic!("the server does not fragment"),
            });
            at = end;
        }
        inbox.drain(..at);
        out
    }

    /// The text frames received, as strings (other frames are skipped).
    pub fn texts(&mut self, slot: u32) -> Vec<String> {
        self.frames(slot)
            .into_iter()
            .filter_map(|f| match f {
                ServerFrame::Text(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    pub fn client(&self, slot: u32) -> &Client {
        &self.clients[&slot]
    }

    pub fn client_mut(&mut self, slot: u32) -> &mut Client {
        self.clients.get_mut(&slot).expect("client")
    }

    /// A feed event from ingest, then run.
    pub fn feed(&mut self, event: FeedEvent) {
        self.core.on_feed(event);
        self.run();
    }

    /// A live tick of `symbol` carrying `payload`.
    pub fn tick(&mut self, symbol: &str, payload: &str) {
        self.feed(tick(symbol, payload));
    }

    /// SIGTERM: begin a graceful shutdown.
    pub fn begin_shutdown(&mut self) {
        self.core.begin_shutdown();
        self.run();
    }

    /// The slot's connection has been closed by the server (descriptor closed).
    pub fn is_closed(&self, slot: u32) -> bool {
        self.clients[&slot].closed
    }

    pub fn stats(&self) -> &WorkerStats {
        self.core.stats()
    }
}

/// A feed event: a live tick.
pub fn tick(symbol: &str, payload: &str) -> FeedEvent {
    FeedEvent::Tick {
        symbol: Symbol::from(symbol),
        frame: prepare_text(payload.as_bytes()),
        ts_us: None,
    }
}

/// A feed event: the latest tick of each symbol (warm-up).
pub fn snapshot(ticks: &[(&str, &str)]) -> FeedEvent {
    let list: Vec<(Symbol, PreparedFrame)> = ticks
        .iter()
        .map(|(s, p)| (Symbol::from(*s), prepare_text(p.as_bytes())))
        .collect();
    FeedEvent::Snapshot(Arc::new(list))
}

/// A valid upgrade request.
pub const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: sim\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A subscribe message for one symbol, the one most tests tick.
pub const SUBSCRIBE_EFERT: &str = r#"{"op":"subscribe","symbols":["EFERT"]}"#;

/// A masked client frame (fixed key: tests are deterministic).
pub fn client_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    let mut plain = Vec::new();
    frame::encode_frame(opcode, payload, &mut plain);
    let header_len = plain.len() - payload.len();
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let base = out.len();
    out.extend_from_slice(&plain[..header_len]);
    out[base + 1] |= 0x80;
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key, 0);
}

/// Helpers of the scenario tests (slow readers, shutdown, auth, per-address limits).
impl Sim {
    /// Connect from `peer`, send `request`, and take the response head.
    pub fn request_from(&mut self, peer: Option<IpAddr>, request: &str) -> (u32, String) {
        let slot = self.connect(peer);
        self.write(slot, request.as_bytes());
        let head = self.read_http(slot);
        (slot, head)
    }

    /// Connect from `peer` and complete the WebSocket upgrade; returns the slot.
    pub fn open_ws_from(&mut self, peer: IpAddr) -> u32 {
        let (slot, head) = self.request_from(Some(peer), UPGRADE);
        assert!(head.starts_with("HTTP/1.1 101 "), "upgrade answered {head}");
        slot
    }

    /// The client answers the server's Close with `code` and hangs up.
    pub fn answer_close(&mut self, slot: u32, code: u16) {
        self.send_frame(slot, OpCode::Close, &code.to_be_bytes());
        self.hang_up(slot);
    }

    /// The settings the core runs with.
    pub fn settings(&self) -> &WorkerSettings {
        &self.core.settings
    }
}

/// An upgrade request for `target` (path and query, e.g. `/?token=…`).
pub fn upgrade_to(target: &str) -> String {
    UPGRADE.replacen("GET / ", &format!("GET {target} "), 1)
}

/// The Close frame among `frames`, if any: (code, reason).
pub fn close_of(frames: &[ServerFrame]) -> Option<(Option<CloseCode>, String)> {
    frames.iter().find_map(|f| match f {
        ServerFrame::Close(code, reason) => Some((*code, reason.clone())),
        _ => None,
    })
}
