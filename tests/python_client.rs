//! An independent client implementation against the server: Python `websockets` (installed by
//! tests/run.sh; RINGCAST_PYTHON names its interpreter) playing the seed's browser client — plain
//! subscribe, snapshot then a live tick published after it — over ws:// and wss:// with a development
//! certificate.

mod common;
#[allow(dead_code)]
#[path = "tls_adapter/support.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

fn python() -> String {
    std::env::var("RINGCAST_PYTHON").unwrap_or_else(|_| {
        let cached = format!(
            "{}/.cache/ringcast/py3/bin/python",
            std::env::var("HOME").unwrap_or_default()
        );
        if std::path::Path::new(&cached).exists() {
            cached
        } else {
            "python3".into()
        }
    })
}

/// Run the seed client; returns the lines it printed. `on_line` sees each line as it arrives (to publish
/// a live tick once the snapshot is in).
fn seed_client(
    url: &str,
    count: usize,
    ca: Option<&str>,
    mut on_line: impl FnMut(&str),
) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/seed_client.py");
    let mut cmd = Command::new(python());
    cmd.args([script, url, "HASCOL", &count.to_string()]);
    if let Some(ca) = ca {
        cmd.args(["--ca", ca]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .expect("python with `websockets` (bash tests/run.sh installs it)");
    let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .inspect(|l| on_line(l))
        .collect();
    assert!(
        child.wait().unwrap().success(),
        "seed client failed: {lines:?}"
    );
    lines
}

/// A live tick, published on the feed's channel.
fn live_tick(con: &mut redis::Connection, price: &str) -> String {
    let tick = format!(r#"{{"symbol":"HASCOL","price":"{price}"}}"#);
    let _: () = redis::cmd("PUBLISH")
        .arg("p:ticks")
        .arg(&tick)
        .query(con)
        .unwrap();
    tick
}

#[test]
fn the_seed_browser_client_over_ws_and_wss() {
    let redis = start_redis();
    let mut con = redis_con(&redis.url());
    let tick = r#"{"symbol":"HASCOL","open":"10.00","close":"10.50","low":"9.90","high":"10.60","price":"10.40"}"#;
    let _: () = redis::cmd("HSET")
        .arg("p:ticks")
        .arg("HASCOL")
        .arg(tick)
        .query(&mut con)
        .unwrap();
    let server = Server::start(&["--workers", "2", "--redis", &redis.url(), "--prefix", "p:"]);
    server.wait_feed_up();
    // The live tick is published only once the snapshot has arrived, so it can only come after it.
    let mut live = None;
    let lines = seed_client(&server.url(), 3, None, |line| {
        if line == tick {
            live = Some(live_tick(&mut con, "10.45"));
        }
    });
    assert_eq!(lines[0], "open");
    assert!(lines[1].contains(r#""type":"subscribed""#), "{lines:?}");
    assert_eq!(
        lines[2], tick,
        "the latest value first, exactly as published"
    );
    assert_eq!(
        Some(&lines[3]),
        live.as_ref(),
        "then the live tick: {lines:?}"
    );
    assert_eq!(lines[4], "closed 1000");

    let cert = support::DevCert::ecdsa();
    let (c, k) = (
        cert.cert().to_string_lossy().into_owned(),
        cert.key().to_string_lossy().into_owned(),
    );
    let tls = Server::start_tls(&[
        "--workers",
        "1",
        "--redis",
        &redis.url(),
        "--prefix",
        "p:",
        "--tls-cert",
        &c,
        "--tls-key",
        &k,
    ]);
    let mut live = None;
    let lines = seed_client(
        &format!("wss://localhost:{}/", tls.addr.port()),
        3,
        Some(&c),
        |line| {
            if line == tick {
                live = Some(live_tick(&mut con, "10.55"));
            }
        },
    );
    assert_eq!(lines[2], tick, "{lines:?}");
    assert_eq!(Some(&lines[3]), live.as_ref(), "{lines:?}");
    assert_eq!(lines[4], "closed 1000", "{lines:?}");
}
