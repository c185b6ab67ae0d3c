//! Abuse resistance on the feed side (issue 9), against the real binary, a real `redis-server` and real
//! sockets: secrets stay out of logs, errors and /metrics; per-user messages are validated like ticks;
//! the symbol table is bounded without losing what a client is owed; a wrong-type snapshot key does not
//! stop the live feed.
//!
//! Every wait is bounded; every process started here is stopped by PID on drop.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    free_port, publish_tick, read_frame, read_head, read_json, read_to_close, redis_con, send_text,
    start_redis,
};

const PREFIX: &str = "psx:";
const WAIT: Duration = Duration::from_secs(10);

/// `ringcast serve` with its stderr (the logs) captured to a file.
struct LoggedServer {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    metrics_token: Option<String>,
}

impl LoggedServer {
    fn start(args: &[&str]) -> LoggedServer {
        LoggedServer::start_with_env(args, &[])
    }

    fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> LoggedServer {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::env::temp_dir().join(format!(
            "ringcast-abuse-ingest-{}-{}.log",
            std::process::id(),
            addr.port()
        ));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(common::bin())
            .args(["--log", "info", "serve", "--listen", &addr.to_string()])
            .args(["--prefix", PREFIX])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start ringcast");
        let metrics_token = args
            .iter()
            .position(|a| *a == "--metrics-token")
            .map(|i| args[i + 1].to_string());
        let server = LoggedServer {
            child,
            addr,
            log,
            metrics_token,
        };
        let deadline = Instant::now() + WAIT;
        while server.try_get("/healthz").map(|r| r.0) != Some(200) {
            assert!(Instant::now() < deadline, "no /healthz within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn try_get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
        let resp = read_to_close(&mut s);
        Some((
            common::status_of(&resp),
            String::from_utf8_lossy(&resp).into_owned(),
        ))
    }

    fn metrics_text(&self) -> String {
        let path = match &self.metrics_token {
            Some(t) => format!("/metrics?token={t}"),
            None => "/metrics".into(),
        };
        let (status, text) = self.try_get(&path).expect("GET /metrics");
        assert_eq!(status, 200, "{text}");
        text
    }

    /// Sum of a metric over its label sets.
    fn metric(&self, name: &str) -> f64 {
        common::metric_sum(&self.metrics_text(), name)
    }

    fn wait_metric(&self, name: &str, at_least: f64) {
        let deadline = Instant::now() + WAIT;
        while self.metric(name) < at_least {
            assert!(
                Instant::now() < deadline,
                "{name} did not reach {at_least} within 10 s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the logs contain `needle`.
    fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.logs().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?} within 10 s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A raw WebSocket connection.
    fn ws(&self) -> TcpStream {
        ws_at(self, "/")
    }
}

impl Drop for LoggedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The next data frame (opcode, payload), skipping pings; None on timeout or close.
fn next_frame(ws: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    loop {
        let (_, opcode, payload) = read_frame(ws)?;
        if opcode != 0x9 {
            return Some((opcode, payload));
        }
    }
}

// ---- Item 4: secrets never appear in logs, errors or /metrics. ----

const PASSWORD: &str = "Pw-abuse4-hunter2";
const METRICS_TOKEN: &str = "metrics-token-abuse4-xyz";
const AUTH_SECRET: &str = "auth-secret-abuse4-0123456789abcdef-0123";

fn assert_no_secret(what: &str, text: &str) {
    for secret in [PASSWORD, METRICS_TOKEN, AUTH_SECRET] {
        assert!(
            !text.contains(secret),
            "{what} contains the secret {secret:?}:\n{text}"
        );
    }
}

#[test]
fn secrets_never_reach_logs_errors_or_metrics() {
    let redis = start_redis();
    let port = redis.port();
    let mut admin = redis_con(&redis.url());
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(PASSWORD)
        .query(&mut admin)
        .unwrap();
    let good = format!("redis://default:{PASSWORD}@127.0.0.1:{port}/0");
    let wrong = format!("redis://default:{PASSWORD}-wrong@127.0.0.1:{port}");
    let unreachable = format!("redis://:{PASSWORD}@127.0.0.1:{}", free_port());

    // Start-up, feed down (the subscriber's connection is killed) and feed up again.
    let server = LoggedServer::start(&[
        "--redis",
        &good,
        "--metrics-token",
        METRICS_TOKEN,
        "--auth-secret",
        AUTH_SECRET,
    ]);
    server.wait_metric("ringcast_feed_snapshots_total", 1.0);
    let mut con = redis_con(&good);
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut con)
        .unwrap();
    server.wait_metric("ringcast_feed_reconnects_total", 1.0);
    server.wait_log("up again");
    let metrics = server.metrics_text();
    assert_no_secret("/metrics", &metrics);
    let logs = server.logs();
    assert!(
        logs.contains(&format!("redis://default:***@127.0.0.1:{port}/0")),
        "the URL is logged, redacted:\n{logs}"
    );
    assert_no_secret("the server's logs", &logs);

    // A wrong password and an unreachable host: the error paths print too.
    for url in [&wrong, &unreachable] {
        let server = LoggedServer::start(&["--redis", url]);
        server.wait_log("Redis feed down");
        assert_no_secret("the server's logs", &server.logs());
        for cli in [
            vec!["get", "EFERT", "--redis", url],
            vec![
                "publish",
                r#"{"symbol":"EFERT","price":"1"}"#,
                "--redis",
                url,
            ],
            vec!["retire", "EFERT", "--redis", url],
        ] {
            let out = Command::new(common::bin()).args(&cli).output().unwrap();
            assert!(!out.status.success(), "{cli:?} should fail");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("***"), "{cli:?}: {stderr}");
            assert_no_secret(&format!("{cli:?}'s stderr"), &stderr);
        }
    }

    // The demo feed's connection errors, logged while it retries.
    let out = Command::new(common::bin())
        .args([
            "--log",
            "info",
            "feed",
            "--demo",
            "--duration",
            "1s",
            "--redis",
        ])
        .arg(&wrong)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("***"), "feed: {stderr}");
    assert_no_secret("feed's logs", &stderr);

    // A URL that does not parse is refused at start-up without echoing its password.
    let out = Command::new(common::bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--redis"])
        .arg(format!("redis://:{PASSWORD}@[bad-host"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_no_secret(
        "serve's start-up error",
        &String::from_utf8_lossy(&out.stderr),
    );
    drop(admin);
    drop(redis);
}

// ---- Item 5: per-user messages are validated like ticks. ----

/// A raw WebSocket upgrade to `target`.
fn ws_at(server: &LoggedServer, target: &str) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&server.addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(common::upgrade_request(target).as_bytes())
        .unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

#[test]
fn per_user_messages_are_utf8_and_bounded() {
    let redis = start_redis();
    let server = LoggedServer::start(&[
        "--redis",
        &redis.url(),
        "--auth-secret",
        AUTH_SECRET,
        "--max-tick-bytes",
        "4096",
    ]);
    server.wait_metric("ringcast_feed_snapshots_total", 1.0);
    let token = common::signed_token(AUTH_SECRET.as_bytes(), "alice", common::now_s() + 600, None);
    let mut ws = ws_at(&server, &format!("/?token={token}"));
    let mut con = redis_con(&redis.url());
    let channel = format!("{PREFIX}user:alice");
    let user_publish = |con: &mut redis::Connection, payload: &[u8]| {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload)
            .query(con)
            .unwrap();
    };
    user_publish(&mut con, b"{\"type\":\"note\",\"text\":\"\xff\xfe\"}");
    user_publish(&mut con, &vec![b'x'; 64 * 1024]);
    user_publish(&mut con, "{\"type\":\"note\",\"text\":\"ok é\"}".as_bytes());
    let (opcode, payload) = next_frame(&mut ws).expect("the valid message");
    assert_eq!(opcode, 0x1);
    assert_eq!(
        String::from_utf8(payload).expect("a text frame is UTF-8"),
        "{\"type\":\"note\",\"text\":\"ok é\"}",
        "the bad messages were dropped, the good one delivered"
    );
    server.wait_metric("ringcast_feed_bad_user_messages_total", 2.0);
    let text = server.metrics_text();
    assert!(
        text.contains("ringcast_feed_bad_user_messages_total{reason=\"not_utf8\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("ringcast_feed_bad_user_messages_total{reason=\"too_large\"} 1"),
        "{text}"
    );
    assert_eq!(server.metric("ringcast_feed_user_messages_total"), 1.0);
    server.wait_log("per-user message dropped");
    // Logged at a limited rate: a flood of bad messages gives a line or two, not one per message.
    for _ in 0..200 {
        user_publish(&mut con, b"\xff");
    }
    user_publish(&mut con, b"\"after\"");
    let (_, payload) = next_frame(&mut ws).expect("the next valid message");
    assert_eq!(payload, b"\"after\"");
    let lines = server.logs().matches("per-user message dropped").count();
    assert!(lines <= 4, "{lines} log lines for 202 bad messages");
}

// ---- Item 11: a wrong-type snapshot key does not stop the live feed. ----

/// Subscribe and return the ack (read as the very next message: unlike `common::subscribe`, which
/// skips feed statuses, a feed-down status before it fails the test).
fn subscribe(ws: &mut TcpStream, symbols: &str) -> serde_json::Value {
    send_text(ws, symbols);
    let ack = read_json(ws);
    assert_eq!(ack["type"], "subscribed", "{ack}");
    ack
}

#[test]
fn wrong_type_snapshot_key_keeps_the_live_feed() {
    let redis = start_redis();
    let mut con = redis_con(&redis.url());
    let key = format!("{PREFIX}ticks");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("not a hash")
        .query(&mut con)
        .unwrap();
    let server = LoggedServer::start(&["--redis", &redis.url()]);
    // The live stream comes up although HGETALL fails with WRONGTYPE.
    server.wait_metric("ringcast_feed_up", 1.0);
    server.wait_log("WRONGTYPE");
    let logs = server.logs();
    assert!(
        logs.contains(&format!("key={key}")),
        "the log names the key:\n{logs}"
    );
    assert_eq!(server.metric("ringcast_feed_snapshots_total"), 0.0);
    assert!(server.metric("ringcast_feed_snapshot_failures_total") >= 1.0);

    let mut ws = server.ws();
    let ack = subscribe(&mut ws, "EFERT");
    assert_eq!(ack["unknown"], serde_json::json!(["EFERT"]));
    let tick = r#"{"symbol":"EFERT","price":"55.00"}"#;
    let _: i64 = redis::cmd("PUBLISH")
        .arg(&key)
        .arg(tick)
        .query(&mut con)
        .unwrap();
    let (opcode, payload) = next_frame(&mut ws).expect("the live tick");
    assert_eq!(
        (opcode, String::from_utf8_lossy(&payload).into_owned()),
        (0x1, tick.to_string()),
        "live ticks flow, and no feed-down status came first"
    );

    // Once the key is fixed, the retried snapshot arrives without a reconnect.
    let _: () = redis::cmd("DEL").arg(&key).query(&mut con).unwrap();
    let stored = r#"{"symbol":"LUCK","price":"405.00"}"#;
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("LUCK")
        .arg(stored)
        .query(&mut con)
        .unwrap();
    server.wait_metric("ringcast_feed_snapshots_total", 1.0);
    assert_eq!(server.metric("ringcast_feed_reconnects_total"), 0.0);
    let mut late = server.ws();
    let ack = subscribe(&mut late, "LUCK");
    assert_eq!(ack["unknown"], serde_json::json!([]));
    let (_, payload) = next_frame(&mut late).expect("LUCK from the snapshot");
    assert_eq!(payload, stored.as_bytes());
}

// ---- Item 10: a bounded symbol table that still gives every subscriber the latest value. ----

fn tick_of(symbol: &str, price: u32) -> String {
    format!(r#"{{"symbol":"{symbol}","price":"{price}.00"}}"#)
}

/// The next text frame's payload, as a string.
fn next_text(ws: &mut TcpStream) -> String {
    let (opcode, payload) = next_frame(ws).expect("a frame");
    assert_eq!(opcode, 0x1);
    String::from_utf8(payload).unwrap()
}

#[test]
fn bounded_symbol_table_evicts_refuses_and_still_serves_the_latest_value() {
    let redis = start_redis();
    let mut con = redis_con(&redis.url());
    // One worker, so that which worker a connection lands on cannot change what its table holds. (The
    // limit by its environment variable, so that an older build starts too and fails on the behaviour.)
    let server = LoggedServer::start_with_env(
        &["--redis", &redis.url(), "--workers", "1"],
        &[("RINGCAST_MAX_SYMBOLS", "3")],
    );
    server.wait_metric("ringcast_feed_snapshots_total", 1.0);

    // Ten symbols nobody subscribes to: the table keeps three, evicting the least recently ticked.
    for i in 0..10 {
        publish_tick(&mut con, PREFIX, &tick_of(&format!("S{i}"), i));
    }
    server.wait_metric("ringcast_symbols_evicted_total", 7.0);
    let deadline = Instant::now() + WAIT;
    loop {
        let text = server.metrics_text();
        let per_worker: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with("ringcast_symbols{worker="))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        if per_worker == [3.0] {
            break;
        }
        assert!(Instant::now() < deadline, "symbols gauge: {per_worker:?}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A subscriber of an evicted symbol still gets its latest value, read back from Redis.
    let mut a = server.ws();
    let ack = subscribe(&mut a, "S0,S8,S9");
    assert_eq!(ack["symbols"], serde_json::json!(["S0", "S8", "S9"]));
    let mut got = vec![next_text(&mut a), next_text(&mut a), next_text(&mut a)];
    got.sort();
    assert_eq!(got, [tick_of("S0", 0), tick_of("S8", 8), tick_of("S9", 9)]);
    let mut b = server.ws();
    subscribe(&mut b, "S1");
    assert_eq!(next_text(&mut b), tick_of("S1", 1));
    server.wait_metric("ringcast_feed_latest_fetches_total", 2.0);

    // Live ticks of subscribed symbols flow.
    publish_tick(&mut con, PREFIX, &tick_of("S0", 100));
    assert_eq!(next_text(&mut a), tick_of("S0", 100));

    // Every symbol of the table subscribed (S0..S9, past the limit: subscribing always works): ticks of
    // new symbols are then refused, counted and logged, and nothing is lost for a later subscriber.
    let mut c = server.ws();
    subscribe(&mut c, "S2,S3,S4");
    for _ in 0..3 {
        next_text(&mut c);
    }
    let mut d = server.ws();
    subscribe(&mut d, "S5,S6,S7");
    for _ in 0..3 {
        next_text(&mut d);
    }
    assert_eq!(server.metric("ringcast_symbol_ticks_refused_total"), 0.0);
    publish_tick(&mut con, PREFIX, &tick_of("NEW", 42));
    server.wait_metric("ringcast_symbol_ticks_refused_total", 1.0);
    server.wait_log("symbol table is full");
    let mut e = server.ws();
    let ack = subscribe(&mut e, "NEW");
    assert_eq!(ack["symbols"], serde_json::json!(["NEW"]));
    assert_eq!(next_text(&mut e), tick_of("NEW", 42));
    publish_tick(&mut con, PREFIX, &tick_of("NEW", 43));
    assert_eq!(next_text(&mut e), tick_of("NEW", 43));
}
