//! The ingest thread against a real `redis-server` (never a mock): snapshot then live ticks, exact bytes
//! in publish order, frames built once per process, bad ticks, a Redis crash and restart, retirement.
//!
//! Needs `redis-server` (`RINGCAST_REDIS_SERVER` or PATH; `apt-get install -y redis-server`, which
//! tests/run.sh does). Every wait is bounded; every redis-server is stopped by PID on drop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringcast::cli::redis_server::RedisServer;
use ringcast::fanout::{self, FeedEvent, FeedReceiver, PreparedFrame};
use ringcast::ingest::{self, BadReason, IngestConfig, IngestStats};
use ringcast::runtime::wake::Control;

const WAIT: Duration = Duration::from_secs(10);

fn redis() -> RedisServer {
    let port = RedisServer::free_port().expect("a free port");
    RedisServer::start(port).unwrap_or_else(|e| panic!("{e}"))
}

fn con(url: &str) -> redis::Connection {
    let c = redis::Client::open(url).unwrap();
    let con = c
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    con.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    con
}

/// A running ingest thread with two workers' queues.
struct Ingest {
    workers: Vec<FeedReceiver>,
    stats: Arc<IngestStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ingest {
    fn start(url: &str, max_tick_bytes: usize) -> Ingest {
        let mut senders = Vec::new();
        let mut workers = Vec::new();
        for _ in 0..2 {
            let (tx, rx) = fanout::channel(Control::new().unwrap());
            senders.push(tx);
            workers.push(rx);
        }
        let stats = Arc::new(IngestStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let cfg = IngestConfig {
            redis_url: url.into(),
            prefix: "psx:".into(),
            max_tick_bytes,
            cluster: None,
            redis_ca: None,
        };
        let thread = ingest::start(cfg, senders, stats.clone(), stop.clone()).unwrap();
        Ingest {
            workers,
            stats,
            stop,
            thread: Some(thread),
        }
    }

    /// The next event of both workers (they must be the same).
    fn next(&self) -> (FeedEvent, FeedEvent) {
        let a = next(&self.workers[0]);
        let b = next(&self.workers[1]);
        (a, b)
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let finished = t.is_finished();
            if !std::thread::panicking() {
                assert!(finished, "the ingest thread did not stop within 5 s");
            }
        }
    }
}

fn next(rx: &FeedReceiver) -> FeedEvent {
    rx.recv_timeout(WAIT)
        .unwrap_or_else(|e| panic!("no feed event within {WAIT:?}: {e}"))
}

/// The payload of a server text frame.
fn payload(frame: &PreparedFrame) -> &[u8] {
    assert_eq!(frame[0], 0x81, "a final text frame");
    let (len, off) = match frame[1] {
        126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
        127 => (
            u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    assert_eq!(frame.len(), off + len, "frame length");
    &frame[off..]
}

fn snapshot(e: &FeedEvent) -> Vec<(String, Vec<u8>)> {
    match e {
        FeedEvent::Snapshot(s) => s
            .iter()
            .map(|(sym, f)| (sym.to_string(), payload(f).to_vec()))
            .collect(),
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

/// A live tick's (symbol, payload); both workers got the very same frame.
fn tick_pair(a: &FeedEvent, b: &FeedEvent) -> (String, Vec<u8>) {
    match (a, b) {
        (
            FeedEvent::Tick { symbol, frame, .. },
            FeedEvent::Tick {
                symbol: symbol_b,
                frame: frame_b,
                ..
            },
        ) => {
            assert_eq!(symbol, symbol_b);
            assert!(Arc::ptr_eq(frame, frame_b), "frame built once, shared");
            (symbol.to_string(), payload(frame).to_vec())
        }
        other => panic!("expected ticks, got {other:?}"),
    }
}

#[test]
fn snapshot_then_live_ticks_byte_exact_in_order_built_once() {
    let server = redis();
    let url = server.url();
    let mut c = con(&url);
    let efert = r#"{"symbol": "EFERT", "open": "50.10", "close": "60.10", "low": "48.50", "high": "48.00", "price": "55.00"}"#;
    let luck = r#"{"symbol":"LUCK","price":"405.00","extra":{"nested":[1,2.50,"x"]}}"#;
    let _: () = redis::cmd("HSET")
        .arg("psx:ticks")
        .arg("LUCK")
        .arg(luck)
        .arg("EFERT")
        .arg(efert)
        .arg("BROKEN")
        .arg("not json")
        .query(&mut c)
        .unwrap();

    let ing = Ingest::start(&url, 1024);
    let (a, b) = ing.next();
    let snap = snapshot(&a);
    assert_eq!(
        snap,
        vec![
            ("EFERT".to_string(), efert.as_bytes().to_vec()),
            ("LUCK".to_string(), luck.as_bytes().to_vec())
        ]
    );
    match (&a, &b) {
        (FeedEvent::Snapshot(x), FeedEvent::Snapshot(y)) => assert!(Arc::ptr_eq(x, y)),
        other => panic!("{other:?}"),
    }
    assert!(ing.stats.redis_up.load(Ordering::Relaxed));
    assert_eq!(
        ing.stats.bad(BadReason::NotJson),
        1,
        "the stored `not json`"
    );

    // Exactly one pub/sub connection, subscribed to both channels.
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
    let subscribers: Vec<&str> = clients.lines().filter(|l| !l.contains(" sub=0 ")).collect();
    assert_eq!(subscribers.len(), 1, "{clients}");
    assert!(subscribers[0].contains(" sub=2 "), "{clients}");

    // Live messages: single objects (with surrounding whitespace), arrays with bad elements, garbage.
    let big = format!(r#"{{"symbol":"BIG","pad":"{}"}}"#, "x".repeat(300));
    let huge = format!(r#"{{"symbol":"HUGE","pad":"{}"}}"#, "x".repeat(2000));
    let mut expected: Vec<(String, Vec<u8>)> = Vec::new();
    let mut publish = |msg: &str| {
        let n: i64 = redis::cmd("PUBLISH")
            .arg("psx:ticks")
            .arg(msg)
            .query(&mut c)
            .unwrap();
        assert_eq!(n, 1, "one subscriber per process");
    };
    publish(" \n{\"symbol\":\"EFERT\",\"price\":\"55.10\"}\t\r\n");
    expected.push((
        "EFERT".into(),
        br#"{"symbol":"EFERT","price":"55.10"}"#.to_vec(),
    ));
    publish(&format!(
        r#"[{{"symbol":"LUCK", "price":"406.00"}}, 17, {{"price":"1"}}, {big}, {huge}, {{"symbol":"A B"}},
            {{"symbol":"HBL","price":"99.99"}}]"#
    ));
    expected.push((
        "LUCK".into(),
        br#"{"symbol":"LUCK", "price":"406.00"}"#.to_vec(),
    ));
    expected.push(("BIG".into(), big.as_bytes().to_vec()));
    expected.push((
        "HBL".into(),
        br#"{"symbol":"HBL","price":"99.99"}"#.to_vec(),
    ));
    publish("garbage");
    publish("[]");
    for i in 0..200 {
        let t = format!(r#"{{"symbol":"S{}","seq":{i}}}"#, i % 7);
        if i % 3 == 0 {
            publish(&format!("[{t},{t}]"));
            expected.push((format!("S{}", i % 7), t.clone().into_bytes()));
        } else {
            publish(&t);
        }
        expected.push((format!("S{}", i % 7), t.into_bytes()));
    }

    let mut got = Vec::new();
    while got.len() < expected.len() {
        let (a, b) = ing.next();
        got.push(tick_pair(&a, &b));
    }
    assert_eq!(got, expected);
    assert!(ing.workers[0].try_recv().is_err(), "nothing more");

    let s = &ing.stats;
    assert_eq!(s.messages.load(Ordering::Relaxed), 204);
    assert_eq!(s.ticks.load(Ordering::Relaxed), expected.len() as u64);
    assert_eq!(
        s.frames_built.load(Ordering::Relaxed),
        2 + expected.len() as u64,
        "one frame per good tick (2 snapshot + live), not one per worker"
    );
    assert_eq!(s.bad(BadReason::NotObject), 1);
    assert_eq!(s.bad(BadReason::NoSymbol), 1);
    assert_eq!(s.bad(BadReason::TooLarge), 1);
    assert_eq!(s.bad(BadReason::BadSymbol), 1);
    assert_eq!(
        s.bad(BadReason::NotJson),
        2,
        "stored `not json` + `garbage`"
    );
    assert_eq!(s.snapshots.load(Ordering::Relaxed), 1);
    assert_eq!(s.reconnects.load(Ordering::Relaxed), 0);
}

#[test]
fn redis_crash_and_restart_then_retire() {
    let dir = std::env::temp_dir().join(format!("ringcast-ingest-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir_arg = dir.to_string_lossy().to_string();
    let saved = ["--dir", dir_arg.as_str(), "--dbfilename", "restart.rdb"];
    let port = RedisServer::free_port().unwrap();
    let server = RedisServer::start_with(port, &saved).unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();

    let ing = Ingest::start(&url, 16 * 1024);
    let (a, _) = ing.next();
    assert!(snapshot(&a).is_empty());
    let mut c = con(&url);
    let _: i64 = redis::cmd("PUBLISH")
        .arg("psx:ticks")
        .arg(r#"{"symbol":"OGDC","price":"1"}"#)
        .query(&mut c)
        .unwrap();
    let (a, b) = ing.next();
    assert_eq!(tick_pair(&a, &b).0, "OGDC");

    // New data the ingest has not seen (HSET without PUBLISH), saved so the restarted server has it.
    let ogdc = r#"{"symbol":"OGDC","price":"2"}"#;
    let ppl = r#"{"symbol":"PPL","price":"3"}"#;
    let _: () = redis::cmd("HSET")
        .arg("psx:ticks")
        .arg("OGDC")
        .arg(ogdc)
        .arg("PPL")
        .arg(ppl)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    drop(c);
    server.kill();

    for w in &ing.workers {
        match next(w) {
            FeedEvent::Status { up: false, frame } => {
                assert_eq!(payload(&frame), br#"{"type":"feed","status":"down"}"#)
            }
            other => panic!("expected feed down, got {other:?}"),
        }
    }
    assert!(!ing.stats.redis_up.load(Ordering::Relaxed));
    // Still down a while later: `down` is sent once, not once per failed attempt.
    std::thread::sleep(Duration::from_millis(600));
    assert!(ing.workers[0].try_recv().is_err(), "down announced once");

    let server = RedisServer::start_with(port, &saved).unwrap_or_else(|e| panic!("{e}"));
    for w in &ing.workers {
        match next(w) {
            FeedEvent::Status { up: true, frame } => {
                assert_eq!(payload(&frame), br#"{"type":"feed","status":"up"}"#)
            }
            other => panic!("expected feed up, got {other:?}"),
        }
        assert_eq!(
            snapshot(&next(w)),
            vec![
                ("OGDC".to_string(), ogdc.as_bytes().to_vec()),
                ("PPL".to_string(), ppl.as_bytes().to_vec())
            ]
        );
    }
    assert_eq!(ing.stats.reconnects.load(Ordering::Relaxed), 1);
    assert_eq!(ing.stats.snapshots.load(Ordering::Relaxed), 2);
    assert!(ing.stats.redis_up.load(Ordering::Relaxed));

    // Retirement, and a malformed control message that is ignored.
    let mut c = con(&server.url());
    for msg in [r#"{"op":"explode"}"#, r#"{"op":"retire","symbol":"PPL"}"#] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("psx:control")
            .arg(msg)
            .query(&mut c)
            .unwrap();
    }
    let (a, b) = ing.next();
    match (&a, &b) {
        (FeedEvent::Retire { symbol, frame }, FeedEvent::Retire { frame: frame_b, .. }) => {
            assert_eq!(&**symbol, "PPL");
            assert!(Arc::ptr_eq(frame, frame_b));
            assert_eq!(payload(frame), br#"{"type":"retired","symbol":"PPL"}"#);
        }
        other => panic!("expected retire, got {other:?}"),
    }
    assert_eq!(ing.stats.retired.load(Ordering::Relaxed), 1);
    drop(ing);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unreachable_redis_is_announced_and_stop_is_prompt() {
    // Nothing listens on this port: the feed is down from the start, and the thread still stops quickly.
    let port = RedisServer::free_port().unwrap();
    let ing = Ingest::start(&format!("redis://127.0.0.1:{port}"), 1024);
    match next(&ing.workers[0]) {
        FeedEvent::Status { up: false, .. } => {}
        other => panic!("expected feed down, got {other:?}"),
    }
    let t0 = Instant::now();
    drop(ing);
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(
        ingest::start(
            IngestConfig {
                redis_url: "http://nope".into(),
                ..Default::default()
            },
            vec![],
            Arc::new(IngestStats::default()),
            Arc::new(AtomicBool::new(false))
        )
        .is_err()
    );
}
