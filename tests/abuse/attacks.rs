//! The attacks of issue 9, one function per numbered item, each bounded in count and time and aimed at
//! 127.0.0.1 only. Each checks its own issue-level outcome (refused, not delivered, still open, closed
//! in time); the harness judges health, bystander lateness and RSS around it.

use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{KeyInit, Mac};

use crate::common::{frame, upgrade_request};
use crate::harness::*;

/// Stored symbols (1 KiB ticks) that item 2's attacker subscribes to again and again.
pub const STORED: usize = 256;

pub fn stored_symbol(i: usize) -> String {
    format!("P{i:03}")
}

/// Seed Redis before the server starts: the stored ticks item 2 re-subscribes to.
pub fn seed(con: &mut redis::Connection) {
    let pad = "x".repeat(1000);
    let mut cmd = redis::cmd("HSET");
    cmd.arg(format!("{PREFIX}ticks"));
    for i in 0..STORED {
        let s = stored_symbol(i);
        cmd.arg(&s).arg(format!(
            r#"{{"symbol":"{s}","price":"1.00","pad":"{pad}"}}"#
        ));
    }
    let _: i64 = cmd.query(con).unwrap();
}

/// Send `bytes` from a fresh source address; the response head within `within` (empty: none).
fn exchange(suite: &Suite, bytes: &[u8], within: Duration) -> (String, Duration) {
    let mut s = connect_from(suite.addr, fresh_source(), None);
    let t = Instant::now();
    let _ = s.write_all(bytes);
    let head = read_head_within(&mut s, within);
    (head, t.elapsed())
}

fn status(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A token whose JSON payload is `payload` verbatim (serde_json would merge duplicate keys).
fn raw_token(payload: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!(
        "{}.{}",
        b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64.encode(payload)
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64.encode(mac.finalize().into_bytes()))
}

/// Item 7: malformed or ambiguous heads get an early 4xx (never a 101, never the 10 s timeout); a
/// token with duplicate keys is refused at once (close 4003 right after the 101, or a 4xx).
pub fn http_strictness(suite: &Suite, w: &mut Window) {
    let token = suite.user_token("mallory");
    let up = |extra: &str| {
        upgrade_request(&format!("/?token={token}"))
            .replace("\r\n\r\n", &format!("\r\n{extra}\r\n"))
            .into_bytes()
    };
    let mut cl_te = up("Content-Length: 15\r\nTransfer-Encoding: chunked\r\n");
    cl_te.extend_from_slice(&frame(true, 0x1, BYSTANDER.as_bytes()));
    let dup_keys = raw_token(&format!(
        r#"{{"sub":"bystander","exp":{},"sub":"mallory"}}"#,
        now_s() + 600
    ));
    suite.tokens.lock().unwrap().push(dup_keys.clone());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("duplicate Host", up("Host: evil.example\r\n")),
        ("Content-Length with Transfer-Encoding on an upgrade", cl_te),
        (
            "duplicate Origin",
            up("Origin: https://a.example\r\nOrigin: https://b.example\r\n"),
        ),
        (
            "LF-only head",
            b"GET /healthz HTTP/1.1\nHost: localhost\n\n".to_vec(),
        ),
        ("junk head", b"\x00\xff\x13junk junk junk\n\n".to_vec()),
    ];
    for (what, bytes) in cases {
        let (head, took) = exchange(suite, &bytes, Duration::from_secs(2));
        let code = status(&head);
        if !(400..500).contains(&code) {
            w.fail(format!(
                "{what}: expected an early 4xx, got {} after {} ms",
                if code == 0 {
                    "nothing".into()
                } else {
                    code.to_string()
                },
                took.as_millis()
            ));
        }
    }
    // A token refused at once: 101 + close 4003 (the default `--auth-refusal close`), or a 4xx.
    let mut s = connect_from(suite.addr, fresh_source(), None);
    let _ = s.write_all(upgrade_request(&format!("/?token={dup_keys}")).as_bytes());
    let head = read_head_within(&mut s, Duration::from_secs(2));
    match status(&head) {
        400..500 => {}
        101 => match FrameReader::new(s).next(Duration::from_secs(2)) {
            Frame::Data(0x8, p) if p.starts_with(&4003u16.to_be_bytes()) => {}
            Frame::Data(op, p) => w.fail(format!(
                "token with duplicate JSON keys: 101 then opcode {op} {p:?}, not close 4003"
            )),
            Frame::Idle | Frame::Eof => {
                w.fail("token with duplicate JSON keys: 101 then no close 4003")
            }
        },
        code => w.fail(format!(
            "token with duplicate JSON keys: expected close 4003 or a 4xx, got {code}"
        )),
    }
}

/// Item 6: tokens whose `exp` is far in the future keep their connection open (or are refused at the
/// upgrade: 401, or 101 + close 4003 with the default `--auth-refusal close`); they are never accepted
/// and then closed with 4001 at once. The first `exp` is the
/// one whose milliseconds (after the 30 s leeway) wrap a u64 to a few hundred ms on today's main.
pub fn far_future_exp(suite: &Suite, w: &mut Window) {
    let wraps = now_s() - 30 + u64::MAX / 1000 + 1;
    for exp in [wraps, u64::MAX] {
        far_future_client(suite, w, exp);
    }
}

fn far_future_client(suite: &Suite, w: &mut Window, exp: u64) {
    let token = suite.token(serde_json::json!({"sub": "far", "exp": exp}));
    let mut s = connect_from(suite.addr, fresh_source(), None);
    s.write_all(upgrade_request(&format!("/?token={token}")).as_bytes())
        .unwrap();
    let head = read_head_within(&mut s, Duration::from_secs(2));
    match status(&head) {
        401 => return,
        101 => {}
        other => return w.fail(format!("exp {exp}: upgrade answered {other}: {head:?}")),
    }
    s.write_all(&frame(true, 0x1, BYSTANDER.as_bytes()))
        .unwrap();
    let mut r = FrameReader::new(s);
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        match r.next(until.saturating_duration_since(Instant::now())) {
            Frame::Data(0x8, p) => {
                let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                if code == Some(4003) {
                    return; // refused at the upgrade, as a browser can see it
                }
                return w.fail(format!("exp {exp}: closed with {code:?} within 1.5 s"));
            }
            Frame::Eof => return w.fail(format!("exp {exp}: connection dropped within 1.5 s")),
            _ => {}
        }
    }
}

/// Item 5: non-UTF-8 and oversized per-user messages are not forwarded; a valid one still is.
pub fn user_messages(suite: &Suite, w: &mut Window) {
    let s = suite.ws_from(fresh_source(), "alice", None);
    let mut r = FrameReader::new(s);
    let mut con = suite.redis();
    let channel = format!("{PREFIX}user:alice");
    let big = format!(r#"{{"type":"note","pad":"{}"}}"#, "a".repeat(1 << 20));
    let payloads: [&[u8]; 3] = [
        b"\xff\xfe{\"type\":\"note\"}\xc3",
        big.as_bytes(),
        br#"{"type":"note","ok":true}"#,
    ];
    for p in payloads {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(p)
            .query(&mut con)
            .unwrap();
    }
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        match r.next(until.saturating_duration_since(Instant::now())) {
            Frame::Data(op, p) => {
                if p.len() >= 1 << 20 {
                    w.fail(format!("a {} B per-user message was forwarded", p.len()));
                } else if op == 0x1 && std::str::from_utf8(&p).is_err() {
                    w.fail("a non-UTF-8 per-user message was forwarded as text");
                } else if p == payloads[2] {
                    return;
                }
            }
            Frame::Idle => return w.fail("the valid per-user message did not arrive within 3 s"),
            Frame::Eof => return w.fail("alice's connection was closed"),
        }
    }
}

/// Item 9: `--max-conns-per-ip 8` holds for the whole process, not per worker.
pub fn per_ip_limit(suite: &Suite, w: &mut Window) {
    let source = fresh_source();
    let token = suite.user_token("crowd");
    let mut held = Vec::new();
    let mut accepted = 0;
    for _ in 0..24 {
        let mut s = connect_from(suite.addr, source, None);
        s.write_all(upgrade_request(&format!("/?token={token}")).as_bytes())
            .unwrap();
        let head = read_head_within(&mut s, Duration::from_secs(2));
        if status(&head) == 101 {
            accepted += 1;
        }
        held.push(s);
    }
    if accepted > 8 || accepted == 0 {
        w.fail(format!(
            "{accepted} of 24 upgrades from one address accepted (limit 8 per process)"
        ));
    }
}

/// Item 4: the feed goes down and up (its pub/sub connection killed), so every feed log line is written.
pub fn feed_bounce(suite: &Suite, w: &mut Window) {
    w.feed_gap = true;
    let before = suite.metric("ringcast_feed_snapshots_total").unwrap_or(0.0) as u32;
    let mut con = suite.redis();
    let _: redis::RedisResult<i64> = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut con);
    if !suite.wait_snapshots(before + 1, Duration::from_secs(5)) {
        w.fail("the feed did not come back within 5 s");
    }
    std::thread::sleep(Duration::from_millis(700));
}

/// ~17k distinct 1-3 character symbols in one plain subscribe, under the 64 KiB message limit.
fn huge_subscribe() -> String {
    let alphabet: Vec<char> = ('A'..='Z').chain('0'..='9').collect();
    let mut symbols: Vec<String> = alphabet.iter().map(|c| c.to_string()).collect();
    for a in &alphabet {
        for b in &alphabet {
            symbols.push(format!("{a}{b}"));
        }
    }
    'out: for a in &alphabet {
        for b in &alphabet {
            for c in &alphabet {
                if symbols.iter().map(|s| s.len() + 1).sum::<usize>() > 65_000 {
                    break 'out;
                }
                symbols.push(format!("{a}{b}{c}"));
            }
        }
    }
    symbols.join(",")
}

/// Item 1: two clients each send 6 plain subscribes of ~17k distinct symbols at 19/s (the issue's
/// 0.3 s of worker CPU each on today's main); the answers are awaited (bounded).
pub fn quadratic_subscribe(suite: &Suite, w: &mut Window) {
    let text = huge_subscribe();
    assert!(text.len() <= 65_536 && text.split(',').count() > 15_000);
    let mut readers: Vec<FrameReader> = (0..2)
        .map(|_| FrameReader::new(suite.ws_from(fresh_source(), "greedy", None)))
        .collect();
    let msg = frame(true, 0x1, text.as_bytes());
    for _ in 0..6 {
        for r in &mut readers {
            let _ = r.s.write_all(&msg);
        }
        std::thread::sleep(Duration::from_millis(1000 / 19));
    }
    let until = Instant::now() + Duration::from_secs(6);
    for r in &mut readers {
        let mut answers = 0;
        while answers < 6 {
            match r.next(until.saturating_duration_since(Instant::now())) {
                Frame::Data(0x1, _) => answers += 1,
                Frame::Data(..) => {}
                Frame::Idle => {
                    w.fail(format!(
                        "only {answers} of 6 subscribes answered within 6 s"
                    ));
                    break;
                }
                Frame::Eof => break,
            }
        }
    }
}

/// Item 2: a client that never reads re-subscribes to the same 256 stored symbols 8,000 times (each
/// one re-queued 256 latest ticks + an ack on today's main). With the default --max-msgs-per-s 20 the
/// growth per message is the same, only slower; this server runs with 0 (for item 3).
pub fn resubscribe(suite: &Suite, w: &mut Window) {
    let mut s = suite.ws_from(fresh_source(), "resub", Some(4096));
    let list: Vec<String> = (0..STORED).map(stored_symbol).collect();
    let msg = frame(true, 0x1, list.join(",").as_bytes());
    let batch: Vec<u8> = msg.repeat(50);
    let until = Instant::now() + Duration::from_secs(3);
    for _ in 0..160 {
        if Instant::now() > until || s.write_all(&batch).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    w.peak(suite.rss_kb());
}

/// Item 3 (needs --max-msgs-per-s 0): a client that never reads sends 40 MB of pings (125-byte
/// payloads) within 3 s; every pong it is owed waited in its queue on today's main.
pub fn ping_flood(suite: &Suite, w: &mut Window) {
    let mut s = suite.ws_from(fresh_source(), "pinger", Some(4096));
    let ping = frame(true, 0x9, &[0x5a; 125]);
    let batch: Vec<u8> = ping.repeat(500);
    let until = Instant::now() + Duration::from_secs(3);
    let mut sent = 0usize;
    while sent < 40 << 20 && Instant::now() < until {
        if s.write_all(&batch).is_err() {
            break;
        }
        sent += batch.len();
    }
    std::thread::sleep(Duration::from_millis(300));
    w.peak(suite.rss_kb());
}

/// PUBLISH `ticks` as one message, a JSON array (one batch of the feed).
fn publish_batch(con: &mut redis::Connection, ticks: &[String]) {
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{PREFIX}ticks"))
        .arg(format!("[{}]", ticks.join(",")))
        .query(con)
        .unwrap();
}

/// Item 10: 250,000 distinct symbols published over ~5 s (arrays of 1,000 ticks, one every 20 ms: a
/// heavy feed, not a volumetric one) must not all stay in memory.
pub fn symbol_universe(suite: &Suite, w: &mut Window) {
    let mut con = suite.redis();
    let n = 250_000;
    let before = suite.metric("ringcast_feed_ticks_total").unwrap_or(0.0);
    for chunk in 0..n / 1000 {
        let ticks: Vec<String> = (0..1000)
            .map(|i| format!(r#"{{"symbol":"U{:06}","price":"1.00"}}"#, chunk * 1000 + i))
            .collect();
        publish_batch(&mut con, &ticks);
        std::thread::sleep(Duration::from_millis(20));
    }
    // Wait (bounded) until the feed has taken them in.
    let deadline = Instant::now() + Duration::from_secs(5);
    while suite.metric("ringcast_feed_ticks_total").unwrap_or(0.0) < before + n as f64
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    w.peak(suite.rss_kb());
}

/// Item 12 (needs --slow-grace 2s; the default 10 s would double the suite): a client that stops
/// reading falls past --max-backlog on rounds of 64 symbols × 12 KB (until its ticks are conflated: the
/// kernel's send buffer absorbs the first few MB), then no tick of its symbols
/// follows; it must still be closed (1013) once the grace expires.
pub fn slow_grace(suite: &Suite, w: &mut Window) {
    let s = suite.ws_from(fresh_source(), "sloth", Some(4096));
    let mut r = FrameReader::new(s);
    let list: Vec<String> = (0..64).map(|i| format!("Q{i:02}")).collect();
    r.s.write_all(&frame(true, 0x1, list.join(",").as_bytes()))
        .unwrap();
    let _ = r.next(Duration::from_secs(2)); // the ack
    let mut con = suite.redis();
    let conflated = || {
        suite
            .metric("ringcast_conflated_frames_total")
            .unwrap_or(0.0)
    };
    let conflated_before = conflated();
    let pad = "q".repeat(12_000);
    // Rounds 100 ms apart, until the server starts conflating this client's ticks (it is past its backlog).
    for round in 0..12 {
        let ticks: Vec<String> = list
            .iter()
            .map(|s| format!(r#"{{"symbol":"{s}","round":{round},"pad":"{pad}"}}"#))
            .collect();
        publish_batch(&mut con, &ticks);
        std::thread::sleep(Duration::from_millis(100));
        if conflated() > conflated_before {
            break;
        }
    }
    // Grace (2 s) plus upkeep's period and a margin, without reading.
    std::thread::sleep(Duration::from_millis(3500));
    if conflated() <= conflated_before {
        w.fail("the attack did not put the client past --max-backlog (nothing conflated)");
    }
    // Now drain: a closed connection ends in a Close (1013) or EOF; an open one just goes quiet.
    loop {
        match r.next(Duration::from_millis(1500)) {
            Frame::Data(0x8, p) => {
                let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                if code != Some(1013) {
                    w.fail(format!("closed with {code:?}, expected 1013"));
                }
                return;
            }
            Frame::Data(..) => {}
            Frame::Eof => return,
            Frame::Idle => {
                return w.fail("still open 3.5 s after falling behind (grace 2 s, no later tick)");
            }
        }
    }
}

/// Item 8 (needs --max-conns-per-worker 64: the default table is 1,048,576 capped by RLIMIT_NOFILE,
/// more sockets than a test may open): WebSocket connections fill every worker's table (64 each, spread
/// by SO_REUSEPORT); the next upgrade must get 503 (+ Retry-After), not a reset or silence, and health
/// and metrics must still answer while the table is full.
pub fn full_table(suite: &Suite, w: &mut Window) {
    let mut held = Vec::new();
    let mut refusal = None;
    // Two workers x 64 slots: an upgrade is refused after at most 128 + the ones already open, but
    // SO_REUSEPORT's spread is uneven, so keep opening until both tables are full and one is refused
    // (bounded: 400 attempts).
    for _ in 0..400 {
        let token = suite.user_token("filler");
        let mut s = connect_from(suite.addr, fresh_source(), None);
        let _ = s.write_all(upgrade_request(&format!("/?token={token}")).as_bytes());
        let head = read_head_within(&mut s, Duration::from_secs(2));
        match status(&head) {
            101 => held.push(s),
            _ => {
                refusal = Some(head);
                // Keep going until a refusal is seen with both tables full: health is then probed
                // while no slot is left for a WebSocket anywhere.
                if held.len() >= 120 {
                    break;
                }
            }
        }
    }
    match &refusal {
        Some(head) if status(head) == 503 && head.to_ascii_lowercase().contains("retry-after:") => {
        }
        Some(head) => w.fail(format!(
            "an upgrade to a full table got {:?}, expected 503 + Retry-After",
            head.lines().next().unwrap_or("nothing")
        )),
        None => w.fail(format!(
            "{} upgrades were all accepted with 64 slots per worker",
            held.len()
        )),
    }
    if held.len() < 120 {
        w.fail(format!(
            "only {} upgrades accepted before the refusal (2 workers x 64 slots)",
            held.len()
        ));
    }
    if probe(suite.addr, "/healthz").is_none() {
        w.fail("/healthz unanswered with a full table");
    }
    if probe_text(suite.addr, "/metrics").is_none() {
        w.fail("/metrics unanswered with a full table");
    }
    std::thread::sleep(Duration::from_millis(500));
    drop(held);
}

/// Item 11: the hash key holds a string; the feed must survive the reconnect that reads it.
pub fn wrong_type_key(suite: &Suite, w: &mut Window) {
    w.feed_gap = true;
    let mut con = suite.redis();
    let key = format!("{PREFIX}ticks");
    let _: () = redis::cmd("DEL").arg(&key).query(&mut con).unwrap();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("not a hash")
        .query(&mut con)
        .unwrap();
    let _: redis::RedisResult<i64> = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut con);
    std::thread::sleep(Duration::from_millis(2500));
}

/// After everything: a new client subscribing to the bystander's symbol gets a live tick (published after
/// it subscribed, not just the stored latest one) within 2 s.
pub fn fresh_client_gets_a_tick(suite: &Suite) -> bool {
    let since = now_us();
    let mut s = suite.ws_from(fresh_source(), "newcomer", None);
    s.write_all(&frame(true, 0x1, BYSTANDER.as_bytes()))
        .unwrap();
    let mut r = FrameReader::new(s);
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        match r.next(until.saturating_duration_since(Instant::now())) {
            Frame::Data(0x1, p) => {
                let v: serde_json::Value = serde_json::from_slice(&p).unwrap_or_default();
                if v.get("ts").and_then(|t| t.as_u64()) > Some(since) {
                    return true;
                }
            }
            Frame::Data(..) => {}
            Frame::Idle | Frame::Eof => return false,
        }
    }
}
