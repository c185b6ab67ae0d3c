//! The upgrade over real sockets: every bad request gets its precise status and the connection is
//! closed, while the server keeps serving everyone else.

mod common;

use std::io::Write;
use std::time::Duration;

use common::cases::{self, GOOD, request, with};
use common::*;

fn respond(server: &Server, request: &str) -> String {
    let mut s = server.connect();
    s.write_all(request.as_bytes()).unwrap();
    String::from_utf8_lossy(&read_to_close(&mut s)).into_owned()
}

#[test]
fn bad_upgrades_get_precise_statuses() {
    let server = Server::start(&["--workers", "1"]);
    for case in cases::bad_upgrades() {
        let resp = respond(&server, &case.request);
        case.check(&resp);
    }
    // Still serving.
    assert_eq!(server.get("/healthz").0, 200);
}

#[test]
fn connection_header_token_list_in_any_case_is_accepted() {
    let server = Server::start(&["--workers", "1"]);
    let mut s = server.connect();
    s.write_all(
        request(
            "GET",
            "HTTP/1.1",
            &with("Connection", "keep-alive, UPGRADE"),
        )
        .as_bytes(),
    )
    .unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
}

#[test]
fn oversized_heads_get_431() {
    let server = Server::start(&[
        "--workers",
        "1",
        "--max-head-bytes",
        "2048",
        "--max-headers",
        "16",
    ]);
    let big = "x".repeat(4000);
    let resp = respond(
        &server,
        &request(
            "GET",
            "HTTP/1.1",
            &[GOOD, &[("X-Big", big.as_str())]].concat(),
        ),
    );
    assert_eq!(status_of(resp.as_bytes()), 431, "{resp}");
    let many: Vec<(String, String)> = (0..40)
        .map(|i| (format!("X-H{i}"), "v".to_string()))
        .collect();
    let mut req = "GET / HTTP/1.1\r\nHost: x\r\n".to_string();
    for (k, v) in &many {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    assert_eq!(status_of(respond(&server, &req).as_bytes()), 431);
}

#[test]
fn a_head_trickled_byte_by_byte_is_cut_at_the_cap() {
    let server = Server::start(&["--workers", "1", "--max-head-bytes", "1024"]);
    let mut s = server.connect();
    let junk = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Long: {}", "y".repeat(4000));
    // 1,023 bytes of an unfinished head, one write each: the server keeps waiting (no answer yet).
    s.set_nonblocking(true).unwrap();
    for (i, b) in junk.as_bytes()[..1023].iter().enumerate() {
        s.write_all(std::slice::from_ref(b)).unwrap();
        let mut peek = [0u8; 1];
        match s.peek(&mut peek) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!(
                "the server answered after {} bytes, under the 1,024-byte cap: {other:?}",
                i + 1
            ),
        }
    }
    s.set_nonblocking(false).unwrap();
    // The 1,024th byte reaches the cap: 431 while the head is still unfinished, and the connection closes.
    s.write_all(&junk.as_bytes()[1023..1024]).unwrap();
    let resp = read_to_close(&mut s);
    assert_eq!(status_of(&resp), 431, "{}", String::from_utf8_lossy(&resp));
}

#[test]
fn slowloris_is_closed_at_the_handshake_timeout() {
    let server = Server::start(&["--workers", "1", "--handshake-timeout", "300ms"]);
    let mut s = server.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(3)),
        "not closed after the handshake timeout"
    );
    assert!(server.metric("ringcast_handshake_timeouts_total") >= 1.0);
}

#[test]
fn frames_in_the_handshake_packet_are_not_lost() {
    let server = Server::start(&["--workers", "1", "--echo"]);
    let mut s = server.connect();
    let mut bytes = upgrade_request("/").into_bytes();
    bytes.extend(frame(true, 0x1, b"early"));
    s.write_all(&bytes).unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101"));
    assert_eq!(read_text(&mut s), "early");
}

#[test]
fn health_and_metrics() {
    let server = Server::start(&["--workers", "2"]);
    let (status, body) = server.get("/healthz");
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.get("/metrics");
    assert_eq!(status, 200);
    assert!(
        body.contains("# TYPE ringcast_connections_open gauge"),
        "{body}"
    );
    assert_eq!(
        server.metric_per_worker("ringcast_connections_open").len(),
        2
    );
}

#[test]
fn listens_on_ipv6_and_ipv4_with_one_dual_stack_socket() {
    let port = free_port();
    let mut child = std::process::Command::new(common::bin())
        .args([
            "--log",
            "warn",
            "serve",
            "--listen",
            &format!("[::]:{port}"),
            "--workers",
            "1",
            "--echo",
        ])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let get = |addr: &str| -> u16 {
        let Ok(mut s) = std::net::TcpStream::connect(addr) else {
            return 0;
        };
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        status_of(&read_to_close(&mut s))
    };
    while get(&format!("[::1]:{port}")) != 200 {
        assert!(std::time::Instant::now() < deadline, "no answer on [::1]");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        get(&format!("127.0.0.1:{port}")),
        200,
        "IPv4 through the same socket"
    );
    let _ = child.kill();
    let _ = child.wait();
}
