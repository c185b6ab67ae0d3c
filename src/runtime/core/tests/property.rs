//! Random event sequences over many connections, with invariants checked after every step.
//!
//! A seeded generator (xorshift, deterministic) drives one `Sim` per seed through random actions:
//! connects and upgrades (or junk, or never finishing the handshake), subscribes and unsubscribes over a
//! small universe of symbols (sometimes split across writes), ticks, tick bursts and snapshots, pings
//! (WebSocket and JSON), malformed frames, bad commands, slow readers (small send windows, stalls),
//! hang-ups, client closes, time moving on by random amounts, and a graceful shutdown at a random point.
//! A share of the seeds runs every connection over TLS.
//!
//! After every step: the core's own invariants (`Core::check_invariants`, run by the Sim after every
//! loop iteration), the Sim's (no operation on a closed or stale slot, no send after the write side was
//! shut, one send and one receive in flight at most), and the clients' view:
//! - every tick payload is `SYMBOL:seq`, seq counting up per symbol: no client ever receives a value of
//!   a symbol older than one it already has, nor twice within one subscription;
//! - no tick of a symbol arrives outside a subscription (between its `unsubscribed` and `subscribed`
//!   acks);
//! - nothing follows a Close frame;
//! - a reader that never stalled during a subscription gets every tick of it after the ack, in order,
//!   with no gap (the latest value first, if there is one), unless the connection is closing;
//! - a reader that stalled and read again holds the latest value of every symbol it is subscribed to;
//! - TLS clients never see a TLS error.
//!
//! On a failure the seed and step are printed. Replay one seed (with more steps, or the default):
//! `RINGCAST_CORE_SEED=17 RINGCAST_CORE_STEPS=20000 cargo test --release --lib runtime::core::tests::property`.
//! `RINGCAST_CORE_SEEDS` sets how many seeds the default run covers.

use std::collections::HashMap;

use super::sim::{self, ServerFrame, Sim};
use crate::fanout::{FeedEvent, PreparedFrame, Symbol, prepare_text};
use crate::ingest::rng::XorShift;
use crate::protocol::{CloseCode, OpCode, frame};

const SEEDS: u64 = 120;
const STEPS: usize = 2_000;
/// Every this-many-th seed runs over TLS.
const TLS_EVERY: u64 = 8;
const UNIVERSE: usize = 12;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number"))
    })
}

#[test]
fn random_event_sequences_keep_every_invariant() {
    let steps = env_u64("RINGCAST_CORE_STEPS").map_or(STEPS, |s| s as usize);
    if let Some(seed) = env_u64("RINGCAST_CORE_SEED") {
        run_seed(seed, steps);
        return;
    }
    let seeds = env_u64("RINGCAST_CORE_SEEDS").unwrap_or(SEEDS);
    for seed in 0..seeds {
        run_seed(seed, steps);
    }
}

/// Prints how to replay the run if a check panics while it is alive.
struct Replay {
    seed: u64,
    steps: usize,
    step: usize,
}

impl Drop for Replay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "property test failed: seed {} at step {} of {}; replay with \
                 RINGCAST_CORE_SEED={} RINGCAST_CORE_STEPS={} cargo test --release --lib \
                 runtime::core::tests::property",
                self.seed,
                self.step,
                self.steps,
                self.seed,
                self.step + 1
            );
        }
    }
}

/// The feed side: the latest sequence number of each symbol (0: never ticked).
struct World {
    seq: [u64; UNIVERSE],
}

fn symbol(i: usize) -> String {
    format!("S{i}")
}

fn tick_frame(i: usize, seq: u64) -> PreparedFrame {
    prepare_text(format!("S{i}:{seq}").as_bytes())
}

/// One subscription as its client sees it.
#[derive(Debug)]
struct Sub {
    /// Acked while the client was reading, and it has not stalled since: every tick must arrive.
    fast: bool,
    /// The next value a fast subscription must receive.
    next: u64,
    /// The last value received in this subscription.
    last: Option<u64>,
}

/// What one client has seen and done (keyed by slot, reset when the slot is reused).
#[derive(Debug, Default)]
struct Peer {
    generation: u16,
    head: Option<String>,
    upgraded: bool,
    server_close: Option<Option<CloseCode>>,
    /// The client sent a Close, a malformed frame, or hung up: the server may end at any time.
    ending: bool,
    stalled: bool,
    /// Stalls so far: a subscription acked with a stall since its request is not a reading one.
    stalls: u32,
    /// For each subscribe sent and not yet acked: the feed's sequence numbers then, and `stalls`.
    requests: std::collections::VecDeque<([u64; UNIVERSE], u32)>,
    subs: HashMap<usize, Sub>,
    /// The last value of each symbol received on this connection.
    seen: HashMap<usize, u64>,
    ping_due: bool,
}

impl Peer {
    fn alive(&self) -> bool {
        self.upgraded && self.server_close.is_none() && !self.ending
    }
}

struct Run {
    sim: Sim,
    rng: XorShift,
    world: World,
    peers: HashMap<u32, Peer>,
    max_live: usize,
    shutdown_at: Option<usize>,
    tls: bool,
    coalescing: bool,
}

fn run_seed(seed: u64, steps: usize) {
    let mut replay = Replay {
        seed,
        steps,
        step: 0,
    };
    let mut rng = XorShift::new(seed);
    let mut settings = sim::settings();
    // Small enough that a stalled reader passes it, large enough that a reading one never does.
    settings.max_backlog = 4 * 1024;
    settings.slow_grace_ms = 500 + rng.below(3_000);
    settings.ping_interval_s = 10 + rng.below(20) as u32;
    settings.idle_timeout_s = settings.ping_interval_s * 3;
    settings.shutdown_window_ms = 200 + rng.below(3_000);
    let coalescing = rng.below(3) == 0;
    if coalescing {
        settings.coalesce_us = 100 + rng.below(2_000);
    }
    let tls = seed % TLS_EVERY == TLS_EVERY - 1;
    let sim = if tls {
        Sim::new_tls(settings)
    } else {
        Sim::new(settings)
    };
    let max_live = 4 + rng.below(if tls { 40 } else { 150 }) as usize;
    let shutdown_at = (rng.below(2) == 0).then(|| rng.below(steps as u64) as usize);
    let mut run = Run {
        sim,
        rng,
        world: World { seq: [0; UNIVERSE] },
        peers: HashMap::new(),
        max_live,
        shutdown_at,
        tls,
        coalescing,
    };
    for step in 0..steps {
        replay.step = step;
        run.act(step);
        run.check();
        if run.sim.stopped {
            break;
        }
    }
    // Stop: everything left open ends (EOF), and the core settles with nothing queued.
    if !run.sim.stopped {
        let slots: Vec<u32> = run.sim.clients.keys().copied().collect();
        for slot in slots {
            if !run.sim.is_closed(slot) {
                run.sim.client_mut(slot).stalled = false;
                run.sim.client_mut(slot).hung_up = true;
            }
        }
        run.sim.advance(1);
        run.check();
        assert_eq!(
            run.sim.core.backlog(),
            0,
            "nothing queued once all are gone"
        );
    }
}

impl Run {
    fn live(&self) -> Vec<u32> {
        let mut slots: Vec<u32> = self
            .peers
            .iter()
            .filter(|(slot, p)| p.alive() && !self.sim.is_closed(**slot))
            .map(|(slot, _)| *slot)
            .collect();
        slots.sort_unstable();
        slots
    }

    fn pick(&mut self) -> Option<u32> {
        let live = self.live();
        (!live.is_empty()).then(|| live[self.rng.below(live.len() as u64) as usize])
    }

    fn symbols_json(&mut self) -> String {
        let n = 1 + self.rng.below(3) as usize;
        let list: Vec<String> = (0..n)
            .map(|_| format!("\"{}\"", symbol(self.rng.below(UNIVERSE as u64) as usize)))
            .collect();
        list.join(",")
    }

    /// The feed delivers the next value of a random symbol (not yet run through the sim).
    fn feed_a_tick(&mut self) {
        let i = self.rng.below(UNIVERSE as u64) as usize;
        self.world.seq[i] += 1;
        self.sim.core.on_feed(FeedEvent::Tick {
            symbol: Symbol::from(symbol(i).as_str()),
            frame: tick_frame(i, self.world.seq[i]),
            ts_us: None,
        });
    }

    /// Write a masked frame, sometimes split in two writes (the frame's tail carried between reads).
    fn frame(&mut self, slot: u32, opcode: OpCode, payload: &[u8]) {
        let mut out = Vec::new();
        sim::client_frame(opcode, payload, &mut out);
        if out.len() > 2 && self.rng.below(4) == 0 {
            let at = 1 + self.rng.below(out.len() as u64 - 1) as usize;
            let client = self.sim.client_mut(slot);
            client.send_wire(&out[..at]);
            client.send_wire(&out[at..]);
            self.sim.run();
        } else {
            self.sim.write(slot, &out);
        }
    }

    fn act(&mut self, step: usize) {
        if self.shutdown_at == Some(step) {
            self.sim.begin_shutdown();
            return;
        }
        let live = self.live().len();
        let roll = self.rng.below(100);
        match roll {
            0..=9 if live < self.max_live => self.connect(),
            0..=21 => {
                if let Some(slot) = self.pick() {
                    let json = format!(
                        r#"{{"op":"subscribe","symbols":[{}]}}"#,
                        self.symbols_json()
                    );
                    let peer = self.peers.get_mut(&slot).expect("peer");
                    peer.requests.push_back((self.world.seq, peer.stalls));
                    self.frame(slot, OpCode::Text, json.as_bytes());
                }
            }
            22..=27 => {
                if let Some(slot) = self.pick() {
                    let json = format!(
                        r#"{{"op":"unsubscribe","symbols":[{}]}}"#,
                        self.symbols_json()
                    );
                    self.frame(slot, OpCode::Text, json.as_bytes());
                }
            }
            28..=47 => {
                self.feed_a_tick();
                self.sim.run();
            }
            48..=52 => {
                for _ in 0..1 + self.rng.below(20) {
                    self.feed_a_tick();
                }
                self.sim.run();
            }
            53..=55 => {
                // Some symbols with a new value, some with the one they have (skipped by the core).
                let mut list = Vec::new();
                for i in 0..UNIVERSE {
                    match self.rng.below(3) {
                        0 => {
                            self.world.seq[i] += 1;
                            list.push((
                                Symbol::from(symbol(i).as_str()),
                                tick_frame(i, self.world.seq[i]),
                            ));
                        }
                        1 if self.world.seq[i] > 0 => {
                            list.push((
                                Symbol::from(symbol(i).as_str()),
                                tick_frame(i, self.world.seq[i]),
                            ));
                        }
                        _ => {}
                    }
                }
                self.sim
                    .core
                    .on_feed(FeedEvent::Snapshot(std::sync::Arc::new(list)));
                self.sim.run();
            }
            56..=59 => {
                if let Some(slot) = self.pick() {
                    if self.rng.below(2) == 0 {
                        let payload = self.rng.next_u64().to_be_bytes();
                        self.frame(slot, OpCode::Ping, &payload);
                    } else {
                        self.frame(slot, OpCode::Text, br#"{"op":"ping"}"#);
                    }
                }
            }
            60..=61 => {
                if let Some(slot) = self.pick() {
                    match self.rng.below(3) {
                        0 => self.frame(slot, OpCode::Text, br#"{"op":"nope"}"#),
                        1 => self.frame(slot, OpCode::Binary, b"\x01\x02"),
                        _ => self.frame(slot, OpCode::Text, b"not json"),
                    }
                }
            }
            62 => {
                if let Some(slot) = self.pick() {
                    self.malformed(slot);
                }
            }
            63..=67 => {
                if let Some(slot) = self.pick() {
                    let peer = self.peers.get_mut(&slot).expect("peer");
                    if peer.stalled {
                        peer.stalled = false;
                        self.sim.client_mut(slot).stalled = false;
                    } else {
                        peer.stalled = true;
                        peer.stalls += 1;
                        for sub in peer.subs.values_mut() {
                            sub.fast = false;
                        }
                        self.sim.client_mut(slot).stalled = true;
                    }
                    self.sim.run();
                }
            }
            68..=69 => {
                if let Some(slot) = self.pick() {
                    // Partial sends: the core resumes where each stopped (a stall is what makes it slow).
                    let window = match self.rng.below(3) {
                        0 => usize::MAX,
                        _ => 64 + self.rng.below(4_000) as usize,
                    };
                    self.sim.client_mut(slot).window = window;
                }
            }
            70..=71 => {
                if let Some(slot) = self.pick() {
                    self.peers.get_mut(&slot).expect("peer").ending = true;
                    self.sim.hang_up(slot);
                }
            }
            72..=73 => {
                if let Some(slot) = self.pick() {
                    self.peers.get_mut(&slot).expect("peer").ending = true;
                    self.frame(slot, OpCode::Close, &1000u16.to_be_bytes());
                    if self.tls && self.rng.below(2) == 0 {
                        self.sim.close_notify(slot);
                    }
                    if self.rng.below(2) == 0 {
                        self.sim.hang_up(slot);
                    }
                }
            }
            74..=75 => {
                // Hang up the ones that are ending, some of the time (else they linger until timed out).
                let ending: Vec<u32> = self
                    .peers
                    .iter()
                    .filter(|(s, p)| p.ending && !self.sim.is_closed(**s))
                    .map(|(s, _)| *s)
                    .collect();
                for slot in ending {
                    if self.rng.below(2) == 0 {
                        self.sim.client_mut(slot).hung_up = true;
                    }
                }
                self.sim.run();
            }
            76..=95 => {
                let ms = match self.rng.below(100) {
                    0..=79 => self.rng.below(300),
                    80..=97 => 300 + self.rng.below(10_000),
                    _ => 20_000 + self.rng.below(60_000),
                };
                self.sim.advance(ms);
            }
            _ => {
                // Answer the server's heartbeat pings (most clients do; the others are closed idle).
                let due: Vec<u32> = self
                    .peers
                    .iter()
                    .filter(|(s, p)| p.ping_due && p.alive() && !self.sim.is_closed(**s))
                    .map(|(s, _)| *s)
                    .collect();
                for slot in due {
                    self.peers.get_mut(&slot).expect("peer").ping_due = false;
                    if self.rng.below(5) != 0 {
                        self.frame(slot, OpCode::Pong, b"");
                    }
                }
            }
        }
    }

    fn connect(&mut self) {
        let ip = [
            10,
            0,
            (self.rng.below(4)) as u8,
            1 + self.rng.below(8) as u8,
        ];
        let slot = self.sim.connect(Some(ip.into()));
        let generation = self.sim.client(slot).id.generation;
        self.peers.insert(
            slot,
            Peer {
                generation,
                ..Peer::default()
            },
        );
        match self.rng.below(20) {
            0 => {} // never finishes its handshake (closed at the handshake timeout)
            1 => self.sim.write(slot, b"GARBAGE / HTTP/1.1\r\n\r\n"),
            2 => {
                // The head in two writes.
                let (a, b) = sim::UPGRADE.split_at(20);
                self.sim.write(slot, a.as_bytes());
                self.sim.write(slot, b.as_bytes());
            }
            _ => self.sim.write(slot, sim::UPGRADE.as_bytes()),
        }
    }

    /// A frame the server must answer with a Close (protocol error).
    fn malformed(&mut self, slot: u32) {
        self.peers.get_mut(&slot).expect("peer").ending = true;
        let mut out = Vec::new();
        match self.rng.below(4) {
            0 => frame::encode_frame(OpCode::Text, b"unmasked", &mut out),
            1 => {
                sim::client_frame(OpCode::Text, b"x", &mut out);
                out[0] = 0x83; // reserved opcode
            }
            2 => sim::client_frame(OpCode::Text, &[0xff, 0xfe, 0xfd], &mut out), // not UTF-8
            _ => sim::client_frame(OpCode::Ping, &[0; 126], &mut out),           // control too long
        }
        self.sim.write(slot, &out);
    }

    /// The clients' view after a step.
    fn check(&mut self) {
        let slots: Vec<u32> = self.sim.clients.keys().copied().collect();
        for slot in slots {
            let client = self.sim.client(slot);
            if let Some(tls) = &client.tls {
                assert!(
                    tls.error.is_none(),
                    "slot {slot}: TLS error {:?}",
                    tls.error
                );
            }
            let generation = client.id.generation;
            let peer = self.peers.entry(slot).or_default();
            if peer.generation != generation {
                *peer = Peer {
                    generation,
                    ..Peer::default()
                };
            }
            self.read(slot);
            let peer = self.peers.get_mut(&slot).expect("peer");
            let closed = self.sim.is_closed(slot);
            if closed || !peer.alive() {
                continue;
            }
            if peer.stalled {
                continue;
            }
            // A reading client has received everything (with coalescing, once the delay has passed).
            let waiting = self.sim.core.conns()[slot as usize].pending_bytes();
            if waiting > 0 {
                assert!(
                    self.coalescing,
                    "slot {slot}: {waiting} bytes wait for a reading client"
                );
                continue;
            }
            for (&i, sub) in &peer.subs {
                let latest = self.world.seq[i];
                if sub.fast {
                    assert_eq!(
                        sub.next,
                        latest + 1,
                        "slot {slot}: a reading subscriber of S{i} has every tick (last {:?})",
                        sub.last
                    );
                } else {
                    assert_eq!(
                        sub.last.unwrap_or(0),
                        latest,
                        "slot {slot}: a reader that caught up holds the latest S{i}"
                    );
                }
            }
        }
    }

    /// Parse what the client received since the last step.
    fn read(&mut self, slot: u32) {
        let peer = self.peers.get_mut(&slot).expect("peer");
        if peer.head.is_none() {
            let inbox = &self.sim.client(slot).inbox;
            if !inbox.windows(4).any(|w| w == b"\r\n\r\n") {
                assert!(
                    inbox.is_empty() || inbox.starts_with(b"HTTP/1.1 "),
                    "slot {slot}: an HTTP response comes first"
                );
                return;
            }
            let head = self.sim.read_http(slot);
            peer.upgraded = head.starts_with("HTTP/1.1 101 ");
            peer.head = Some(head);
        }
        if !peer.upgraded {
            return; // a refusal (400, 503): its body, then the end
        }
        if self.sim.client(slot).inbox.is_empty() {
            return;
        }
        let frames = self.sim.frames(slot);
        let peer = self.peers.get_mut(&slot).expect("peer");
        for f in frames {
            assert!(
                peer.server_close.is_none(),
                "slot {slot}: {f:?} after the Close frame"
            );
            match f {
                ServerFrame::Close(code, _) => {
                    peer.server_close = Some(code);
                    peer.subs.clear();
                }
                ServerFrame::Ping(_) => peer.ping_due = true,
                ServerFrame::Pong(_) | ServerFrame::Binary(_) => {}
                ServerFrame::Text(text) if text.starts_with('{') => {
                    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
                    let symbols = || {
                        json["symbols"]
                            .as_array()
                            .expect("symbols")
                            .iter()
                            .map(|s| {
                                s.as_str().expect("a symbol")[1..]
                                    .parse::<usize>()
                                    .expect("S<n>")
                            })
                            .collect::<Vec<usize>>()
                    };
                    match json["type"].as_str() {
                        Some("subscribed") => {
                            let (seq, stalls) =
                                peer.requests.pop_front().expect("an ack answers a request");
                            let fast = !peer.stalled && stalls == peer.stalls;
                            for i in symbols() {
                                peer.subs.entry(i).or_insert(Sub {
                                    fast,
                                    next: seq[i].max(1),
                                    last: None,
                                });
                            }
                        }
                        Some("unsubscribed") => {
                            for i in symbols() {
                                peer.subs.remove(&i);
                            }
                        }
                        _ => {}
                    }
                }
                ServerFrame::Text(text) => {
                    let (name, seq) = text.split_once(':').expect("a tick: SYMBOL:seq");
                    let i: usize = name[1..].parse().expect("S<n>");
                    let seq: u64 = seq.parse().expect("seq");
                    let seen = peer.seen.entry(i).or_insert(0);
                    assert!(
                        seq >= *seen,
                        "slot {slot}: S{i}:{seq} after S{i}:{} (reordered)",
                        *seen
                    );
                    *seen = seq;
                    let sub = peer
                        .subs
                        .get_mut(&i)
                        .unwrap_or_else(|| panic!("slot {slot}: S{i}:{seq} while not subscribed"));
                    assert!(
                        sub.last.is_none_or(|l| seq > l),
                        "slot {slot}: S{i}:{seq} twice or backwards in one subscription"
                    );
                    sub.last = Some(seq);
                    if sub.fast {
                        assert_eq!(
                            seq, sub.next,
                            "slot {slot}: S{i} gap or repeat for a reader"
                        );
                        sub.next = seq + 1;
                    }
                }
            }
        }
    }
}

/// Found by the property test (seed 57): a pong waiting behind a send in flight was queued after a
/// Close frame queued meanwhile, so the client read a frame after the Close.
#[test]
fn a_waiting_pong_goes_out_before_the_close_not_after() {
    let mut sim = Sim::new(sim::settings());
    let slot = sim.open_ws();
    sim.client_mut(slot).stalled = true;
    sim.send_frame(slot, OpCode::Ping, b"first");
    // The first pong is in flight; this one waits to join the queue when the next send is prepared.
    sim.send_frame(slot, OpCode::Ping, b"second");
    sim.begin_shutdown();
    sim.advance_by_steps(1_500, 250);
    sim.client_mut(slot).stalled = false;
    sim.run();
    let frames = sim.frames(slot);
    assert_eq!(
        frames,
        [
            ServerFrame::Pong(b"first".to_vec()),
            ServerFrame::Pong(b"second".to_vec()),
            ServerFrame::Close(Some(CloseCode::SERVICE_RESTART), "server restarting".into()),
        ]
    );
}
