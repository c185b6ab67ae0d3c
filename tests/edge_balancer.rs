//! Behind a load balancer (docs/load-balancing.md): a real HAProxy started from `deploy/haproxy.cfg`
//! (send-proxy-v2) and a real nginx from `deploy/nginx.conf` (X-Forwarded-For) in front of a real
//! ringcast, on 127.0.0.1 ports; clients bound to 127.0.0.9/127.0.0.10 so the per-address limit shows
//! whose address the server sees. Also: both files pass `haproxy -c` / `nginx -t`; `--proxy-protocol`
//! refuses peers outside `--trusted-proxies`; `serve` refuses a port another server holds unless `--join`.
//!
//! HAProxy and nginx come from apt (tests/run.sh installs them); without them those tests print
//! `edge_balancer: skipped: …` and pass (with CI=true they fail).

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

/// The path of `tool`, or None after a skip line (a failure under CI=true, where every tool is there).
fn tool(tool: &str) -> Option<String> {
    installed_tool(
        "edge_balancer",
        tool,
        &format!("apt-get install -y {tool}"),
        "",
    )
}

/// A child process stopped by PID (SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ringcast serve` with its log captured; returns once it logs "listening" (with --proxy-protocol
/// `/healthz` cannot be asked without a header).
fn ringcast(args: &[&str]) -> (Proc, Captured, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen = addr.to_string();
    let mut all = vec!["--log", "info", "serve", "--listen", &listen, "--echo"];
    all.extend_from_slice(args);
    let mut child = ringcast_command(&all, &[]).spawn().expect("start ringcast");
    let log = Captured::of(&mut child);
    let mut proc = Proc(child);
    poll_until(Duration::from_secs(15), "ringcast listening", || {
        if let Ok(Some(status)) = proc.0.try_wait() {
            panic!("ringcast exited: {status}\n{}", log.text());
        }
        log.text().contains("listening")
    });
    (proc, log, addr)
}

/// A TCP connection to `to` from the local address `from` (any 127.0.0.0/8 address is ours).
fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from((from, 0)).into())
        .expect("bind the client address");
    socket
        .connect_timeout(&to.into(), Duration::from_secs(2))
        .expect("connect");
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// A WebSocket upgrade from `from` through `to`: the response head, and the stream.
fn upgrade_from(from: [u8; 4], to: SocketAddr) -> (String, TcpStream) {
    let mut s = connect_from(from, to);
    s.write_all(upgrade_request("/").as_bytes()).unwrap();
    let head = read_head(&mut s);
    (head, s)
}

/// The balancer forwards to ringcast: retry the upgrade until a 101 (its first health checks may still
/// be running), at most 15 s.
fn first_upgrade(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let result = std::panic::catch_unwind(|| upgrade_from(from, to));
        match result {
            Ok((head, s)) if head.starts_with("HTTP/1.1 101") => return s,
            other => {
                let head = other.map(|(h, _)| h).unwrap_or_default();
                assert!(
                    Instant::now() < deadline,
                    "no 101 through the balancer within 15 s: {head}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// An echo round trip on an upgraded stream.
fn echo(s: &mut TcpStream, text: &str) {
    s.write_all(&frame(true, 1, text.as_bytes())).unwrap();
    assert_eq!(read_text(s), text);
}

/// The rewrite of `deploy/haproxy.cfg` that the load harness uses too (`ringcast-load run --via-haproxy`).
#[path = "../perf/src/haproxy_cfg.rs"]
mod haproxy_cfg;

/// `deploy/haproxy.cfg` for a test: listening on `listen`, one edge at `edge` (with the file's
/// `default-server` options: checks, send-proxy-v2), running in the foreground as the test's user.
fn haproxy_config(listen: SocketAddr, edge: SocketAddr) -> String {
    let text = std::fs::read_to_string(deploy("haproxy.cfg")).expect("deploy/haproxy.cfg");
    haproxy_cfg::rewrite(&text, &listen.to_string(), &[edge.to_string()], 1000)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn haproxy_cfg_is_valid() {
    let Some(haproxy) = tool("haproxy") else {
        return;
    };
    let out = Command::new(haproxy)
        .args(["-c", "-f"])
        .arg(deploy("haproxy.cfg"))
        .output()
        .unwrap();
    assert!(out.status.success(), "haproxy -c: {}", output_text(&out));
}

#[test]
fn through_haproxy_the_server_sees_the_clients_address() {
    let Some(haproxy) = tool("haproxy") else {
        return;
    };
    let (_server, log, edge) = ringcast(&[
        "--workers",
        "1",
        "--proxy-protocol",
        "--trusted-proxies",
        "127.0.0.0/8",
        "--max-conns-per-ip",
        "1",
    ]);
    let dir = TempDir::new("edge-haproxy");
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = dir.0.join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(front, edge)).unwrap();
    let check = Command::new(&haproxy)
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", output_text(&check));
    let proxy = Proc(
        Command::new(&haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy"),
    );
    // 127.0.0.9 gets its one connection; its second is refused (503 through HAProxy), while
    // 127.0.0.10 is admitted: every connection came from HAProxy's address, the limit counts clients.
    let mut first = first_upgrade([127, 0, 0, 9], front);
    echo(&mut first, "through haproxy");
    let (head, _) = upgrade_from([127, 0, 0, 9], front);
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    let (head, mut other) = upgrade_from([127, 0, 0, 10], front);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    echo(&mut other, "another client");
    poll_until(Duration::from_secs(5), "the refusal logged", || {
        log.text().contains("peer=127.0.0.9")
    });
    let text = log.text();
    let refusal = text
        .lines()
        .find(|l| l.contains("too many connections from your address"))
        .expect("the refusal line");
    assert!(refusal.contains("peer=127.0.0.9"), "{refusal}");
    // HAProxy's health checks (PROXY v2 LOCAL + GET /readyz) are answered: nothing refused them.
    assert!(!text.contains("no PROXY protocol header"), "{text}");
    drop(proxy);
}

#[test]
fn proxy_protocol_refuses_untrusted_peers_and_missing_headers() {
    let (_server, log, addr) = ringcast(&["--proxy-protocol", "--trusted-proxies", "127.0.0.9"]);
    // From 127.0.0.1 (not trusted): closed without an answer.
    let mut s = connect_from([127, 0, 0, 1], addr);
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(read_to_close(&mut s).is_empty());
    // From the trusted address without a header: closed too.
    let mut s = connect_from([127, 0, 0, 9], addr);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(read_to_close(&mut s).is_empty());
    // With a v1 header: answered.
    let mut s = connect_from([127, 0, 0, 9], addr);
    s.write_all(
        b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 3001\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let resp = read_to_close(&mut s);
    assert_eq!(status_of(&resp), 200, "{}", String::from_utf8_lossy(&resp));
    poll_until(Duration::from_secs(5), "both refusals logged", || {
        let text = log.text();
        text.contains("connection from outside --trusted-proxies")
            && text.contains("no PROXY protocol header")
    });
}

#[test]
fn nginx_conf_is_valid_and_passes_the_upgrade_with_x_forwarded_for() {
    let Some(nginx) = tool("nginx") else {
        return;
    };
    let dir = TempDir::new("edge-nginx");
    let main_conf = |include: &Path| {
        let d = dir.0.display();
        format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log stderr;\nevents {{}}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             \x20 fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             \x20 include {};\n}}\n",
            include.display()
        )
    };
    let run_t = |conf: &Path| {
        let out = Command::new(&nginx)
            .arg("-t")
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(conf)
            .args(["-e", "stderr"])
            .output()
            .unwrap();
        assert!(out.status.success(), "nginx -t: {}", output_text(&out));
    };
    // The file as shipped.
    let shipped = dir.0.join("shipped.conf");
    std::fs::write(&shipped, main_conf(&deploy("nginx.conf"))).unwrap();
    run_t(&shipped);

    // A real nginx from it, in front of a ringcast that trusts nginx's address only.
    let server = Server::start(&[
        "--echo",
        "--trusted-proxies",
        "127.0.0.1",
        "--max-conns-per-ip",
        "1",
    ]);
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let text = std::fs::read_to_string(deploy("nginx.conf")).unwrap();
    let mut site = String::new();
    let mut server_written = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("listen ") {
            site.push_str(&format!("    listen {front};\n"));
        } else if t.starts_with("server ") && t.contains(':') {
            if !server_written {
                site.push_str(&format!("    server {};\n", server.addr));
                server_written = true;
            }
        } else {
            site.push_str(line);
            site.push('\n');
        }
    }
    let site_path = dir.0.join("ringcast.conf");
    std::fs::write(&site_path, site).unwrap();
    let conf = dir.0.join("nginx.conf");
    std::fs::write(&conf, main_conf(&site_path)).unwrap();
    run_t(&conf);
    let proxy = Proc(
        Command::new(&nginx)
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(&conf)
            .args(["-e", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx"),
    );
    let mut first = first_upgrade([127, 0, 0, 9], front);
    echo(&mut first, "through nginx");
    // The limit counts the address nginx put in X-Forwarded-For, not nginx's own.
    let (head, _) = upgrade_from([127, 0, 0, 9], front);
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    let (head, mut other) = upgrade_from([127, 0, 0, 10], front);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    echo(&mut other, "another client");
    drop(proxy);
}

#[test]
fn serve_refuses_a_port_another_server_holds_unless_join() {
    let first = Server::start(&["--echo"]);
    let listen = first.addr.to_string();
    let out = ringcast_command(&["serve", "--echo", "--listen", &listen], &[])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(!out.status.success(), "a second server started: {text}");
    assert!(
        text.contains(&format!("port {}", first.addr.port())) && text.contains("--join"),
        "{text}"
    );
    // With --join it shares the port (SO_REUSEPORT), and both keep serving.
    let mut joined = Proc(
        ringcast_command(&["serve", "--echo", "--join", "--listen", &listen], &[])
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        joined.0.try_wait().unwrap().is_none(),
        "the joining server stopped"
    );
    assert_eq!(first.get("/healthz").0, 200);
}
