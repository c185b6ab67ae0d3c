//! The server's life as docs/config.md, docs/runtime.md and docs/tls.md state it: `--processes N` runs N
//! processes on one port (each with its own Redis subscriber), restarts a killed one and stops them all on
//! SIGTERM; the SIGTERM drain stops listening at once (new connects are refused, or taken by a replacement
//! started with `--join` on the same port: no 503), spreads its 1012 closes over `--drain-window` and
//! exits when the clients are gone (connections still in their HTTP exchange do not count), or at the
//! window plus the close timeout;
//! a supervisor killed outright (SIGKILL) takes its processes with it (each drains);
//! SIGINT (Ctrl-C) stops within a second even with clients open; a certificate replaced on disk is picked
//! up without a signal.

mod common;
#[allow(dead_code)]
#[path = "tls_adapter/support.rs"]
mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use support::{DevCert, client_config};
use tungstenite::Message;

fn numsub(con: &mut redis::Connection, channel: &str) -> i64 {
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query(con)
        .unwrap();
    n
}

/// A subscribed client of `server`; None if the connection is gone.
fn subscribe(s: &mut TcpStream, symbol: &str) -> Option<()> {
    s.write_all(&frame(true, 0x1, symbol.as_bytes())).ok()?;
    let (_, opcode, payload) = read_frame(s)?;
    let v: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    (opcode == 0x1 && v["type"] == "subscribed").then_some(())
}

#[test]
fn processes_share_the_port_a_killed_one_is_restarted_and_sigterm_stops_all() {
    let redis = start_redis();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen = addr.to_string();
    let child = ringcast_command(
        &[
            "--log",
            "warn",
            "serve",
            "--listen",
            &listen,
            "--processes",
            "2",
            "--workers",
            "1",
            "--redis",
            &redis.url(),
            "--prefix",
            "pp:",
            "--drain-window",
            "1s",
            "--close-timeout",
            "1s",
        ],
        &[],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let started = Instant::now();
    let mut server = Server::adopt(child, addr);
    let _reap = ReapDescendants(server.pid());
    let supervisor = server.pid();
    poll_until(Duration::from_secs(10), "2 server processes", || {
        children_of(supervisor).len() == 2
    });
    let first = children_of(supervisor);
    let mut con = redis_con(&redis.url());
    poll_until(
        Duration::from_secs(10),
        "one Redis subscriber per process",
        || numsub(&mut con, "pp:ticks") == 2,
    );

    // Connections spread over both processes: killing one closes some of them, the others keep working.
    let mut clients: Vec<TcpStream> = (0..16).map(|_| server.ws()).collect();
    for c in &mut clients {
        subscribe(c, "P1").expect("subscribed");
    }
    let tick = r#"{"symbol":"P1","n":1}"#;
    publish_tick(&mut con, "pp:", tick);
    for c in &mut clients {
        assert_eq!(read_text(c), tick, "every process delivers ticks");
    }
    // (The supervisor treats a child dying within 2 s of its start as a start-up failure.)
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(started.elapsed()));
    let victim = first[0];
    kill_pid(victim, libc::SIGKILL);
    poll_until(Duration::from_secs(5), "the killed process is gone", || {
        !alive(victim)
    });
    let alive_clients = clients
        .iter_mut()
        .filter_map(|c| subscribe(c, "P2"))
        .count();
    assert!(
        (1..16).contains(&alive_clients),
        "connections were spread: {alive_clients} of 16 survived one process's death"
    );

    poll_until(
        Duration::from_secs(10),
        "the killed process is replaced",
        || {
            let now = children_of(supervisor);
            now.len() == 2 && !now.contains(&victim) && now.iter().all(|&p| alive(p))
        },
    );
    poll_until(
        Duration::from_secs(10),
        "the new process subscribes to Redis",
        || numsub(&mut con, "pp:ticks") == 2,
    );
    let mut fresh: Vec<TcpStream> = (0..8).map(|_| server.ws()).collect();
    for c in &mut fresh {
        subscribe(c, "P3").expect("subscribed");
    }
    let tick = r#"{"symbol":"P3","n":2}"#;
    publish_tick(&mut con, "pp:", tick);
    for c in &mut fresh {
        assert_eq!(read_text(c), tick);
    }

    drop(clients);
    drop(fresh);
    let children = children_of(supervisor);
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        Some(0),
        "the supervisor stops"
    );
    for pid in children {
        assert!(
            !alive(pid),
            "server process {pid} stopped with the supervisor"
        );
    }
}

/// Kills the listed pids (if still alive) when dropped: the children of a supervisor killed outright are
/// no longer its descendants, so `ReapDescendants` cannot find them.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if alive(pid) {
                kill_pid(pid, libc::SIGKILL);
            }
        }
    }
}

#[test]
fn a_supervisor_killed_outright_takes_its_processes_with_it_and_they_drain() {
    let redis = start_redis();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen = addr.to_string();
    let child = ringcast_command(
        &[
            "--log",
            "warn",
            "serve",
            "--listen",
            &listen,
            "--processes",
            "2",
            "--workers",
            "1",
            "--redis",
            &redis.url(),
            "--prefix",
            "pk:",
            "--drain-window",
            "1s",
            "--close-timeout",
            "1s",
        ],
        &[],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let mut server = Server::adopt(child, addr);
    let supervisor = server.pid();
    let _reap = ReapDescendants(supervisor);
    poll_until(Duration::from_secs(10), "2 server processes", || {
        children_of(supervisor).len() == 2
    });
    let children = children_of(supervisor);
    let _orphans = KillOnDrop(children.clone());
    let mut con = redis_con(&redis.url());
    poll_until(
        Duration::from_secs(10),
        "one Redis subscriber per process",
        || numsub(&mut con, "pk:ticks") == 2,
    );
    let mut clients: Vec<TcpStream> = (0..8).map(|_| server.ws()).collect();
    for c in &mut clients {
        subscribe(c, "K1").expect("subscribed");
    }

    // SIGKILL cannot be passed on: the kernel's parent-death signal (SIGTERM) makes each child drain.
    kill_pid(supervisor, libc::SIGKILL);
    assert!(
        server
            .wait_exit(Duration::from_secs(5))
            .is_none_or(|code| code != 0)
    );
    for mut c in clients {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(
            read_close_code(&mut c),
            Some(1012),
            "an orphaned server process drains its clients with 1012"
        );
    }
    poll_until(
        Duration::from_secs(10),
        "both server processes exit after their supervisor was killed",
        || children.iter().all(|&p| !alive(p)),
    );
    assert_eq!(
        listeners_on(addr.port()),
        0,
        "nobody listens on the port any more"
    );
}

/// `serve --workers 1 --echo` draining over `window` with `close_timeout` (whole seconds), plus `extra`.
fn echo_server_draining(window: Duration, close_timeout: Duration, extra: &[&str]) -> Server {
    let window = format!("{}s", window.as_secs());
    let close_timeout = format!("{}s", close_timeout.as_secs());
    let mut args = vec![
        "--workers",
        "1",
        "--echo",
        "--drain-window",
        &window,
        "--close-timeout",
        &close_timeout,
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Until a connect to `addr` is refused (the draining server stopped listening), at most `within`.
fn until_refused(addr: SocketAddr, within: Duration) {
    poll_until(within, "connects are refused (no listener)", || {
        matches!(
            TcpStream::connect_timeout(&addr, Duration::from_millis(500)),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        )
    });
}

/// Listening IPv4 TCP sockets on `port` (`/proc/net/tcp`, state 0A).
fn listeners_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&local) && f[3] == "0A"
        })
        .count()
}

/// Clients of a draining server: each thread reads until its close frame, answers it and reports the
/// code and when it came.
fn await_closes(clients: Vec<TcpStream>) -> std::sync::mpsc::Receiver<(Option<u16>, Instant)> {
    let (tx, rx) = std::sync::mpsc::channel();
    for mut c in clients {
        let tx = tx.clone();
        c.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        std::thread::spawn(move || {
            let code = read_close_code(&mut c);
            let at = Instant::now();
            let _ = c.write_all(&frame(true, 0x8, &1000u16.to_be_bytes()));
            let _ = tx.send((code, at));
        });
    }
    rx
}

#[test]
fn sigterm_stops_listening_spreads_1012_over_the_window_and_exits() {
    const WINDOW: Duration = Duration::from_secs(2);
    let mut server = echo_server_draining(WINDOW, Duration::from_secs(2), &[]);
    let clients: Vec<TcpStream> = (0..20).map(|_| server.ws()).collect();
    let rx = await_closes(clients);
    let sigterm = Instant::now();
    server.signal("TERM");
    // No replacement joined the port: new connects are refused at once (clients back off), not answered
    // 503 for the whole window.
    until_refused(server.addr, Duration::from_secs(1));

    let closes: Vec<(Option<u16>, Instant)> = rx.iter().collect();
    assert_eq!(closes.len(), 20);
    assert!(
        closes.iter().all(|(code, _)| *code == Some(1012)),
        "{closes:?}"
    );
    let offsets: Vec<Duration> = closes
        .iter()
        .map(|(_, at)| at.duration_since(sigterm))
        .collect();
    let (first, last) = (offsets.iter().min().unwrap(), offsets.iter().max().unwrap());
    assert!(
        *last - *first >= WINDOW / 2,
        "closes spread over the window, not all at once: {first:?}..{last:?}"
    );
    assert!(
        *last <= WINDOW + Duration::from_secs(1),
        "all closed within the window: last at {last:?}"
    );
    // Every client answered: the process exits without waiting for the close timeout.
    assert_eq!(
        server.wait_exit(Duration::from_secs(3)),
        Some(0),
        "exits once drained"
    );
    assert!(
        sigterm.elapsed() < WINDOW + Duration::from_secs(2),
        "{:?}",
        sigterm.elapsed()
    );
}

#[test]
fn sigint_stops_within_a_second_with_a_client_open_and_sigterm_keeps_draining() {
    let (window, close_timeout) = (Duration::from_secs(30), Duration::from_secs(5));
    let mut server = echo_server_draining(window, close_timeout, &[]);
    let mut first = server.ws();
    let mut second = server.ws();
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let sigint = Instant::now();
    server.signal("INT");
    assert_eq!(
        server.wait_exit(Duration::from_secs(4)),
        Some(0),
        "SIGINT with clients open: exits"
    );
    let took = sigint.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "SIGINT took {took:?} (at most the 1 s drain, plus start-up slack)"
    );
    // The drain began: the first client in the spread got its 1012; the other one's TCP closed.
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let codes = [read_close_code(&mut first), read_close_code(&mut second)];
    assert!(codes.contains(&Some(1012)), "{codes:?}");

    // SIGTERM, same clients: still draining after 2 s (the window is 30 s).
    let mut server = echo_server_draining(window, close_timeout, &[]);
    let _a = server.ws();
    let _b = server.ws();
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(2)),
        None,
        "SIGTERM keeps the drain"
    );
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(3)),
        Some(0),
        "a second SIGTERM stops at once"
    );
}

#[test]
fn a_client_that_never_answers_the_close_does_not_hold_the_drain() {
    let (window, close_timeout) = (Duration::from_secs(1), Duration::from_secs(2));
    let mut server = echo_server_draining(window, close_timeout, &[]);
    let mut mute = server.ws();
    let sigterm = Instant::now();
    server.signal("TERM");
    assert_eq!(read_close_code(&mut mute), Some(1012));
    // It never sends its Close: the process waits for it up to the close timeout, then exits anyway.
    assert_eq!(
        server.wait_exit(window + close_timeout + Duration::from_secs(2)),
        Some(0),
        "exits at the window plus the close timeout"
    );
    let took = sigterm.elapsed();
    assert!(
        took >= close_timeout * 3 / 4,
        "waited for the client's Close: exited after {took:?}"
    );
    assert!(
        closed_within(&mut mute, Duration::from_secs(1)),
        "its connection is closed"
    );
}

#[test]
fn connections_still_in_their_http_exchange_do_not_hold_the_drain() {
    // A connection accepted just before the listener closed, still in its HTTP exchange, is answered 503
    // (it was queued when the drain began). Here one idle connection that never sends its request stands
    // for such: the process exits once its WebSocket sessions are gone, not at the window plus the close timeout.
    let (window, close_timeout) = (Duration::from_secs(1), Duration::from_secs(5));
    let mut server = echo_server_draining(window, close_timeout, &["--handshake-timeout", "30s"]);
    let mut client = server.ws();
    let _idle = server.connect();
    let sigterm = Instant::now();
    server.signal("TERM");
    assert_eq!(read_close_code(&mut client), Some(1012));
    client
        .write_all(&frame(true, 0x8, &1000u16.to_be_bytes()))
        .unwrap();
    assert_eq!(
        server.wait_exit(window + close_timeout + Duration::from_secs(2)),
        Some(0),
        "exits"
    );
    let took = sigterm.elapsed();
    assert!(
        took < window + Duration::from_secs(2),
        "exited once the session was closed, not at the deadline (window + close timeout): {took:?}"
    );
}

#[test]
fn a_replacement_joined_on_the_port_serves_new_clients_while_the_old_one_drains() {
    // A rolling restart on one host: the new process joins the port (`--join`), then the old one gets
    // SIGTERM. Every client connecting during the drain is served by the new process (no 503, no
    // refused connect), while the old one's clients get their 1012 spread over its window.
    const WINDOW: Duration = Duration::from_secs(3);
    let mut old = echo_server_draining(WINDOW, Duration::from_secs(1), &[]);
    let clients: Vec<TcpStream> = (0..10).map(|_| old.ws()).collect();
    let rx = await_closes(clients);
    let mut new = Server::start_at(old.addr, &["--workers", "1", "--echo", "--join"]);
    // Its /healthz may have been answered by the old one: wait until both listen.
    poll_until(Duration::from_secs(5), "both processes listen", || {
        listeners_on(old.addr.port()) == 2
    });
    let sigterm = Instant::now();
    old.signal("TERM");
    // The signal is handled asynchronously: a connect that lands before the old process has seen it is
    // its own (answered 503 once the drain has begun). Within a few ms it stops listening.
    poll_until(
        Duration::from_secs(1),
        "the old one stops listening",
        || listeners_on(old.addr.port()) == 1,
    );
    let mut during = Vec::new();
    while sigterm.elapsed() < WINDOW / 2 {
        let mut s = new.connect();
        s.write_all(upgrade_request("/").as_bytes()).unwrap();
        let head = read_head(&mut s);
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "{:?} after SIGTERM to the old process: {head}",
            sigterm.elapsed()
        );
        during.push(s);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        old.wait_exit(Duration::ZERO),
        None,
        "the old one still drains"
    );
    let closes: Vec<(Option<u16>, Instant)> = rx.iter().collect();
    assert!(
        closes.iter().all(|(code, _)| *code == Some(1012)),
        "{closes:?}"
    );
    assert_eq!(old.wait_exit(Duration::from_secs(3)), Some(0), "drained");
    // The ones that connected during the drain outlive the old process: the new one served them all.
    for s in &mut during {
        s.write_all(&frame(true, 0x1, b"still here")).unwrap();
        let (_, opcode, payload) = read_frame(s).expect("echo from the new process");
        assert_eq!((opcode, payload.as_slice()), (0x1, &b"still here"[..]));
    }
    assert!(during.len() >= 10, "{} connects", during.len());
    new.signal("INT");
    assert_eq!(new.wait_exit(Duration::from_secs(3)), Some(0));
}

#[test]
fn a_certificate_replaced_on_disk_is_served_to_new_handshakes() {
    let first = DevCert::ecdsa();
    let second = DevCert::rsa();
    let live = support::LiveCert::copy_of("file-reload", &first);
    let (cert_s, key_s) = live.paths();
    let server = Server::start_tls(&[
        "--workers",
        "1",
        "--echo",
        "--tls-cert",
        &cert_s,
        "--tls-key",
        &key_s,
    ]);
    let url = format!("wss://localhost:{}/", server.addr.port());
    // A fresh client config per connection (no resumption): each handshake shows the served certificate.
    let connect = || {
        let tcp = server.connect();
        let cfg = client_config(&[&first, &second], &[&rustls::version::TLS13]);
        let conn = ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap();
        tungstenite::client(url.as_str(), StreamOwned::new(conn, tcp))
            .unwrap()
            .0
    };
    let mut old = connect();
    assert_eq!(
        old.get_ref().conn.peer_certificates().unwrap()[0],
        first.leaf()
    );

    // Replace both files the way a deploy does (write aside, rename into place); no SIGHUP.
    for (from, to) in [(second.key(), &live.key), (second.cert(), &live.cert)] {
        let tmp = to.with_extension("new");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }
    poll_until(
        Duration::from_secs(15),
        "new handshakes get the new certificate",
        || {
            let ws = connect();
            let renewed = ws.get_ref().conn.peer_certificates().unwrap()[0] == second.leaf();
            if !renewed {
                std::thread::sleep(Duration::from_millis(200)); // a handshake every ~200 ms, not every 20
            }
            renewed
        },
    );
    old.send(Message::text("still here")).unwrap();
    assert_eq!(
        old.read().unwrap(),
        Message::text("still here"),
        "open connections stay open"
    );
    assert_eq!(
        old.get_ref().conn.peer_certificates().unwrap()[0],
        first.leaf()
    );
}
