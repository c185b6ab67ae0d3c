//! `rediss://` (TLS to Redis) against real TLS-only redis-servers (certificates made by the `openssl` CLI
//! in the test): `serve --redis rediss://…` delivers ticks, the CLI publishes, gets, retires and runs the
//! demo feed over TLS, a Redis Cluster serving TLS only feeds `serve --redis-cluster rediss://…`; an
//! untrusted certificate, a certificate for another name and a wrong password fail with a clear message
//! that never holds the URL's password.
//!
//! Needs `redis-server` built with TLS (Debian's is), `redis-cli` and `openssl`. Every wait is bounded;
//! every process is stopped by PID on drop.

mod common;

use std::time::Duration;

use common::cluster::RedisCluster;
use common::redis_tls::TestCerts;
use common::*;

const PREFIX: &str = "tr:";
const PW: &str = "tls-s3cret-pw";

/// `ringcast <args…> --prefix tr:`: (exit code, stdout + stderr).
fn cli(args: &[&str]) -> (Option<i32>, String) {
    let mut all = args.to_vec();
    all.extend(["--prefix", PREFIX]);
    let out = ringcast_command(&all, &[]).output().unwrap();
    (out.status.code(), output_text(&out))
}

fn serve_logged(args: &[&str]) -> (Server, Captured) {
    let mut all = args.to_vec();
    all.extend(["--prefix", PREFIX]);
    Server::start_logged(&all)
}

#[test]
fn serve_and_the_cli_over_rediss() {
    let certs = TestCerts::new();
    let redis = certs.redis_with_password("server", PW, &[]);
    let url = redis
        .url()
        .replace("rediss://", &format!("rediss://:{PW}@"));
    let ca = certs.arg("ca.crt");
    let tls = ["--redis", url.as_str(), "--redis-ca", ca.as_str()];

    let publish = |tick: &str| {
        let mut args = vec!["publish", tick];
        args.extend(tls);
        let (code, text) = cli(&args);
        assert_eq!(code, Some(0), "{text}");
    };
    publish(r#"{"symbol":"EFERT","p":1}"#);

    let mut args = tls.to_vec();
    args.extend(["--workers", "2"]);
    let (server, log) = serve_logged(&args);
    server.wait_feed_up();
    let mut ws = server.ws();
    subscribe(&mut ws, "EFERT,LUCK");
    assert_eq!(read_json(&mut ws)["p"], 1, "the snapshot over TLS");
    publish(r#"[{"symbol":"EFERT","p":2},{"symbol":"LUCK","p":7}]"#);
    assert_eq!(read_json(&mut ws)["p"], 2, "a live tick over TLS");
    assert_eq!(read_json(&mut ws)["p"], 7);

    let mut args = vec!["get", "EFERT,LUCK"];
    args.extend(tls);
    let (code, text) = cli(&args);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(
        text,
        "{\"symbol\":\"EFERT\",\"p\":2}\n{\"symbol\":\"LUCK\",\"p\":7}\n"
    );
    let mut args = vec!["retire", "LUCK"];
    args.extend(tls);
    let (code, text) = cli(&args);
    assert_eq!(code, Some(0), "{text}");
    let retired = read_json(&mut ws);
    assert_eq!(
        (retired["type"].as_str(), retired["symbol"].as_str()),
        (Some("retired"), Some("LUCK"))
    );
    let mut args = vec!["feed", "--demo", "--symbols", "20", "--rate", "100"];
    args.extend(["--duration", "1s"]);
    args.extend(tls);
    let (code, text) = cli(&args);
    assert_eq!(code, Some(0), "{text}");
    let mut args = vec!["get", "--all"];
    args.extend(tls);
    let (code, text) = cli(&args);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.lines().count() >= 20, "{text}");

    let log = log.text();
    assert!(log.contains("subscribed to the tick feed"), "{log}");
    assert!(!log.contains(PW), "{log}");
}

#[test]
fn rediss_failures_are_clear_and_keep_the_password_secret() {
    let certs = TestCerts::new();
    let redis = certs.redis_with_password("server", PW, &["--bind", "127.0.0.1", "127.0.0.2"]);
    let port = redis.port();
    let url = format!("rediss://:{PW}@127.0.0.1:{port}");
    let shown = format!("rediss://:***@127.0.0.1:{port}");
    let (ca, other) = (certs.arg("ca.crt"), certs.arg("other-ca.crt"));

    // The right CA and password: works.
    let (code, text) = cli(&["get", "X", "--redis", &url, "--redis-ca", &ca]);
    assert_eq!(code, Some(1), "no tick for X, but connected: {text}");
    assert!(text.contains("no tick for X"), "{text}");

    // A wrong password: refused; neither password printed.
    let wrong = url.replace(PW, "wrong-pw-xyz");
    let (code, text) = cli(&["get", "X", "--redis", &wrong, "--redis-ca", &ca]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        !text.contains("wrong-pw-xyz") && !text.contains(PW),
        "{text}"
    );
    assert!(text.contains("rediss://:***@127.0.0.1"), "{text}");

    // A CA that did not sign the server's certificate, or none (the system roots): not trusted, said so.
    for args in [vec!["--redis-ca", other.as_str()], vec![]] {
        let mut all = vec!["get", "X", "--redis", &url];
        all.extend(args);
        let (code, text) = cli(&all);
        assert_eq!(code, Some(1), "{text}");
        assert!(
            text.contains("not trusted") && text.contains("--redis-ca"),
            "{text}"
        );
        assert!(text.contains(&shown) && !text.contains(PW), "{text}");
    }

    // The same server at an address its certificate does not name: refused too.
    let elsewhere = url.replace("127.0.0.1", "127.0.0.2");
    let (code, text) = cli(&["get", "X", "--redis", &elsewhere, "--redis-ca", &ca]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("not trusted") && !text.contains(PW), "{text}");

    // A --redis-ca that is not a certificate: a usage error.
    let junk = certs.dir.file("junk.pem", "not a certificate\n");
    let (code, text) = cli(&["get", "X", "--redis", &url, "--redis-ca", &junk]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("--redis-ca") && !text.contains(PW), "{text}");

    // serve with the wrong CA: one warning naming the URL (redacted) and why.
    let (_server, log) = serve_logged(&["--redis", &url, "--redis-ca", &other]);
    poll_until(Duration::from_secs(10), "the feed-down warning", || {
        log.text().contains("Redis feed down")
    });
    let text = log.text();
    let line = text
        .lines()
        .find(|l| l.contains("Redis feed down"))
        .unwrap();
    assert!(
        line.contains(&shown) && line.contains("not trusted"),
        "{line}"
    );
    assert!(!text.contains(PW), "{text}");
}

/// A Redis Cluster serving TLS only (clients, bus, replication): `serve --redis-cluster rediss://…`
/// subscribes every master over TLS and delivers; the CLI publishes through it; a wrong CA is reported.
#[test]
fn cluster_over_rediss() {
    let certs = TestCerts::new();
    let cluster = RedisCluster::start_with(3, 0, 1000, Some(PW), Some(&certs));
    let seeds = cluster.seeds();
    assert!(seeds.starts_with("rediss://"), "{seeds}");
    let ca = certs.arg("ca.crt");
    let tls = ["--redis-cluster", seeds.as_str(), "--redis-ca", ca.as_str()];
    let symbols: Vec<String> = (0..32).map(|i| format!("S{i:02}")).collect();
    let message = |p: i64| {
        let ticks: Vec<String> = symbols
            .iter()
            .map(|s| format!(r#"{{"symbol":"{s}","p":{p}}}"#))
            .collect();
        format!("[{}]", ticks.join(","))
    };
    let publish = |p: i64| {
        let m = message(p);
        let mut args = vec!["publish", m.as_str()];
        args.extend(tls);
        let (code, text) = cli(&args);
        assert_eq!(code, Some(0), "{text}");
    };
    publish(1);
    let (server, log) = serve_logged(&tls);
    server.wait_feed_up();
    let mut ws = server.ws();
    subscribe(&mut ws, &symbols.join(","));
    let mut seen = std::collections::HashMap::new();
    while seen.len() < symbols.len() {
        let v = read_json(&mut ws);
        seen.insert(v["symbol"].as_str().unwrap().to_string(), v["p"].as_i64());
    }
    assert!(seen.values().all(|p| *p == Some(1)), "{seen:?}");
    publish(2);
    seen.clear();
    while seen.len() < symbols.len() {
        let v = read_json(&mut ws);
        if v["p"] == 2 {
            seen.insert(v["symbol"].as_str().unwrap().to_string(), Some(2));
        }
    }
    let text = log.text();
    assert!(
        text.contains("subscribed to the sharded tick feed"),
        "{text}"
    );
    assert!(!text.contains(PW), "{text}");

    let other = certs.arg("other-ca.crt");
    let (_bad, log) = serve_logged(&["--redis-cluster", &seeds, "--redis-ca", &other]);
    poll_until(Duration::from_secs(10), "the feed-down warning", || {
        log.text().contains("Redis Cluster feed down")
    });
    let text = log.text();
    assert!(text.contains("not trusted"), "{text}");
    assert!(!text.contains(PW), "{text}");
}
