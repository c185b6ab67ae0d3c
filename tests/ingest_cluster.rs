//! `ringcast serve --redis-cluster` against a real Redis Cluster (3 masters + 3 replicas on 127.0.0.1,
//! never a mock): snapshot on subscribe, every tick delivered, ticks spread over every master, and after a
//! master is SIGKILLed (its replica promoted) every client converges to the latest values without being
//! disconnected. Prints the time to converge.
//!
//! Needs `redis-server` and `redis-cli` (Redis 7: sharded pub/sub). Every wait is bounded; every process
//! is stopped by PID on drop.

mod cluster_feed;
mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cluster_feed::*;
use common::cluster::RedisCluster;
use common::*;
use ringcast::ingest::cluster::{ShardKeys, shard_of};

#[test]
fn cluster_feed_survives_a_master_kill() {
    let t_test = Instant::now();
    let mut cluster = RedisCluster::start(3, 1, 1000);
    let seeds = cluster.seeds();
    let symbols = symbols();
    publish(&seeds, &symbols, 1);

    let server = serve(&seeds, &["--workers", "2"]);

    // Clients over several shards: all symbols, the even ones, the odd ones.
    let even: Vec<String> = symbols.iter().step_by(2).cloned().collect();
    let odd: Vec<String> = symbols.iter().skip(1).step_by(2).cloned().collect();
    let lists = [&symbols, &even, &odd, &symbols];
    let clients: Vec<Client> = lists.iter().map(|l| Client::connect(&server, l)).collect();
    // Snapshot on subscribe: the stored p=1 of every symbol.
    for (c, l) in clients.iter().zip(lists) {
        poll_until(Duration::from_secs(5), "the snapshot on subscribe", || {
            c.has_latest(l, 1)
        });
    }

    // Every tick delivered, in order per symbol.
    for p in 2..=6 {
        publish(&seeds, &symbols, p);
    }
    for (c, l) in clients.iter().zip(lists) {
        poll_until(Duration::from_secs(5), "every live tick", || {
            c.has_latest(l, 6)
        });
        let seen = c.seen.lock().unwrap();
        for s in l.iter() {
            let ps: Vec<i64> = seen
                .ticks
                .iter()
                .filter(|(sym, _)| sym == s)
                .map(|(_, p)| *p)
                .collect();
            assert_eq!(ps, [1, 2, 3, 4, 5, 6], "{s}");
        }
    }

    // Spread over every master: each holds some subscribed shard channels and served some SPUBLISHes;
    // one subscriber connection per master.
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "{masters:?}");
    let mut channels = 0;
    for &m in &masters {
        let mut con = cluster.con(m);
        let chans: Vec<String> = redis::cmd("PUBSUB")
            .arg("SHARDCHANNELS")
            .arg(format!("{PREFIX}*"))
            .query(&mut con)
            .unwrap();
        let spublish =
            info_field(&mut con, "commandstats", "cmdstat_spublish:").unwrap_or_default();
        let clients_on = info_field(&mut con, "clients", "pubsub_clients:");
        println!(
            "master {m}: {} shard channels, spublish {spublish}, pubsub_clients {clients_on:?}",
            chans.len()
        );
        assert!(!chans.is_empty(), "master {m} has no shard channel");
        assert!(spublish.starts_with("calls="), "master {m}: no SPUBLISH");
        channels += chans.len();
    }
    assert_eq!(
        channels,
        2 * SHARDS as usize,
        "ticks and control of every shard"
    );
    let all = ShardKeys::all(PREFIX, SHARDS);
    assert_eq!(all[7].ticks, "tc:ticks:{7}");

    // Resharding: move shard 0's slot to another master. Redis unsubscribes the shard's channels there
    // (an `sunsubscribe` push); the server resubscribes on the new owner and re-reads, clients stay.
    let from = cluster.owner_of(all[0].slot);
    let to = *masters.iter().find(|&&m| m != from).unwrap();
    let reconnects = server.metric("ringcast_feed_reconnects_total");
    let t_move = Instant::now();
    cluster.move_slot(all[0].slot, to);
    poll_until(
        Duration::from_secs(10),
        "a resubscribe after the slot move",
        || server.metric("ringcast_feed_reconnects_total") > reconnects,
    );
    let shard0: Vec<String> = symbols
        .iter()
        .filter(|s| shard_of(s, SHARDS) == 0)
        .cloned()
        .collect();
    publish(&seeds, &shard0, 100);
    wait_all(
        &clients[..1],
        &shard0,
        100,
        Duration::from_secs(10),
        "shard 0's tick after the move",
    );
    println!(
        "slot move: shard 0 served again {:?} after the move began",
        t_move.elapsed()
    );
    let chans: Vec<String> = redis::cmd("PUBSUB")
        .arg("SHARDCHANNELS")
        .arg(&all[0].ticks)
        .query(&mut cluster.con(to))
        .unwrap();
    assert_eq!(chans, [all[0].ticks.clone()], "subscribed on the new owner");
    publish(&seeds, &symbols, 6); // back to one value for every symbol

    // Kill a master (SIGKILL), wait for its replica's promotion, publish again.
    let victim = masters[0];
    let t_kill = Instant::now();
    cluster.kill(victim);
    let promoted = cluster.wait_failover(victim);
    let seeds_now = cluster.seeds();
    let t_publish = Instant::now();
    publish(&seeds_now, &symbols, 7);
    wait_all(
        &clients[..1],
        &symbols,
        7,
        Duration::from_secs(20),
        "every client to converge after the failover",
    );
    for (c, l) in clients.iter().zip(lists) {
        poll_until(Duration::from_secs(20), "convergence", || {
            c.has_latest(l, 7)
        });
    }
    let converged = t_kill.elapsed();
    for c in &clients {
        let seen = c.seen.lock().unwrap();
        assert!(!seen.dropped, "a client was disconnected");
    }
    println!(
        "failover: replica promoted {promoted:?} after the kill; clients converged {converged:?} after the kill, {:?} after the publish; statuses seen {:?}; reconnects {}",
        t_publish.elapsed(),
        clients[0].seen.lock().unwrap().statuses,
        server.metric("ringcast_feed_reconnects_total"),
    );

    // A tick published after convergence flows live again.
    publish(&seeds_now, &symbols, 8);
    for (c, l) in clients.iter().zip(lists) {
        poll_until(
            Duration::from_secs(5),
            "live ticks after the failover",
            || c.has_latest(l, 8),
        );
    }
    println!("test took {:?}", t_test.elapsed());
}

/// A cluster that requires a password: the seed URL's password authenticates the subscriber connections
/// (AUTH in the server's own RESP code) and the CLI's; it appears in no log line or error.
#[test]
fn cluster_with_a_password() {
    let pw = "cluster-s3cret-pw";
    let cluster = RedisCluster::start_with_password(3, 0, 1000, Some(pw));
    let seeds = cluster.seeds();
    assert!(seeds.contains(pw));
    let symbols = symbols();
    publish(&seeds, &symbols, 1);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = ringcast_command(
        &[
            "--log",
            "debug",
            "serve",
            "--listen",
            &addr,
            "--redis-cluster",
            &seeds,
            "--prefix",
            PREFIX,
        ],
        &[],
    )
    .spawn()
    .unwrap();
    let captured = Captured::of(&mut child);
    let server = Server::adopt(child, addr.parse().unwrap());
    server.wait_feed_up();
    let client = Client::connect(&server, &symbols);
    poll_until(Duration::from_secs(5), "the snapshot", || {
        client.has_latest(&symbols, 1)
    });
    publish(&seeds, &symbols, 2);
    poll_until(Duration::from_secs(5), "live ticks", || {
        client.has_latest(&symbols, 2)
    });
    // retire through the cluster: HDEL on the shard's hash, SPUBLISH on its control channel.
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--redis-cluster", &seeds, "--prefix", PREFIX]);
        let out = ringcast_command(&all, &[]).output().unwrap();
        let text = output_text(&out);
        (out.status.code(), text)
    };
    let (code, text) = cli(&["retire", "T000"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("removed from tc:ticks:{"), "{text}");
    poll_until(Duration::from_secs(5), "the retire notice", || {
        client.seen.lock().unwrap().retired == ["T000"]
    });
    let (code, text) = cli(&["get", "T000,T001"]);
    assert_eq!(code, Some(1), "T000 is gone: {text}");
    assert!(
        text.starts_with("null\n{\"symbol\":\"T001\",\"p\":2}"),
        "{text}"
    );

    // feed --demo publishes into the shards: every symbol stored, spread over the shards.
    let (code, text) = cli(&[
        "feed",
        "--demo",
        "--symbols",
        "40",
        "--rate",
        "200",
        "--duration",
        "1s",
    ]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = cli(&["get", "--all"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.lines().count() >= 40 + symbols.len() - 1, "{text}");
    let mut shards_used = std::collections::HashSet::new();
    for port in cluster.masters() {
        let mut con = cluster.con(port);
        for k in ShardKeys::all(PREFIX, SHARDS) {
            let n: i64 = redis::cmd("HLEN")
                .arg(&k.ticks)
                .query(&mut con)
                .unwrap_or(0);
            if n > 0 {
                shards_used.insert(k.shard);
            }
        }
    }
    assert_eq!(shards_used.len(), SHARDS as usize, "{shards_used:?}");

    // A wrong password: refused, and neither password is printed.
    let wrong = seeds.replace(pw, "wrong-pw-xyz");
    let out = ringcast_command(
        &["get", "T000", "--redis-cluster", &wrong, "--prefix", PREFIX],
        &[],
    )
    .output()
    .unwrap();
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        !text.contains("wrong-pw-xyz") && !text.contains(pw),
        "{text}"
    );
    let log = captured.text();
    assert!(log.contains("subscribed to the sharded tick feed"), "{log}");
    assert!(!log.contains(pw), "{log}");
}

/// A password in `--redis-cluster` shows neither in the CLI's error nor in the server's log.
#[test]
fn cluster_passwords_stay_out_of_errors_and_logs() {
    let port = free_port();
    let list =
        format!("redis://:hunter2-cluster@127.0.0.1:{port},redis://u:swordfish-2@127.0.0.1:{port}");
    let out = ringcast_command(&["get", "EFERT", "--redis-cluster", &list], &[])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
    assert!(
        !text.contains("hunter2") && !text.contains("swordfish"),
        "{text}"
    );

    let mut child = ringcast_command(
        &[
            "--log",
            "debug",
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--redis-cluster",
            &list,
        ],
        &[],
    )
    .spawn()
    .unwrap();
    let captured = Captured::of(&mut child);
    let mut server = Server::process(child);
    poll_until(Duration::from_secs(10), "the feed-down warning", || {
        captured.text().contains("Redis Cluster feed down")
    });
    std::thread::sleep(Duration::from_millis(500));
    let _ = server.exited();
    let log = captured.text();
    assert!(
        !log.contains("hunter2") && !log.contains("swordfish"),
        "{log}"
    );

    // --redis-cluster wins over --redis (and RINGCAST_REDIS): the cluster is what was asked.
    let out = ringcast_command(
        &[
            "get",
            "X",
            "--redis",
            "redis://127.0.0.1:1",
            "--redis-cluster",
            &list,
        ],
        &[("RINGCAST_REDIS", "redis://127.0.0.1:2")],
    )
    .output()
    .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("CLUSTER SLOTS"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let _ = std::io::stdout().flush();
}

/// One master's failover does not pause the shards of the others: while a master is SIGKILLed and its
/// replica promoted, ticks published on the other masters' shards every 20 ms keep reaching a client with
/// no gap over 500 ms (plus the publisher's own longest round). Prints the longest gap; the failed
/// master's shards converge after. (The session loop before per-master sessions: ~3 s gaps.)
#[test]
fn healthy_shards_keep_flowing_while_a_master_fails_over() {
    let mut cluster = RedisCluster::start(3, 1, 1000);
    // Else Redis itself refuses every command on every master while a slot is uncovered (CLUSTERDOWN),
    // from the failure's detection to the promotion: the publisher could not publish.
    for port in cluster.live_ports() {
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("cluster-require-full-coverage")
            .arg("no")
            .query(&mut cluster.con(port))
            .unwrap();
    }
    let seeds = cluster.seeds();
    let symbols = symbols();
    publish(&seeds, &symbols, 1);
    let server = serve(&seeds, &[]);
    let victim = cluster.masters()[0];
    let all = ShardKeys::all(PREFIX, SHARDS);
    // The healthy masters' shards, with their connections (made now: the publisher thread owns them).
    let mut healthy: Vec<(redis::Connection, Vec<(ShardKeys, String)>)> = Vec::new();
    for port in cluster.masters().into_iter().filter(|&p| p != victim) {
        let mine: Vec<(ShardKeys, String)> = symbols
            .iter()
            .map(|s| (all[shard_of(s, SHARDS) as usize].clone(), s.clone()))
            .filter(|(k, _)| cluster.owner_of(k.slot) == port)
            .collect();
        healthy.push((cluster.con(port), mine));
    }
    let healthy_symbols: Vec<String> = healthy
        .iter()
        .flat_map(|(_, m)| m.iter().map(|(_, s)| s.clone()))
        .collect();
    assert!(!healthy_symbols.is_empty());
    let client = Client::connect(&server, &healthy_symbols);
    poll_until(Duration::from_secs(5), "the snapshot", || {
        client.has_latest(&healthy_symbols, 1)
    });

    let publishing = Arc::new(AtomicBool::new(true));
    let flag = publishing.clone();
    let publisher = std::thread::spawn(move || {
        let (mut p, mut refused) = (100, 0);
        let (mut slowest, mut at) = (Duration::ZERO, Instant::now());
        while flag.load(Ordering::Relaxed) {
            p += 1;
            slowest = slowest.max(at.elapsed());
            at = Instant::now();
            for (con, mine) in &mut healthy {
                for (k, s) in mine.iter() {
                    let tick = format!(r#"{{"symbol":"{s}","p":{p}}}"#);
                    let r: redis::RedisResult<()> = redis::pipe()
                        .atomic()
                        .hset(&k.ticks, s, &tick)
                        .ignore()
                        .cmd("SPUBLISH")
                        .arg(&k.ticks)
                        .arg(&tick)
                        .ignore()
                        .query(con);
                    refused += usize::from(r.is_err());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (p, refused, slowest)
    });
    std::thread::sleep(Duration::from_millis(500));
    let t_kill = Instant::now();
    // Meanwhile /readyz stays 200 (some shard streams; a balancer must not pull every edge, which all
    // read the same cluster) and /metrics counts the shards that do not.
    let watching = AtomicBool::new(true);
    let (promoted, (not_ready, most_down)) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let (mut not_ready, mut most_down) = (Vec::new(), 0f64);
            while watching.load(Ordering::Relaxed) {
                match server.try_get("/readyz") {
                    Ok((200, _)) => {}
                    other => not_ready.push(format!("{other:?}")),
                }
                if let Ok((200, text)) = server.try_get("/metrics") {
                    most_down = most_down.max(metric_sum(&text, "ringcast_feed_shards_down"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (not_ready, most_down)
        });
        cluster.kill(victim);
        let promoted = cluster.wait_failover(victim);
        std::thread::sleep(Duration::from_millis(1000));
        watching.store(false, Ordering::Relaxed);
        (promoted, watcher.join().unwrap())
    });
    assert!(
        not_ready.is_empty(),
        "/readyz while one master failed over: {not_ready:?}"
    );
    assert!(
        most_down > 0.0 && most_down < SHARDS as f64,
        "ringcast_feed_shards_down during the failover: at most {most_down}"
    );
    publishing.store(false, Ordering::Relaxed);
    let (last, refused, slowest) = publisher.join().unwrap();
    poll_until(Duration::from_secs(5), "the last tick", || {
        client.has_latest(&healthy_symbols, last)
    });
    let (gap, statuses) = {
        let seen = client.seen.lock().unwrap();
        let times: Vec<Instant> = seen
            .arrivals
            .iter()
            .copied()
            .filter(|t| *t >= t_kill - Duration::from_millis(200))
            .collect();
        let gap = times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        if let Some(w) = times.windows(2).max_by_key(|w| w[1] - w[0]) {
            println!(
                "longest gap began {:?} after the kill",
                w[0].saturating_duration_since(t_kill)
            );
        }
        (gap, seen.statuses.clone())
    };
    println!(
        "failover: replica promoted {promoted:?} after the kill; longest gap between ticks of the healthy masters' shards {gap:?}; statuses {statuses:?}; publishes refused {refused}; the publisher's longest round {slowest:?}"
    );
    assert_eq!(refused, 0, "the healthy masters refused publishes");
    // 500 ms over the publisher's own longest round (a loaded box can pause it too).
    assert!(
        gap < Duration::from_millis(500) + slowest,
        "healthy shards stalled {gap:?}"
    );
    // The failed master's shards converge too.
    let seeds_now = cluster.seeds();
    publish(&seeds_now, &symbols, 9999);
    let everyone = Client::connect(&server, &symbols);
    poll_until(
        Duration::from_secs(20),
        "convergence after the failover",
        || everyone.has_latest(&symbols, 9999),
    );
}
