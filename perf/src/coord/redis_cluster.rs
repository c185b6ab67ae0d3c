//! `--redis-cluster-masters N`: a Redis Cluster of N masters (no replicas) on free ports of 127.0.0.1,
//! pinned to the client cores like the single Redis of `--start-redis`: `redis-server --cluster-enabled
//! yes` each, the 16,384 slots split evenly among them (`CLUSTER ADDSLOTSRANGE`: also for N = 1 and 2,
//! which `redis-cli --cluster create` refuses), joined with `CLUSTER MEET`, ready once every node says
//! `cluster_state:ok` and knows the others. Stopped by PID at the end of the run.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::Guard;
use super::sys::{free_port, wait_until};
use crate::common::*;
use crate::publisher;

/// The started cluster.
pub(super) struct Cluster {
    /// (port, pid) of every master.
    pub(super) nodes: Vec<(u16, i32)>,
    /// `redis://127.0.0.1:PORT` of every node: the server's `--redis-cluster` and the publisher's seeds.
    pub(super) seeds: Vec<String>,
}

impl Cluster {
    pub(super) fn json(&self, shards: u32) -> Value {
        json!({"masters": self.nodes.len(), "ports": self.nodes.iter().map(|n| n.0).collect::<Vec<_>>(),
            "pids": self.nodes.iter().map(|n| n.1).collect::<Vec<_>>(), "feed_shards": shards,
            "replicas": 0})
    }
}

/// A free port whose cluster bus port (+10000) is free too.
fn node_port(taken: &[u16]) -> Result<u16, String> {
    for _ in 0..200 {
        let p = free_port()?;
        if p < 55_000
            && !taken.contains(&p)
            && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok()
        {
            return Ok(p);
        }
    }
    Err("no free port pair (port, port + 10000) for a cluster node".into())
}

fn query(url: &str, cmd: &mut redis::Cmd) -> Result<redis::Value, String> {
    let mut c = publisher::connect(url)?;
    cmd.query(&mut c).map_err(|e| format!("{url}: {e}"))
}

pub(super) fn start(masters: u32, guard: &Guard, cores: &[usize]) -> Result<Cluster, String> {
    let dir = guard.temp_dir("redis-cluster")?;
    let mut nodes = Vec::new();
    for _ in 0..masters {
        let port = node_port(&nodes.iter().map(|n: &(u16, i32)| n.0).collect::<Vec<_>>())?;
        let conf = dir.join(format!("nodes-{port}.conf"));
        let child = pinned_with_nofile(&mut Command::new("redis-server"), cores)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args([
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--loglevel",
                "warning",
            ])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
            // A lone master that never met another announces an empty host in CLUSTER SLOTS.
            .args(["--cluster-announce-ip", "127.0.0.1"])
            .arg("--cluster-config-file")
            .arg(&conf)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                format!("--redis-cluster-masters: cannot run redis-server from PATH: {e}")
            })?;
        guard.add(child.id(), "redis-server (cluster)");
        nodes.push((port, child.id() as i32));
    }
    let seeds: Vec<String> = nodes
        .iter()
        .map(|(p, _)| format!("redis://127.0.0.1:{p}"))
        .collect();
    for s in &seeds {
        wait_until(Duration::from_secs(10), || publisher::connect(s).is_ok())
            .map_err(|_| format!("cluster node {s} did not come up"))?;
    }
    let n = nodes.len() as u32;
    for (i, s) in seeds.iter().enumerate() {
        let (a, b) = (16384 * i as u32 / n, 16384 * (i as u32 + 1) / n - 1);
        query(s, redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(a).arg(b))?;
    }
    for (p, _) in &nodes[1..] {
        query(
            &seeds[0],
            redis::cmd("CLUSTER").arg("MEET").arg("127.0.0.1").arg(*p),
        )?;
    }
    let ready = |s: &String| {
        query(s, redis::cmd("CLUSTER").arg("INFO"))
            .ok()
            .and_then(|v| redis::from_redis_value::<String>(v).ok())
            .is_some_and(|info| {
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{n}\r"))
                    && info.contains("cluster_slots_ok:16384")
            })
    };
    wait_until(Duration::from_secs(30), || seeds.iter().all(ready))
        .map_err(|_| format!("the Redis Cluster of {n} masters did not form within 30 s"))?;
    eprintln!(
        "redis cluster: {n} master(s) on ports {:?} (pids {:?}), cores {cores:?}",
        nodes.iter().map(|n| n.0).collect::<Vec<_>>(),
        nodes.iter().map(|n| n.1).collect::<Vec<_>>()
    );
    Ok(Cluster { nodes, seeds })
}
