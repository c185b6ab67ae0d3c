//! A server fed by a real redis-server, and the clients of its ticks: the set-up most tests of the feed
//! share (start both, wait for the first snapshot, subscribe, read the ack).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringcast::cli::redis_server::RedisServer;

use super::{
    Captured, Server, read_head, read_reply, ringcast_command, send_text, start_redis,
    upgrade_request,
};

/// A fresh redis-server and `ringcast serve --workers <workers> --redis <it> --prefix <prefix> <args>`,
/// returned once the server's feed is up (its first snapshot taken), so ticks published next reach it.
pub fn fed_server(workers: &str, prefix: &str, args: &[&str]) -> (RedisServer, Server) {
    let redis = start_redis();
    let url = redis.url();
    let mut all = vec!["--workers", workers, "--redis", &url, "--prefix", prefix];
    all.extend_from_slice(args);
    let server = Server::start(&all);
    server.wait_feed_up();
    (redis, server)
}

/// `fed_server` at the default log level (info), its output captured (`Server::start_logged`).
pub fn fed_server_logged(
    workers: &str,
    prefix: &str,
    args: &[&str],
) -> (RedisServer, Server, Captured) {
    let redis = start_redis();
    let url = redis.url();
    let mut all = vec!["--workers", workers, "--redis", &url, "--prefix", prefix];
    all.extend_from_slice(args);
    let (server, out) = Server::start_logged(&all);
    server.wait_feed_up();
    (redis, server, out)
}

/// Send a subscribe message (a symbol list, or its JSON form) and read the ack, which must say
/// `subscribed`; returns it.
pub fn subscribe<S: Read + Write>(ws: &mut S, message: &str) -> serde_json::Value {
    send_text(ws, message);
    let ack = read_reply(ws);
    assert_eq!(ack["type"], "subscribed", "{ack}");
    ack
}

/// A WebSocket client with a tiny (4 KB) receive buffer, so it falls behind as soon as it stops reading.
pub fn small_window_ws(server: &Server) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.addr.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(upgrade_request("/").as_bytes()).unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101"));
    s
}

/// A `small_window_ws` client subscribed to `symbols` (the ack read): it falls behind as soon as the ticks
/// of those symbols come faster than it reads.
pub fn small_window_client(server: &Server, symbols: &str) -> TcpStream {
    let mut s = small_window_ws(server);
    subscribe(&mut s, symbols);
    s
}

/// `ringcast retire <symbol> --redis <url> --prefix <prefix>`, which must succeed.
pub fn retire(redis_url: &str, prefix: &str, symbol: &str) {
    let out = ringcast_command(
        &["retire", symbol, "--redis", redis_url, "--prefix", prefix],
        &[],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Server {
    /// Whether metric `name` (summed over its label sets) reaches `at_least` within `within`.
    pub fn metric_reaches(&self, name: &str, at_least: f64, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.metric(name) >= at_least {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}
