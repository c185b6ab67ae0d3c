//! `ringcast demo`: the whole system in one command for a newcomer. Uses the Redis at `--redis` or starts
//! a throw-away local `redis-server`, then runs `ringcast serve` and `ringcast feed --demo` as child
//! processes (this same executable), shows a few ticks flowing, and stops everything on Ctrl-C/SIGTERM.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;

use super::process;
use super::redis_server::{self, RedisServer, RedisServerError};
use super::{CliError, RedisArgs};
use crate::runtime::signals::{self, Signal};
use crate::secret::Redacted;

/// How long the server and the feed get to come up.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the built-in watcher prints ticks.
const WATCH_FOR: Duration = Duration::from_secs(5);
/// Ticks the watcher prints.
const WATCH_LINES: usize = 5;

/// `ringcast demo [--listen ADDR] [--rate R] [--symbols N]`
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Address the server listens on.
    #[arg(long, default_value = "0.0.0.0:3001")]
    pub listen: SocketAddr,
    /// Demo feed rate, ticks per second.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Demo feed symbols.
    #[arg(long, default_value_t = 100)]
    pub symbols: u32,
    #[command(flatten)]
    pub redis: RedisArgs,
}

/// Run `ringcast demo`; returns the exit code.
pub fn main(args: DemoArgs) -> i32 {
    super::finish(run(&args))
}

/// What the signal thread reports.
enum Event {
    Stop,
    ChildExited,
}

fn run(args: &DemoArgs) -> Result<(), CliError> {
    if args.redis.redis_cluster.is_some() {
        return Err(CliError::Usage(
            "demo runs on one Redis (--redis); for a Redis Cluster run `serve` and `feed --demo` with --redis-cluster"
                .into(),
        ));
    }
    // Signals go to a sigwait thread; children get the default mask back (process::guard).
    signals::block();
    let (events_tx, events) = mpsc::channel();
    std::thread::Builder::new()
        .name("ringcast-signals".into())
        .spawn(move || {
            loop {
                let event = match signals::wait() {
                    Signal::Terminate | Signal::Interrupt => Event::Stop,
                    Signal::Child => Event::ChildExited,
                    Signal::Reload => continue,
                };
                if events_tx.send(event).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| CliError::Other(format!("cannot start the signal thread: {e}")))?;

    check_port_free(args.listen)?;
    let redis = ensure_redis(&args.redis)?;
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Other(format!("cannot find own executable: {e}")))?;
    let child_cmd = |sub: &[String]| {
        let mut cmd = Command::new(&exe);
        cmd.args(sub)
            .env("RINGCAST_REDIS", &args.redis.redis)
            .env("RINGCAST_PREFIX", &args.redis.prefix)
            .stdin(Stdio::null());
        if let Some(ca) = &args.redis.redis_ca {
            cmd.env("RINGCAST_REDIS_CA", ca);
        }
        process::guard(&mut cmd);
        cmd
    };

    let mut server = child_cmd(&["serve".into(), "--listen".into(), args.listen.to_string()])
        .spawn()
        .map_err(|e| CliError::Other(format!("cannot start `ringcast serve`: {e}")))?;
    let mut children = Children(vec![]);
    let target = connect_addr(args.listen);
    let up = process::wait_for(START_TIMEOUT, || {
        if let Ok(Some(status)) = server.try_wait() {
            return Some(Err(status));
        }
        TcpStream::connect_timeout(&target, Duration::from_millis(200))
            .ok()
            .map(|_| Ok(()))
    });
    match up {
        Some(Ok(())) => {}
        Some(Err(status)) => {
            return Err(CliError::Other(format!(
                "`ringcast serve --listen {}` exited ({status}); see its messages above",
                args.listen
            )));
        }
        None => {
            process::stop(&mut server, Duration::from_secs(5));
            return Err(CliError::Other(format!(
                "`ringcast serve` did not accept connections on {target} within {START_TIMEOUT:?}"
            )));
        }
    }
    children.0.push(("server", server));

    let feed = child_cmd(&[
        "feed".into(),
        "--demo".into(),
        "--rate".into(),
        args.rate.to_string(),
        "--symbols".into(),
        args.symbols.to_string(),
    ])
    .spawn()
    .map_err(|e| CliError::Other(format!("cannot start `ringcast feed --demo`: {e}")))?;
    children.0.push(("feed", feed));

    print_banner(args, target, &redis, &children);
    let watcher = {
        let url = args.redis.redis.clone();
        let ca = args.redis.ca().ok().flatten();
        let channel = args.redis.keys().ticks;
        std::thread::Builder::new()
            .name("ringcast-watch".into())
            .spawn(move || {
                watch(&url, ca.as_deref(), &channel);
                println!("open the live ticker page: http://{target}/");
            })
            .ok()
    };

    let result = loop {
        match events.recv_timeout(Duration::from_secs(1)) {
            Ok(Event::Stop) => break Ok(()),
            Ok(Event::ChildExited) | Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(why) = children.exited() {
                    break Err(CliError::Other(format!("{why}; stopping the demo")));
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break Ok(()),
        }
    };
    println!("stopping the demo…");
    drop(children);
    drop(redis);
    drop(watcher); // bounded by WATCH_FOR; not worth waiting for
    result
}

/// The demo's children, stopped by PID (newest first) when dropped.
struct Children(Vec<(&'static str, Child)>);

impl Children {
    /// A description of the first child that has exited, if any.
    fn exited(&mut self) -> Option<String> {
        self.0
            .iter_mut()
            .find_map(|(name, child)| match child.try_wait() {
                Ok(Some(status)) => Some(format!("the {name} process exited ({status})")),
                _ => None,
            })
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in self.0.iter_mut().rev() {
            process::stop(child, Duration::from_secs(5));
        }
    }
}

/// Where to connect to reach `listen` from this machine.
fn connect_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Refuse early, with a clear message, if something already listens on the port.
fn check_port_free(listen: SocketAddr) -> Result<(), CliError> {
    match TcpListener::bind(listen) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(CliError::Other(format!(
            "port {} is busy ({listen}): another ringcast or server is running there; stop it or \
             pick another port with --listen 0.0.0.0:3002",
            listen.port()
        ))),
        Err(e) => Err(CliError::Other(format!("cannot listen on {listen}: {e}"))),
    }
}

/// The Redis the demo uses: the one answering at `--redis`, else a local one it starts.
fn ensure_redis(args: &RedisArgs) -> Result<Option<RedisServer>, CliError> {
    if redis_server::ping_with(&args.redis, args.ca()?.as_deref()) {
        return Ok(None);
    }
    let port = local_redis_port(&args.redis).ok_or_else(|| {
        CliError::Other(format!(
            "no Redis answers at {} (the demo starts one only for a 127.0.0.1/localhost URL)",
            Redacted(&args.redis)
        ))
    })?;
    if RedisServer::binary().is_none() {
        install_redis()?;
    }
    println!(
        "no Redis at {}: starting redis-server on 127.0.0.1:{port} (no persistence)",
        Redacted(&args.redis)
    );
    RedisServer::start(port)
        .map(Some)
        .map_err(|e| CliError::Other(e.to_string()))
}

/// The port of a `redis://127.0.0.1:…` / `redis://localhost:…` URL.
fn local_redis_port(url: &str) -> Option<u16> {
    let client = redis::Client::open(url).ok()?;
    match client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(host, port)
            if matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1" | "[::1]") =>
        {
            Some(*port)
        }
        _ => None,
    }
}

/// `apt-get install -y redis-server` when root; otherwise say how.
fn install_redis() -> Result<(), CliError> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        return Err(CliError::Other(format!(
            "{}\n(then run the demo again; or point --redis at a running Redis)",
            RedisServerError::NotInstalled
        )));
    }
    println!("redis-server is not installed: running apt-get install -y redis-server");
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null());
        process::guard(&mut cmd);
        cmd.status().is_ok_and(|s| s.success())
    };
    if !(apt(&["install", "-y", "-qq", "redis-server"])
        || (apt(&["update", "-qq"]) && apt(&["install", "-y", "-qq", "redis-server"])))
    {
        return Err(CliError::Other(
            "apt-get install -y redis-server failed (see above); install Redis and run the demo again"
                .into(),
        ));
    }
    Ok(())
}

fn print_banner(
    args: &DemoArgs,
    target: SocketAddr,
    redis: &Option<RedisServer>,
    children: &Children,
) {
    let pid = |name: &str| {
        children
            .0
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, c)| c.id())
    };
    let ws = format!("ws://{target}");
    println!();
    println!("ringcast demo is running");
    println!(
        "  server  {ws}  (listening on {}, pid {})",
        args.listen,
        pid("server")
    );
    match redis {
        Some(r) => println!(
            "  redis   {} (started by the demo, pid {})",
            r.url(),
            r.pid()
        ),
        None => println!(
            "  redis   {} (already running)",
            Redacted(&args.redis.redis)
        ),
    }
    println!(
        "  feed    {} ticks/s over {} symbols on {} (pid {})",
        args.rate,
        args.symbols,
        args.redis.keys().ticks,
        pid("feed")
    );
    println!(
        "  page    http://{target}/  (the live ticker page; ?symbols=EFERT,LUCK picks the board)"
    );
    println!("watch ticks:");
    println!("  python3 -m websockets {ws}      then type: EFERT,LUCK");
    println!(
        "  browser console: ws = new WebSocket(\"{ws}\"); ws.onmessage = e => console.log(e.data); ws.onopen = () => ws.send(\"EFERT,LUCK\");"
    );
    println!(
        "  ringcast get EFERT,LUCK --redis {}",
        Redacted(&args.redis.redis)
    );
    println!("Ctrl-C stops everything.");
    println!();
}

/// Print the first few ticks published on `channel` (the demo's proof of life), for `WATCH_FOR`.
fn watch(url: &str, ca: Option<&[u8]>, channel: &str) {
    let Ok(mut con) = super::connect(url, ca) else {
        return;
    };
    if con
        .set_read_timeout(Some(Duration::from_millis(200)))
        .is_err()
    {
        return;
    }
    let mut pubsub = con.as_pubsub();
    if pubsub.subscribe(channel).is_err() {
        return;
    }
    let until = Instant::now() + WATCH_FOR;
    let (mut shown, mut messages) = (0, 0u64);
    while Instant::now() < until {
        let msg = match pubsub.get_message() {
            Ok(msg) => msg,
            Err(e) if e.is_timeout() => continue,
            Err(_) => return,
        };
        messages += 1;
        let (ticks, _) = crate::ingest::parse_message(msg.get_payload_bytes(), usize::MAX);
        for t in ticks {
            if shown < WATCH_LINES {
                println!("ticks flowing: {}", String::from_utf8_lossy(t.raw));
                shown += 1;
            }
        }
    }
    println!(
        "ticks flowing: {messages} messages on {channel} in {}s (the feed keeps going; Ctrl-C stops)",
        WATCH_FOR.as_secs()
    );
}
