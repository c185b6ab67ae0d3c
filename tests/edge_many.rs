//! One `ringcast serve` holds more connections than its process may have file descriptors: it runs with
//! RLIMIT_NOFILE lowered to 12,000 and holds 21,000. Accepted sockets go straight into io_uring
//! direct-descriptor tables (one per worker, each capped at the limit) and take no fd. The clients are
//! split across processes, each from its own source address.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;

const PER_CLIENT: usize = 10_500;
/// The server's RLIMIT_NOFILE: under the 21,000 connections, over what one worker's table needs
/// (SO_REUSEPORT splits them about evenly).
const NOFILE: u64 = 12_000;

#[test]
fn one_server_holds_more_connections_than_the_descriptor_limit() {
    let server = Server::start_with_nofile(NOFILE, &["--workers", "2", "--echo"]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        nofile.split_whitespace().nth(3),
        Some(NOFILE.to_string().as_str()),
        "the server runs with the lowered limit: {nofile}"
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/hold_conns.py");
    let mut clients: Vec<_> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|src| {
            Command::new("python3")
                .args([
                    script,
                    "127.0.0.1",
                    &server.addr.port().to_string(),
                    &PER_CLIENT.to_string(),
                ])
                .args(["--src", src, "--timeout", "90", "--hold", "60"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("python3")
        })
        .collect();
    let mut ready = 0;
    for c in &mut clients {
        let mut line = String::new();
        BufReader::new(c.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let n: usize = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(line.contains("failed 0"), "client: {line}");
        ready += n;
    }
    assert_eq!(ready, 2 * PER_CLIENT);
    let open = server.metric_per_worker("ringcast_connections_open");
    let total: f64 = open.iter().sum();
    assert!(total >= (2 * PER_CLIENT) as f64, "open {total} ({open:?})");
    assert!(
        total > NOFILE as f64 && open.iter().all(|&n| n > 0.0),
        "{open:?}"
    );
    // The connections take no descriptors: the process's fd table stays nearly empty.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .count();
    assert!(fds < 100, "{fds} open fds for {total} connections");
    // Let the clients go; the server frees every slot.
    for c in &mut clients {
        drop(c.stdin.take());
    }
    for mut c in clients {
        let _ = c.wait();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.metric("ringcast_connections_open") > 1.0 {
        assert!(Instant::now() < deadline, "connections not released");
        std::thread::sleep(Duration::from_millis(100));
    }
}
