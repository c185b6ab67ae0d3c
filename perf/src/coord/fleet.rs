//! Issue 12's pieces of a run: a Redis Cluster instead of one Redis (`--redis-cluster-masters`), HAProxy
//! in front of the server (`--via-haproxy`), and what each costs: per phase, every redis-server's and
//! HAProxy's CPU (utime+stime from /proc/PID/stat over the measured phase), Redis CPU per 10k ticks/s
//! published, HAProxy CPU per delivery.

use std::net::SocketAddrV4;

use serde_json::{Value, json};

use super::Guard;
use super::haproxy::{self, Haproxy};
use super::redis_cluster::{self, Cluster};
use super::server::{self, ServerOpts};
use crate::cli::FleetArgs;

#[derive(Default)]
pub(super) struct Fleet {
    pub(super) cluster: Option<Cluster>,
    pub(super) haproxy: Option<Haproxy>,
    shards: u32,
}

impl Fleet {
    /// Refuses what cannot be combined, before anything starts.
    pub(super) fn check(f: &FleetArgs, srv: &ServerOpts) -> Result<(), String> {
        if f.via_haproxy && srv.kind != "ringcast" {
            return Err("--via-haproxy needs --server ringcast (the run starts the server with --proxy-protocol behind it)".into());
        }
        if f.redis_cluster_masters > 0 && srv.kind == "node" {
            return Err("--redis-cluster-masters: the node baseline reads one Redis only (PUBLISH); use --server ringcast".into());
        }
        Ok(())
    }

    /// Redis: a cluster of `--redis-cluster-masters` (the server then gets `--redis-cluster`), or one
    /// node as `--start-redis`/`--redis` say. Returns the fleet, the URL the publisher and the server's
    /// `--redis` get, and the single node's pid.
    pub(super) fn redis(
        f: &FleetArgs,
        srv: &mut ServerOpts,
        guard: &Guard,
        cores: &[usize],
    ) -> Result<(Fleet, String, Option<i32>), String> {
        let mut fleet = Fleet {
            shards: f.feed_shards,
            ..Fleet::default()
        };
        if f.via_haproxy {
            srv.extra_args.extend(haproxy::server_args());
            srv.proxy_protocol = true;
        }
        if f.redis_cluster_masters == 0 {
            let (url, pid) = server::redis(srv, guard, cores)?;
            return Ok((fleet, url, pid));
        }
        let c = redis_cluster::start(f.redis_cluster_masters, guard, cores)?;
        srv.extra_args.extend([
            "--redis-cluster".to_string(),
            c.seeds.join(","),
            "--feed-shards".to_string(),
            f.feed_shards.to_string(),
        ]);
        let url = c.seeds[0].clone();
        fleet.cluster = Some(c);
        Ok((fleet, url, None))
    }

    /// The publisher's cluster: seeds and shards.
    pub(super) fn publisher_cluster(&self) -> Option<(Vec<String>, u32)> {
        self.cluster
            .as_ref()
            .map(|c| (c.seeds.clone(), self.shards))
    }

    /// HAProxy in front of the started server, if asked: the address the clients connect to.
    pub(super) fn front(
        &mut self,
        f: &FleetArgs,
        conns: u64,
        server: SocketAddrV4,
        guard: &Guard,
    ) -> Result<SocketAddrV4, String> {
        if !f.via_haproxy {
            return Ok(server);
        }
        let h = haproxy::start(f, conns, server, guard)?;
        let front = h.front;
        self.haproxy = Some(h);
        Ok(front)
    }

    /// The processes whose CPU each phase reports (`proc_cpu_pct`): every redis-server, HAProxy.
    pub(super) fn cpu_groups(
        &self,
        redis_url: &str,
        redis_pid: Option<i32>,
    ) -> Vec<(String, Vec<i32>)> {
        let mut g = Vec::new();
        if let Some(c) = &self.cluster {
            for (port, pid) in &c.nodes {
                g.push((format!("redis:{port}"), vec![*pid]));
            }
        } else if let Some(pid) = redis_pid {
            let port = redis_url.rsplit(':').next().unwrap_or("");
            g.push((format!("redis:{port}"), vec![pid]));
        }
        if let Some(h) = &self.haproxy {
            g.push(("haproxy".to_string(), h.pids.clone()));
        }
        g
    }

    /// The result's `fleet` object.
    pub(super) fn json(&self) -> Value {
        json!({
            "redis": match &self.cluster {
                Some(c) => c.json(self.shards),
                None => json!({"masters": 0, "mode": "one redis-server, PUBLISH"}),
            },
            "haproxy": self.haproxy.as_ref().map(|h| h.json.clone()),
        })
    }
}

/// Adds the derived figures to each phase (from its `proc_cpu_pct`) and prints one line per phase.
pub(super) fn annotate(phases: &mut [Value], fleet: &Fleet) {
    for p in phases.iter_mut() {
        let Some(cpu) = p["proc_cpu_pct"].as_object().cloned() else {
            continue;
        };
        let rate = p["publish_rate"].as_f64().unwrap_or(0.0);
        let redis: Vec<(String, f64)> = cpu
            .iter()
            .filter(|(k, _)| k.starts_with("redis:"))
            .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(0.0)))
            .collect();
        let mut line = format!("{:>12}:", p["name"].as_str().unwrap_or(""));
        if !redis.is_empty() {
            let total: f64 = redis.iter().map(|r| r.1).sum();
            let per10k = if rate > 0.0 {
                total / (rate / 1e4)
            } else {
                0.0
            };
            if p["redis_cpu_pct"].is_null() {
                p["redis_cpu_pct"] = json!(total);
            }
            p["redis_cpu_pct_total"] = json!(total);
            p["redis_cpu_pct_per_10k_ticks_s"] = json!(per10k);
            let each: Vec<String> = redis.iter().map(|(k, v)| format!("{k} {v:.1}%")).collect();
            line += &format!(
                " redis {total:.1}% CPU ({}) at {rate:.0} ticks/s = {per10k:.1}% of a core per 10k ticks/s, {:.0} messages/s;",
                each.join(", "),
                p["publish_messages"].as_f64().unwrap_or(0.0)
                    / p["duration_s"].as_f64().unwrap_or(1.0).max(1e-9)
            );
        }
        if let Some(h) = cpu.get("haproxy").and_then(|v| v.as_f64()) {
            let wall = p["duration_s"].as_f64().unwrap_or(1.0);
            let deliveries = p["deliveries"].as_f64().unwrap_or(0.0);
            let ns = if deliveries > 0.0 {
                h / 100.0 * wall * 1e9 / deliveries
            } else {
                0.0
            };
            p["haproxy_cpu_pct"] = json!(h);
            p["haproxy_cpu_ns_per_delivery"] = json!(ns);
            line += &format!(" haproxy {h:.1}% CPU, {ns:.0} ns/delivery;");
        }
        if fleet.cluster.is_some() || fleet.haproxy.is_some() || !redis.is_empty() {
            eprintln!("{line}");
        }
    }
}
