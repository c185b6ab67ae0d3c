//! The feed-side subcommands (`publish`, `get`, `retire`, `feed --demo`) of the built binary against a
//! real `redis-server`: Redis state, what subscribers receive, outputs and exit codes.
//!
//! Needs `redis-server` (`RINGCAST_REDIS_SERVER` or PATH; `apt-get install -y redis-server`). Every
//! command and wait is bounded; every process is stopped by PID.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;

use common::{redis_con as con, start_redis as redis};

const BIN: &str = env!("CARGO_BIN_EXE_ringcast");

/// Run `ringcast <args> --redis <url>` (with `stdin`), killed if it takes longer than `limit`.
fn ringcast(url: &str, args: &[&str], stdin: Option<&str>, limit: Duration) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .args(["--redis", url])
        .env_remove("RINGCAST_REDIS")
        .env_remove("RINGCAST_PREFIX")
        .env("RINGCAST_LOG", "warn")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run the ringcast binary");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on the PID of the child we started.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("ringcast {args:?} did not finish within {limit:?}");
        }
    }
}

const QUICK: Duration = Duration::from_secs(20);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A pub/sub listener on `channel`, collecting payloads on a thread.
fn listen(url: &str, channel: &str) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (url, channel) = (url.to_string(), channel.to_string());
    std::thread::spawn(move || {
        let mut con = con(&url);
        con.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut pubsub = con.as_pubsub();
        pubsub.subscribe(&channel).unwrap();
        let _ = ready_tx.send(());
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            match pubsub.get_message() {
                Ok(msg) => {
                    if tx.send(msg.get_payload_bytes().to_vec()).is_err() {
                        return;
                    }
                }
                Err(e) if e.is_timeout() => continue,
                Err(_) => return,
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("subscribed");
    rx
}

fn hget(c: &mut redis::Connection, field: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg("psx:ticks")
        .arg(field)
        .query(c)
        .unwrap()
}

#[test]
fn publish_get_retire_round_trip() {
    let server = redis();
    let url = server.url();
    let mut c = con(&url);
    let ticks = listen(&url, "psx:ticks");
    let control = listen(&url, "psx:control");

    let efert = r#"{"symbol": "EFERT", "open": "50.10", "close": "60.10", "low": "48.50", "high": "48.00", "price": "55.00"}"#;
    let luck = r#"{"symbol":"LUCK","open":"400.00","close":"400.00","low":"390.00","high":"410.00","price":"405.00"}"#;
    let out = ringcast(&url, &["publish", efert, luck], None, QUICK);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("published 2 ticks (EFERT, LUCK)"),
        "{stdout}"
    );
    assert!(stdout.contains("1 server received them"), "{stdout}");
    // Stored exactly; published as one array of the exact texts.
    assert_eq!(hget(&mut c, "EFERT").as_deref(), Some(efert));
    assert_eq!(hget(&mut c, "LUCK").as_deref(), Some(luck));
    let msg = ticks.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(text(&msg), format!("[{efert},{luck}]"));

    // A single tick is published as itself (trimmed); stdin works.
    let hbl = r#"{"symbol":"HBL","price":"99.00","note":"via stdin"}"#;
    let out = ringcast(&url, &["publish"], Some(&format!("\n  {hbl}\n")), QUICK);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1 server received it"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        text(&ticks.recv_timeout(Duration::from_secs(10)).unwrap()),
        hbl
    );

    // get: the seed's ticker.get("EFERT,LUCK").
    let out = ringcast(&url, &["get", "EFERT,LUCK"], None, QUICK);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{efert}\n{luck}\n"));
    let out = ringcast(&url, &["get", "LUCK", "NOPE,HBL"], None, QUICK);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), format!("{luck}\nnull\n{hbl}\n"));
    assert!(text(&out.stderr).contains("NOPE"), "{}", text(&out.stderr));
    let out = ringcast(&url, &["get", "--all"], None, QUICK);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), format!("{efert}\n{hbl}\n{luck}\n"));

    // retire: HDEL + {"op":"retire"} on the control channel.
    let out = ringcast(&url, &["retire", "EFERT"], None, QUICK);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("retired EFERT"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(hget(&mut c, "EFERT"), None);
    assert_eq!(
        text(&control.recv_timeout(Duration::from_secs(10)).unwrap()),
        r#"{"op":"retire","symbol":"EFERT"}"#
    );
    let out = ringcast(&url, &["retire", "NOT A SYMBOL"], None, QUICK);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not a symbol"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_ticks_are_refused_and_nothing_is_stored() {
    let server = redis();
    let url = server.url();
    let mut c = con(&url);
    let cases: [(&[&str], &str); 4] = [
        (
            &["publish", r#"[{"symbol":"OK"},{"price":"1"}]"#],
            "tick #2: no `symbol` field",
        ),
        (&["publish", "{not json"], "not valid JSON"),
        (&["publish", r#"{"symbol":"A,B"}"#], "not a valid symbol"),
        (&["publish", "[1]"], "not a JSON object"),
    ];
    for (args, expected) in cases {
        let out = ringcast(&url, args, None, QUICK);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = text(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(err.contains("nothing was published"), "{err}");
    }
    let out = ringcast(
        &url,
        &["publish", "--file", "/nonexistent/ticks.json"],
        None,
        QUICK,
    );
    assert_eq!(out.status.code(), Some(2));
    let stored: i64 = redis::cmd("HLEN").arg("psx:ticks").query(&mut c).unwrap();
    assert_eq!(stored, 0);

    // A custom prefix, from the file given with --file (JSON Lines).
    let file = std::env::temp_dir().join(format!("ringcast-cli-test-{}.jsonl", std::process::id()));
    std::fs::write(&file, "{\"symbol\":\"PSO\"}\n{\"symbol\":\"PPL\"}\n").unwrap();
    let out = ringcast(
        &url,
        &[
            "publish",
            "--prefix",
            "kse:",
            "--file",
            file.to_str().unwrap(),
        ],
        None,
        QUICK,
    );
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stored: Vec<String> = redis::cmd("HKEYS").arg("kse:ticks").query(&mut c).unwrap();
    assert_eq!(stored.len(), 2, "{stored:?}");
}

#[test]
fn demo_feed_publishes_sequenced_timestamped_ticks() {
    let server = redis();
    let url = server.url();
    let mut c = con(&url);
    let ticks = listen(&url, "psx:ticks");
    let started_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let t0 = Instant::now();
    let out = ringcast(
        &url,
        &[
            "feed",
            "--demo",
            "--duration",
            "2s",
            "--rate",
            "50",
            "--symbols",
            "5",
            "--seed",
            "7",
        ],
        None,
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());

    let stored: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg("psx:ticks")
        .query(&mut c)
        .unwrap();
    let mut symbols: Vec<&str> = stored.iter().map(|(s, _)| s.as_str()).collect();
    symbols.sort();
    assert_eq!(symbols, ["EFERT", "HASCOL", "LUCK", "OGDC", "PPL"]);

    let mut count = 0;
    let mut last_seq = std::collections::HashMap::new();
    while let Ok(msg) = ticks.recv_timeout(Duration::from_millis(500)) {
        let (good, bad) = ringcast::ingest::parse_message(&msg, 16 * 1024);
        assert!(bad.is_empty(), "{}", text(&msg));
        for t in good {
            let v: serde_json::Value = serde_json::from_slice(t.raw).unwrap();
            let ts = v["ts"].as_u64().expect("ts");
            assert!(ts >= started_ms && ts < started_ms + 60_000, "{v}");
            let seq = v["seq"].as_u64().expect("seq");
            let before = last_seq.insert(t.symbol.to_string(), seq).unwrap_or(0);
            assert_eq!(seq, before + 1, "{v}");
            for k in ["open", "close", "low", "high", "price"] {
                let p = v[k].as_str().expect(k);
                assert!(p.split_once('.').is_some_and(|(_, d)| d.len() == 2), "{v}");
            }
            count += 1;
        }
    }
    // 5 opening ticks + about 50/s for 2 s.
    assert!((60..=140).contains(&count), "{count} ticks");
    // The stored tick of each symbol is its last published one.
    for (symbol, json) in &stored {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["seq"].as_u64(), last_seq.get(symbol).copied(), "{symbol}");
    }

    let out = ringcast(&url, &["feed"], None, QUICK);
    assert_eq!(out.status.code(), Some(2), "feed without --demo is refused");
}
