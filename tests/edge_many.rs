//! One `ringcast serve` holds more connections than a process may have file descriptors (20,000 here):
//! accepted sockets go straight into io_uring direct-descriptor tables, one per worker. The clients are
//! split across processes (each bound by the same limit), each from its own source address.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;

const PER_CLIENT: usize = 10_500;

#[test]
fn one_server_holds_more_connections_than_the_descriptor_limit() {
    let server = Server::start(&["--workers", "2", "--echo"]);
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
        total > 20_000.0 && open.iter().all(|&n| n > 0.0),
        "{open:?}"
    );
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
