//! The command line as README.md, docs/config.md and docs/protocol.md state it: every `serve` flag's
//! environment variable (a bad value is refused at start-up naming the flag, the variable and the value;
//! good values take effect; a flag wins over its variable), `ringcast retire` (subscribers are told and
//! get no more ticks of the symbol until they subscribe again), `ringcast demo` (ticks reach a WebSocket
//! client; SIGTERM stops every process it started) and `ringcast feed --demo` across a Redis restart.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use ringcast::cli::redis_server::RedisServer;

/// The environment variables of `ringcast serve`, from its `--help` (clap prints `[env: NAME=…]`).
fn serve_env_vars() -> Vec<String> {
    let out = std::process::Command::new(bin())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    help.split("[env: ")
        .skip(1)
        .map(|rest| rest.split(['=', ']']).next().unwrap().to_string())
        .collect()
}

/// `--max-symbols-per-conn` for `RINGCAST_MAX_SYMBOLS_PER_CONN`.
fn flag_of(var: &str) -> String {
    format!(
        "--{}",
        var.trim_start_matches("RINGCAST_")
            .to_ascii_lowercase()
            .replace('_', "-")
    )
}

/// Flags that take any text: no value of theirs is bad at start-up (their effect is tested below or in
/// the tests of their feature).
const FREE_TEXT: &[&str] = &[
    "RINGCAST_PREFIX",
    "RINGCAST_AUTH_AUDIENCE",
    "RINGCAST_METRICS_TOKEN",
];

/// Run `ringcast serve` with only `env` set (plus a private port and an unused Redis, so a wrongly accepted
/// value cannot reach anything); its exit code and output, or None if it was still running after 5 s.
fn serve_with_env(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = ringcast_command(&["serve"], &[]);
    cmd.env_clear()
        .env("RINGCAST_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env(
            "RINGCAST_REDIS",
            format!("redis://127.0.0.1:{}", free_port()),
        )
        .env("RINGCAST_WORKERS", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let out = Captured::of(&mut child);
    let deadline = Instant::now() + Duration::from_secs(5);
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status.code().unwrap_or(-1));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::thread::sleep(Duration::from_millis(50)); // the pipes' last bytes
    (code, out.text())
}

#[test]
fn every_serve_variable_with_a_bad_value_is_refused_naming_it() {
    let vars = serve_env_vars();
    assert!(
        vars.len() >= 35,
        "parsed {} variables from serve --help",
        vars.len()
    );
    let cert = support_cert();
    let cert_path = cert.0.join("cert.pem").to_string_lossy().into_owned();
    let key_path = cert.0.join("key.pem").to_string_lossy().into_owned();
    let mut checked = 0;
    for var in &vars {
        if FREE_TEXT.contains(&var.as_str()) {
            continue;
        }
        let bad = match var.as_str() {
            "RINGCAST_LOG" => "[[[",
            "RINGCAST_AUTH_SECRET" => "too-short",
            "RINGCAST_TLS_CERT" | "RINGCAST_TLS_KEY" => "/nonexistent/ringcast-test.pem",
            _ => "bogus",
        };
        let mut env = vec![(var.as_str(), bad)];
        match var.as_str() {
            "RINGCAST_TLS_CERT" => env.push(("RINGCAST_TLS_KEY", &key_path)),
            "RINGCAST_TLS_KEY" => env.push(("RINGCAST_TLS_CERT", &cert_path)),
            // TLS settings that need a certificate to be read at all.
            "RINGCAST_TLS_TICKET_KEYS" | "RINGCAST_TLS_GROUPS" => {
                env.push(("RINGCAST_TLS_CERT", &cert_path));
                env.push(("RINGCAST_TLS_KEY", &key_path));
            }
            _ => {}
        }
        let (code, out) = serve_with_env(&env);
        assert!(
            matches!(code, Some(c) if c != 0),
            "{var}={bad}: not refused at start-up (exit {code:?}): {out}"
        );
        let flag = flag_of(var);
        assert!(
            out.contains(var.as_str()),
            "{var}={bad}: the message does not name the variable: {out}"
        );
        assert!(
            out.contains(&flag),
            "{var}={bad}: the message does not name {flag}: {out}"
        );
        if var != "RINGCAST_AUTH_SECRET" {
            // (A secret is never echoed back.)
            assert!(
                out.contains(bad),
                "{var}={bad}: the message does not show the value: {out}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked + FREE_TEXT.len(), vars.len());
}

/// A dev certificate made by certs/make-dev-cert.sh in a directory removed on drop.
struct TempCert(std::path::PathBuf);

impl Drop for TempCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn support_cert() -> TempCert {
    let dir = std::env::temp_dir().join(format!("ringcast-env-cert-{}", std::process::id()));
    let out = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/certs/make-dev-cert.sh"
        ))
        .arg("--force")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "make-dev-cert.sh: {out:?}");
    TempCert(dir)
}

#[test]
fn serve_variables_take_effect_and_a_flag_wins_over_its_variable() {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let env = [
        ("RINGCAST_LISTEN", addr.to_string()),
        ("RINGCAST_WORKERS", "1".into()),
        ("RINGCAST_ECHO", "false".into()),
        ("RINGCAST_MAX_SYMBOLS_PER_CONN", "2".into()),
        ("RINGCAST_METRICS_TOKEN", "env-token".into()),
        ("RINGCAST_LOG", "warn".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // No --listen: the server is found where RINGCAST_LISTEN put it.
    let mut cmd = ringcast_command(&["serve"], &env);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let server = Server::adopt(cmd.spawn().unwrap(), addr);
    assert_eq!(
        server.get("/metrics").0,
        403,
        "RINGCAST_METRICS_TOKEN guards /metrics"
    );
    assert_eq!(server.get("/metrics?token=env-token").0, 200);
    let mut ws = server.ws();
    send_text(&mut ws, "E1,E2,E3");
    assert_eq!(
        read_reply(&mut ws)["error"],
        "too_many_symbols",
        "RINGCAST_MAX_SYMBOLS_PER_CONN=2"
    );
    subscribe(&mut ws, "E1,E2");

    // The same variable with the flag: the flag wins.
    let flagged = Server::start_with_env(&["--workers", "1", "--max-symbols-per-conn", "3"], &env);
    let mut ws = flagged.ws();
    send_text(&mut ws, "E1,E2,E3");
    assert_eq!(
        read_reply(&mut ws)["type"],
        "subscribed",
        "--max-symbols-per-conn 3 wins over the variable"
    );
}

#[test]
fn retire_tells_subscribers_and_stops_the_symbol_until_they_subscribe_again() {
    let (redis, server) = fed_server("2", "r:", &[]);
    let mut con = redis_con(&redis.url());
    let mut both = server.ws();
    subscribe(&mut both, "HASCOL,LUCK");
    let mut luck_only = server.ws();
    subscribe(&mut luck_only, "LUCK");
    let hascol1 = r#"{"symbol":"HASCOL","seq":1}"#;
    publish_tick(&mut con, "r:", hascol1);
    assert_eq!(read_text(&mut both), hascol1);

    retire(&redis.url(), "r:", "HASCOL");
    let retired = read_reply(&mut both);
    assert_eq!(
        (retired["type"].as_str(), retired["symbol"].as_str()),
        (Some("retired"), Some("HASCOL"))
    );

    // Published again: not delivered to the old subscriber (the LUCK tick after it is its next message).
    let hascol2 = r#"{"symbol":"HASCOL","seq":2}"#;
    let luck = r#"{"symbol":"LUCK","seq":1}"#;
    publish_tick(&mut con, "r:", hascol2);
    publish_tick(&mut con, "r:", luck);
    assert_eq!(
        read_text(&mut both),
        luck,
        "no HASCOL tick after the retirement"
    );
    assert_eq!(
        read_text(&mut luck_only),
        luck,
        "only HASCOL's subscribers are told"
    );

    // Subscribing again brings it back: the ack, its latest tick, then live ticks.
    subscribe(&mut both, "HASCOL");
    assert_eq!(
        read_text(&mut both),
        hascol2,
        "the snapshot of the re-published symbol"
    );
    let hascol3 = r#"{"symbol":"HASCOL","seq":3}"#;
    publish_tick(&mut con, "r:", hascol3);
    assert_eq!(read_text(&mut both), hascol3);
}

/// The next tick of `symbol` on a raw connection (skipping acks, snapshots of others and statuses).
fn next_tick_of(ws: &mut std::net::TcpStream, symbol: &str, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        assert!(
            Instant::now() < deadline,
            "no {symbol} tick within {within:?}"
        );
        let v = read_reply(ws);
        if v["symbol"] == symbol {
            return v;
        }
    }
}

#[test]
fn demo_runs_serves_ticks_and_stops_everything_on_sigterm() {
    let redis_port = RedisServer::free_port().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (listen, redis_url) = (addr.to_string(), format!("redis://127.0.0.1:{redis_port}"));
    let mut child = ringcast_command(
        &[
            "demo",
            "--listen",
            &listen,
            "--redis",
            &redis_url,
            "--rate",
            "50",
            "--symbols",
            "5",
        ],
        &[("RINGCAST_LOG", "warn")],
    )
    .spawn()
    .unwrap();
    let out = Captured::of(&mut child);
    let mut demo = Server::adopt(child, addr);
    let _reap = ReapDescendants(demo.pid());
    let mut ws = demo.ws();
    send_text(&mut ws, "EFERT");
    let tick = next_tick_of(&mut ws, "EFERT", Duration::from_secs(15));
    assert!(tick["price"].is_string() && tick["seq"].is_u64(), "{tick}");
    let live = next_tick_of(&mut ws, "EFERT", Duration::from_secs(15));
    assert!(
        live["seq"].as_u64() > tick["seq"].as_u64(),
        "live ticks follow: {tick} then {live}"
    );
    drop(ws);

    // Its own redis-server, the server and the feed.
    let started = process_tree(demo.pid());
    assert!(
        started.len() >= 4,
        "demo, redis-server, server, feed: {started:?}"
    );
    assert!(
        redis::Client::open(redis_url.as_str())
            .unwrap()
            .get_connection()
            .is_ok()
    );
    demo.signal("TERM");
    assert_eq!(
        demo.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        out.text()
    );
    for pid in started {
        assert!(!alive(pid), "process {pid} outlived the demo");
    }
    assert!(
        out.text().contains("ringcast demo is running"),
        "{}",
        out.text()
    );
    assert!(
        out.text().contains(&format!("page    http://{addr}/")),
        "the demo prints the page's URL: {}",
        out.text()
    );
}

/// A pub/sub subscriber on `channel` that waits up to `within` for one message.
fn one_message(url: &str, channel: &str, within: Duration) -> Option<Vec<u8>> {
    let client = redis::Client::open(url).unwrap();
    let mut con = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .ok()?;
    con.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut pubsub = con.as_pubsub();
    pubsub.subscribe(channel).ok()?;
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match pubsub.get_message() {
            Ok(msg) => return Some(msg.get_payload_bytes().to_vec()),
            Err(e) if e.is_timeout() => {}
            Err(_) => return None,
        }
    }
    None
}

#[test]
fn demo_feed_keeps_publishing_across_a_redis_restart() {
    let port = RedisServer::free_port().unwrap();
    let first = RedisServer::start(port).unwrap();
    let url = first.url();
    let mut child = ringcast_command(
        &[
            "feed",
            "--demo",
            "--rate",
            "50",
            "--symbols",
            "3",
            "--duration",
            "60s",
            "--redis",
            &url,
        ],
        &[("RINGCAST_LOG", "warn")],
    )
    .spawn()
    .unwrap();
    let out = Captured::of(&mut child);
    let mut feed = Server::process(child);
    assert!(
        one_message(&url, "psx:ticks", Duration::from_secs(10)).is_some(),
        "ticks before the restart"
    );

    first.kill();
    std::thread::sleep(Duration::from_millis(500)); // an outage the feed notices (it publishes every 20 ms)
    assert!(
        !feed.exited(),
        "the feed survives the outage: {}",
        out.text()
    );
    let second = RedisServer::start(port).unwrap();
    let msg = one_message(&second.url(), "psx:ticks", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no ticks after the restart: {}", out.text()));
    let (ticks, bad) = ringcast::ingest::parse_message(&msg, 16 * 1024);
    assert!(!ticks.is_empty() && bad.is_empty());

    feed.signal("TERM");
    assert_eq!(
        feed.wait_exit(Duration::from_secs(5)),
        Some(0),
        "{}",
        out.text()
    );
}

/// `ringcast <args>` to completion (stdin closed): exit code and stdout + stderr.
fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = ringcast_command(args, env).output().unwrap();
    (out.status.code(), output_text(&out))
}

#[test]
fn messages_name_the_flag_the_value_and_what_to_do() {
    // Negative numbers: refused for being negative, not as an unknown flag.
    let (code, out) = run_cli(&["serve", "--max-backlog", "-5"], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("--max-backlog") && out.contains("`-5` is negative"),
        "{out}"
    );
    let (code, out) = run_cli(&["feed", "--demo", "--rate", "-5"], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("--rate") && out.contains("-5"), "{out}");
    assert!(!out.contains("unexpected argument"), "{out}");
    // Durations: ms, s, m and h; another unit is named with the ones that work.
    let (code, out) = run_cli(&["config", "--print", "--", "--drain-window", "1h"], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("drain-window = \"1h\""), "{out}");
    let (code, out) = run_cli(&["serve", "--drain-window", "1d"], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("--drain-window") && out.contains("1d") && out.contains("ms, s, m or h"),
        "{out}"
    );
    // A log filter that is not a level nor module=level.
    let (code, out) = run_cli(&["get", "X"], &[("RINGCAST_LOG", "verbose")]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("RINGCAST_LOG") && out.contains("`verbose` is not a log level"),
        "{out}"
    );
    // --listen: an address that is not one says what is expected.
    let (code, out) = run_cli(&["serve", "--listen", "local:host"], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("give a port (3001)"), "{out}");
}

#[test]
fn listen_takes_a_bare_port() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cmd = ringcast_command(
        &[
            "serve",
            "--listen",
            &port.to_string(),
            "--workers",
            "1",
            "--echo",
        ],
        &[("RINGCAST_LOG", "warn")],
    );
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let server = Server::adopt(cmd.spawn().unwrap(), addr);
    assert_eq!(server.get("/healthz").0, 200);
}

#[test]
fn a_serve_error_is_printed_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, out) = run_cli(
        &["serve", "--listen", &addr, "--workers", "1", "--echo"],
        &[],
    );
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(
        out.matches(&format!("cannot listen on {addr}")).count(),
        1,
        "{out}"
    );
}

#[test]
fn a_redis_url_pointing_at_something_else_says_so() {
    // This very server's port (HTTP, not Redis): the error says the other end is not a Redis server.
    let server = Server::start(&["--workers", "1", "--echo"]);
    let url = format!("redis://{}", server.addr);
    let started = Instant::now();
    let (code, out) = run_cli(&["get", "EFERT", "--redis", &url], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("is this a Redis server's address?")
            || out.contains("is a Redis server listening there?"),
        "{out}"
    );
    assert!(out.contains("--redis"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn plain_subscribes_skip_empty_entries_and_prose_is_a_bad_request() {
    let server = Server::start(&["--workers", "1"]);
    let mut ws = server.ws();
    let ack = subscribe(&mut ws, "EFERT,,LUCK,");
    assert_eq!(
        ack["symbols"],
        serde_json::json!(["EFERT", "LUCK"]),
        "{ack}"
    );
    send_text(&mut ws, "not json {");
    let err = read_reply(&mut ws);
    assert_eq!(err["error"], "bad_request", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("EFERT,LUCK"),
        "{err}"
    );
}
