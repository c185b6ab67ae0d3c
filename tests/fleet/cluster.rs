//! A Redis Cluster of 3 masters + 3 replicas across three Redis host namespaces (two redis-server per
//! host, ports 7000 and 7001, each announcing its host's address), created with
//! `redis-cli --cluster create` from the root namespace. Every wait is bounded; every node is stopped by
//! PID on drop (and the namespace teardown kills anything left).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::netns::{Proc, in_ns};
use crate::common::cluster::slot_masters;
use crate::common::{TempDir, output_text, poll_until};

pub struct Cluster {
    /// Every node by address; `None` once killed.
    pub nodes: Vec<(SocketAddr, Option<Proc>)>,
    _dir: TempDir,
}

fn con(addr: SocketAddr) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://{addr}")).ok()?;
    let con = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    con.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    Some(con)
}

fn info(addr: SocketAddr, section: &str) -> String {
    con(addr)
        .and_then(|mut c| redis::cmd("INFO").arg(section).query(&mut c).ok())
        .unwrap_or_default()
}

/// `field` (e.g. `cmdstat_spublish:`) of `INFO section` on `addr`.
pub fn info_field(addr: SocketAddr, section: &str, field: &str) -> Option<String> {
    info(addr, section)
        .lines()
        .find_map(|l| l.trim().strip_prefix(field).map(String::from))
}

impl Cluster {
    /// `hosts`: (namespace, address) of each Redis host; two nodes on each.
    pub fn start(redis_server: &str, redis_cli: &str, hosts: &[(String, String)]) -> Cluster {
        let dir = TempDir::new("fleet-redis");
        let mut nodes = Vec::new();
        for (ns, host) in hosts {
            for port in [7000u16, 7001] {
                let conf = dir.0.join(format!("nodes-{host}-{port}.conf"));
                let child = in_ns(ns, redis_server)
                    .args(["--port", &port.to_string(), "--bind", host])
                    .args(["--protected-mode", "no", "--save", "", "--appendonly", "no"])
                    .args(["--cluster-enabled", "yes", "--cluster-announce-ip", host])
                    .arg("--cluster-config-file")
                    .arg(&conf)
                    .args(["--cluster-node-timeout", "1000"])
                    // A replica may take over however long its link was down (a fresh replica's is).
                    .args(["--cluster-replica-validity-factor", "0"])
                    .arg("--dir")
                    .arg(&dir.0)
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("start redis-server");
                nodes.push((format!("{host}:{port}").parse().unwrap(), Some(Proc(child))));
            }
        }
        let cluster = Cluster { nodes, _dir: dir };
        for (addr, _) in &cluster.nodes {
            poll_until(Duration::from_secs(10), "redis-server answers", || {
                con(*addr).is_some()
            });
        }
        let mut cmd = Command::new(redis_cli);
        cmd.args(["--cluster", "create"]);
        for (addr, _) in &cluster.nodes {
            cmd.arg(addr.to_string());
        }
        let out = cmd
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            output_text(&out)
        );
        cluster.wait_until("the cluster to form", |c| {
            c.all_ok()
                && c.masters().len() == 3
                && c.live().iter().all(|a| {
                    let i = info(*a, "replication");
                    i.contains("role:master") && i.contains("connected_slaves:1")
                        || i.contains("master_link_status:up")
                })
        });
        cluster
    }

    pub fn live(&self) -> Vec<SocketAddr> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.is_some())
            .map(|(a, _)| *a)
            .collect()
    }

    /// The `--redis-cluster` seeds: every node.
    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(|(a, _)| format!("redis://{a}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn all_ok(&self) -> bool {
        self.live()
            .iter()
            .all(|a| info_cluster(*a).contains("cluster_state:ok"))
    }

    /// The masters that serve slots, as a live node sees them (sorted).
    pub fn masters(&self) -> Vec<SocketAddr> {
        for addr in self.live() {
            let Some(mut c) = con(addr) else { continue };
            let Ok(slots) = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query::<Vec<redis::Value>>(&mut c)
            else {
                continue;
            };
            let mut out: Vec<SocketAddr> = slot_masters(&slots)
                .into_iter()
                .filter_map(|(host, port)| format!("{}:{port}", host?).parse().ok())
                .collect();
            out.sort();
            out.dedup();
            return out;
        }
        Vec::new()
    }

    /// A connection to a live node.
    pub fn con(&self, addr: SocketAddr) -> redis::Connection {
        con(addr).unwrap_or_else(|| panic!("node {addr} does not answer"))
    }

    /// SIGKILL the node at `addr` (by PID), like a crash.
    pub fn kill(&mut self, addr: SocketAddr) {
        let node = self
            .nodes
            .iter_mut()
            .find(|(a, _)| *a == addr)
            .and_then(|(_, n)| n.take())
            .unwrap_or_else(|| panic!("no live node at {addr}"));
        drop(node);
    }

    /// Wait until `masters()` no longer names `dead` and every live node says `cluster_state:ok`.
    pub fn wait_failover(&self, dead: SocketAddr) {
        self.wait_until("a replica to be promoted", |c| {
            let m = c.masters();
            m.len() == 3 && !m.contains(&dead) && c.all_ok()
        });
    }

    fn wait_until(&self, what: &str, mut ok: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok(self) {
            assert!(Instant::now() < deadline, "waited 30 s for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn info_cluster(addr: SocketAddr) -> String {
    con(addr)
        .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query(&mut c).ok())
        .unwrap_or_default()
}
