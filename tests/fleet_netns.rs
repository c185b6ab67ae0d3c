//! A fleet across Linux network namespaces (issue 12): every host is a namespace on one private /24
//! (veth pairs through a bridge): a Redis Cluster of 3 masters + 3 replicas on three Redis hosts, three
//! edge hosts each running `ringcast serve --redis-cluster … --proxy-protocol --trusted-proxies <haproxy>`,
//! one HAProxy host running `deploy/haproxy.cfg` (only addresses, ports and the stats socket rewritten)
//! and a client host running 120 WebSocket clients with reconnect logic. The test itself runs in the root
//! namespace (the operator's host: it publishes with `ringcast publish --redis-cluster`, reads the edges'
//! `/metrics` and asks Redis).
//!
//! Checked, in order: the clients spread over the three edges (leastconn); every tick reaches every
//! client on every edge; an edge sees the client host's address (PROXY v2); ticks are spread over every
//! master; an edge SIGKILLed: its clients reconnect to the others and converge; a rolling restart with
//! SIGTERM drain (RINGCAST_DRAIN_WINDOW=2s) of each edge loses no client's latest value (reconnect rate on
//! the survivors measured); a Redis master SIGKILLed: its replica is promoted and every client converges
//! without a disconnect. Prints the figures (`fleet_netns: …`; perf/RESULTS.md quotes them).
//!
//! Needs root (namespaces), `ip`, `haproxy`, `redis-server` and `redis-cli`: without them it prints
//! `fleet_netns: skipped: …` and passes (with CI=true it fails). Everything it creates is removed, also
//! on panic (Drop guards); namespaces are named `ringcast-fleet-<pid>-*` and a run removes those of runs
//! that no longer exist. Bounded: about a minute here, every wait has a deadline.

mod common;
mod fleet;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use fleet::client::{ClientHost, ClientState};
use fleet::cluster::{Cluster, info_field};
use fleet::netns::{Net, Proc, in_ns};
use fleet::*;

const CLIENTS: usize = 120;

/// The tools, or None after a skip line (a failure under CI=true).
fn tools() -> Option<(String, String, String)> {
    let ci = matches!(std::env::var("CI").as_deref(), Ok("true" | "1"));
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        assert!(!ci, "fleet_netns needs root (network namespaces); CI=true");
        println!("fleet_netns: skipped: not root (network namespaces need CAP_NET_ADMIN)");
        return None;
    }
    let install = "apt-get install -y iproute2 haproxy redis-server redis-tools";
    installed_tool("fleet_netns", "ip", install, "")?;
    let haproxy = installed_tool("fleet_netns", "haproxy", install, "")?;
    let redis_server = match ringcast::cli::redis_server::RedisServer::binary() {
        Some(p) => p,
        None => {
            std::path::PathBuf::from(installed_tool("fleet_netns", "redis-server", install, "")?)
        }
    };
    let cli = redis_server.with_file_name("redis-cli");
    // Root in a container may still lack the right to make namespaces.
    let probe = format!("ringcast-fleet-{}-probe", std::process::id());
    let made = Command::new("ip")
        .args(["netns", "add", &probe])
        .output()
        .unwrap();
    if !made.status.success() {
        let why = String::from_utf8_lossy(&made.stderr).trim().to_string();
        assert!(!ci, "fleet_netns: ip netns add failed (CI=true): {why}");
        println!("fleet_netns: skipped: cannot create network namespaces (ip netns add: {why})");
        return None;
    }
    let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    let cli = if cli.is_file() {
        cli.display().to_string()
    } else {
        installed_tool("fleet_netns", "redis-cli", install, "")?
    };
    Some((haproxy, redis_server.display().to_string(), cli))
}

/// Two symbols of every shard.
fn symbols() -> Vec<String> {
    common::cluster::two_symbols_per_shard('F', SHARDS)
}

/// `ringcast publish --redis-cluster` of `{"symbol":s,"p":p}` for every symbol, as one message (from
/// the root namespace); whether it succeeded.
fn publish(seeds: &str, symbols: &[String], p: i64) -> bool {
    common::cluster::publish_command(seeds, PREFIX, SHARDS, symbols, p)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Publishes p = next, next+1, … every 200 ms until stopped (failures, e.g. during a failover, skipped).
struct Publisher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Publisher {
    fn start(seeds: &str, symbols: &[String], next: Arc<AtomicI64>) -> Publisher {
        let stop = Arc::new(AtomicBool::new(false));
        let (seeds, symbols, s) = (seeds.to_string(), symbols.to_vec(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                publish(&seeds, &symbols, next.fetch_add(1, Ordering::SeqCst));
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Publisher {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every client connected and holding `p` as the latest value of each of its symbols.
fn converged(clients: &[ClientState], subs: &[Vec<String>], p: i64) -> bool {
    clients
        .iter()
        .zip(subs)
        .all(|(c, syms)| c.connected && syms.iter().all(|s| c.latest(s) == Some(p)))
}

/// What the feed of the test is: its seeds and symbols, each client's subscription, the next p.
struct Feed<'a> {
    seeds: &'a str,
    symbols: &'a [String],
    subs: &'a [Vec<String>],
    next: &'a AtomicI64,
}

/// The clients after an event, against their state `before` it.
struct Round {
    /// From the event until every client had the final p.
    took: Duration,
    after: Vec<ClientState>,
    /// The failed attempts (status lines) since `before`.
    failures: Vec<String>,
}

/// Publish a final p (retrying until Redis takes it), wait until every client has it, and compare the
/// clients with their state `before` the event at `since`.
fn converge_after(
    host: &mut ClientHost,
    feed: &Feed,
    before: &[ClientState],
    since: Instant,
    what: &str,
) -> Round {
    let p = feed.next.fetch_add(1, Ordering::SeqCst);
    poll_until(Duration::from_secs(20), "a publish accepted", || {
        publish(feed.seeds, feed.symbols, p)
    });
    poll_until(Duration::from_secs(30), what, || {
        converged(&host.state().1, feed.subs, p)
    });
    let took = since.elapsed();
    let (_, after) = host.state();
    let failures = new_failures(before, &after);
    Round {
        took,
        after,
        failures,
    }
}

/// Reconnect times (client-host ms) after `after`, sorted.
fn reconnects_after(clients: &[ClientState], after: u64) -> Vec<u64> {
    let mut out: Vec<u64> = clients
        .iter()
        .flat_map(|c| c.connects.iter().skip(1).copied())
        .filter(|&t| t > after)
        .collect();
    out.sort_unstable();
    out
}

/// The failed attempts (their status lines) between two states.
fn new_failures(before: &[ClientState], after: &[ClientState]) -> Vec<String> {
    after
        .iter()
        .zip(before)
        .flat_map(|(a, b)| a.failures[b.failures.len()..].to_vec())
        .collect()
}

/// Most reconnects in any 1 s window.
fn peak_per_s(times: &[u64]) -> usize {
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|&&t| t < times[i] + 1000)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
#[ignore = "the client host of fleet_across_network_namespaces: it runs this inside its client namespace"]
fn fleet_client_host() {
    fleet::client::client_host_main();
}

#[test]
fn fleet_across_network_namespaces() {
    let Some((haproxy, redis_server, redis_cli)) = tools() else {
        return;
    };
    let t_test = Instant::now();
    let mut net = Net::new();
    let ops = net.addr(1);
    let redis_hosts: Vec<(String, String)> = (1..=3)
        .map(|i| {
            (
                net.host(&format!("r{i}"), 20 + i),
                net.addr(20 + i).to_string(),
            )
        })
        .collect();
    let edge_hosts: Vec<(String, SocketAddr)> = (1..=3)
        .map(|i| {
            let ns = net.host(&format!("e{i}"), 10 + i);
            (ns, SocketAddr::from((net.addr(10 + i), 3001)))
        })
        .collect();
    let lb_ns = net.host("lb", 30);
    let lb = SocketAddr::from((net.addr(30), 80));
    let client_ns = net.host("client", 100);
    let client_ip = net.addr(100);

    let mut cluster = Cluster::start(&redis_server, &redis_cli, &redis_hosts);
    let seeds = cluster.seeds();
    let symbols = symbols();
    let next = Arc::new(AtomicI64::new(1));
    assert!(publish(
        &seeds,
        &symbols,
        next.fetch_add(1, Ordering::SeqCst)
    ));
    println!("fleet_netns: cluster up at {:?}", t_test.elapsed());

    // The edges trust HAProxy, and the operator's host (the test, for /metrics behind a LOCAL header).
    let trusted = format!("{}/32,{ops}/32", lb.ip());
    let mut edges: Vec<Edge> = edge_hosts
        .iter()
        .map(|(ns, addr)| Edge::start(ns, *addr, &seeds, &trusted))
        .collect();

    let dir = TempDir::new("fleet-haproxy");
    let stats = dir.0.join("admin.sock");
    let cfg = dir.file(
        "haproxy.cfg",
        &haproxy_config(
            lb,
            &edge_hosts.iter().map(|e| e.1).collect::<Vec<_>>(),
            &stats,
        ),
    );
    let check = Command::new(&haproxy)
        .args(["-c", "-f", &cfg])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", output_text(&check));
    let _haproxy = Proc(
        in_ns(&lb_ns, &haproxy)
            .args(["-db", "-f", &cfg])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_haproxy(&stats, &[true; 3], Duration::from_secs(15));

    // Clients: client i subscribes to the symbols j ≡ i (mod 4): 8 symbols over 8 shards each.
    let subs: Vec<Vec<String>> = (0..CLIENTS)
        .map(|i| {
            symbols
                .iter()
                .enumerate()
                .filter(|(j, _)| j % 4 == i % 4)
                .map(|(_, s)| s.clone())
                .collect()
        })
        .collect();
    let t_connect = Instant::now();
    let mut host = ClientHost::start(
        &client_ns,
        lb,
        &subs.iter().map(|s| s.join(",")).collect::<Vec<_>>(),
    );
    poll_until(Duration::from_secs(30), "every client's snapshot", || {
        converged(&host.state().1, &subs, 1)
    });
    println!(
        "fleet_netns: {CLIENTS} clients connected and snapshotted through HAProxy in {:?}",
        t_connect.elapsed()
    );

    // Spread over the three edges (leastconn), as each edge counts its connections.
    let mut open = Vec::new();
    poll_until(
        Duration::from_secs(5),
        "every client counted by an edge",
        || {
            open = edges.iter().map(Edge::websockets).collect();
            open.iter().sum::<usize>() == CLIENTS
        },
    );
    println!(
        "fleet_netns: WebSockets per edge {open:?}, HAProxy {:?}",
        haproxy_servers(&stats)
    );
    assert!(
        open.iter().all(|&n| n >= CLIENTS / 6),
        "leastconn spreads the clients: {open:?}"
    );

    // Every tick reaches every client on every edge, in order.
    let first = next.load(Ordering::SeqCst);
    for _ in 0..3 {
        assert!(publish(
            &seeds,
            &symbols,
            next.fetch_add(1, Ordering::SeqCst)
        ));
    }
    let last = next.load(Ordering::SeqCst) - 1;
    poll_until(Duration::from_secs(10), "every live tick", || {
        converged(&host.state().1, &subs, last)
    });
    for (c, syms) in host.state().1.iter().zip(&subs) {
        for s in syms {
            assert_eq!(
                c.ps[s],
                (1..=last).collect::<Vec<_>>(),
                "{s}: {first}..={last}"
            );
        }
    }

    // The edges see the client host's address (PROXY v2), not HAProxy's: a foreign Origin is refused
    // and the refusal log names the client host.
    assert_eq!(host.probe(), 403);
    let peer = format!("peer={client_ip} ");
    poll_until(Duration::from_secs(5), "the refusal logged", || {
        edges.iter().any(|e| {
            e.log
                .text()
                .lines()
                .any(|l| l.contains("refused") && l.contains("code=403") && l.contains(&peer))
        })
    });
    let lb_peer = format!("peer={} ", lb.ip());
    assert!(edges.iter().all(|e| !e.log.text().contains(&lb_peer)));

    // Ticks spread over every master: each holds shard channels and served SPUBLISHes.
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "{masters:?}");
    for &m in &masters {
        let chans: Vec<String> = redis::cmd("PUBSUB")
            .arg("SHARDCHANNELS")
            .arg(format!("{PREFIX}*"))
            .query(&mut cluster.con(m))
            .unwrap();
        let spublish = info_field(m, "commandstats", "cmdstat_spublish:").unwrap_or_default();
        println!(
            "fleet_netns: master {m}: {} shard channels, spublish {spublish}",
            chans.len()
        );
        assert!(!chans.is_empty(), "master {m} has no shard channel");
        assert!(spublish.starts_with("calls="), "master {m}: no SPUBLISH");
    }

    let feed = Feed {
        seeds: &seeds,
        symbols: &symbols,
        subs: &subs,
        next: &next,
    };

    // Rolling restart with SIGTERM drain: no client's latest value lost; reconnects on the survivors.
    for (i, edge) in edges.iter_mut().enumerate() {
        let on_edge = edge.websockets();
        let (t0, before) = host.state();
        let publisher = Publisher::start(&seeds, &symbols, next.clone());
        let t_term = Instant::now();
        // It exits when its clients are gone, at the latest after the window plus the close timeout
        // (5 s); the rest is room for a loaded box.
        edge.stop(15, Duration::from_secs(DRAIN_WINDOW_S + 5 + 10));
        let exited = t_term.elapsed();
        drop(publisher);
        let Round {
            took,
            after,
            failures,
        } = converge_after(
            &mut host,
            &feed,
            &before,
            t_term,
            "the drained edge's clients back, converged",
        );
        let failed = failures.len() as u64;
        let times = reconnects_after(&after, t0);
        let closes: Vec<u16> = after
            .iter()
            .zip(&before)
            .flat_map(|(a, b)| a.closes[b.closes.len()..].to_vec())
            .collect();
        let span = times.last().zip(times.first()).map_or(0, |(l, f)| l - f);
        println!(
            "fleet_netns: drain of edge{}: {} of its {on_edge} clients reconnected over {span} ms \
             (peak {}/s, mean {:.0}/s; {failed} attempts refused {failures:?}), close codes {:?}; exited in {exited:?}, all converged in {took:?}",
            i + 1,
            times.len(),
            peak_per_s(&times),
            times.len() as f64 / (span.max(1) as f64 / 1000.0),
            closes.iter().fold(HashMap::new(), |mut m, c| {
                *m.entry(*c).or_insert(0) += 1;
                m
            }),
        );
        // Each of the drained edge's clients reconnects once; on a loaded box a stray one twice (its
        // first reconnect met the listener's last queued connects, or an upgrade outlasted its 5 s).
        let stray = times.len().saturating_sub(on_edge);
        assert!(
            times.len() >= on_edge && stray * 10 <= on_edge,
            "each of the drained edge's {on_edge} clients reconnected once (a tenth may twice): {} reconnects",
            times.len()
        );
        // deploy/haproxy.cfg retries a 503 of the draining edge on another (retry-on, redispatch):
        // without it each client is refused a few times (~200 attempts for 60 clients); with it none,
        // or a stray one on a box so loaded that an upgrade outlasts the client's 5 s.
        assert!(
            failed * 10 <= on_edge as u64,
            "upgrades refused during the drain: {failures:?}"
        );
        assert!(
            closes.iter().filter(|&&c| c == 1012).count() >= on_edge
                && closes.iter().filter(|&&c| c != 1012).count() <= stray,
            "drain closes with 1012 (a stray reconnect's own close aside): {closes:?}"
        );
        edge.restart(&seeds, &trusted);
        wait_haproxy(&stats, &[true; 3], Duration::from_secs(15));
    }

    // An edge SIGKILLed: its clients reconnect through HAProxy to the others and converge.
    let on_edge1 = edges[0].websockets();
    let (_, before) = host.state();
    let t_kill = Instant::now();
    edges[0].stop(9, Duration::from_secs(5));
    assert!(publish(
        &seeds,
        &symbols,
        next.fetch_add(1, Ordering::SeqCst)
    ));
    let Round {
        took,
        after,
        failures,
    } = converge_after(
        &mut host,
        &feed,
        &before,
        t_kill,
        "the killed edge's clients back, converged",
    );
    let failed = failures.len() as u64;
    let moved = after
        .iter()
        .zip(&before)
        .filter(|(a, b)| a.connects.len() > b.connects.len())
        .count();
    println!(
        "fleet_netns: edge SIGKILL: {moved} clients (of {on_edge1} on it) reconnected ({failed} attempts refused {failures:?}), all {CLIENTS} converged in {took:?}"
    );
    assert_eq!(moved, on_edge1);
    // deploy/haproxy.cfg retries a refused connection on another edge (retry-on, redispatch).
    assert!(
        failed * 10 <= on_edge1 as u64,
        "upgrades refused after the edge kill: {failures:?}"
    );
    edges[0].restart(&seeds, &trusted);
    wait_haproxy(&stats, &[true; 3], Duration::from_secs(15));

    // A Redis master SIGKILLed: its replica promoted, the edges resubscribe, every client converges
    // without a disconnect.
    let (_, before) = host.state();
    let resubscribes: f64 = edges
        .iter()
        .map(|e| e.metric("ringcast_feed_reconnects_total"))
        .sum();
    let dead = cluster.masters()[0];
    let no_edge_up = NoEdgeUp::start(&stats);
    let t_kill = Instant::now();
    cluster.kill(dead);
    let publisher = Publisher::start(&seeds, &symbols, next.clone());
    cluster.wait_failover(dead);
    let failover = t_kill.elapsed();
    drop(publisher);
    let Round { took, after, .. } = converge_after(
        &mut host,
        &feed,
        &before,
        t_kill,
        "every client converged after the failover",
    );
    // Every client is told `feed down` (the feed status is one per feed), but the other masters' shards
    // keep streaming and /readyz stays 200 while some shard streams, so the edges stay in HAProxy's
    // rotation (before per-master sessions: no edge UP for up to 4.3 s, HAProxy answering 503 itself).
    wait_haproxy(&stats, &[true; 3], Duration::from_secs(15));
    let out_of_rotation = no_edge_up.longest();
    let told_down = after
        .iter()
        .zip(&before)
        .filter(|(a, b)| a.feed_down > b.feed_down)
        .count();
    let resubscribed: f64 = edges
        .iter()
        .map(|e| e.metric("ringcast_feed_reconnects_total"))
        .sum();
    println!(
        "fleet_netns: master {dead} SIGKILL: replica promoted in {failover:?}, all {CLIENTS} clients \
         converged in {took:?}, feed resubscribes {}; {told_down} clients told `feed down`, no edge \
         UP in HAProxy for {out_of_rotation:?}",
        resubscribed - resubscribes
    );
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(
            a.connects.len(),
            b.connects.len(),
            "a client was disconnected by the failover"
        );
    }
    assert!(resubscribed > resubscribes, "the edges resubscribed");
    // None should be out; a second allows for health checks timing out on a loaded box.
    assert!(
        out_of_rotation < Duration::from_secs(1),
        "no edge UP in HAProxy for {out_of_rotation:?} while one master failed over"
    );
    println!("fleet_netns: whole test {:?}", t_test.elapsed());
}
