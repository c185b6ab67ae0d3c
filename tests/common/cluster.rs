//! A real Redis Cluster on 127.0.0.1 for tests: `masters × (1 + replicas)` redis-server processes with
//! `--cluster-enabled yes` on free ports, joined by `redis-cli --cluster create … --cluster-yes`. Every
//! wait is bounded; every node is stopped by PID on drop (also when the test fails), and a node can be
//! SIGKILLed to force a failover.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringcast::cli::redis_server::RedisServer;

use super::TempDir;
use super::redis_tls::TestCerts;

/// How long the cluster gets to form, and a replica to be promoted.
const FORM_WITHIN: Duration = Duration::from_secs(20);

pub struct RedisCluster {
    /// Every node by port; `None` once killed.
    pub nodes: Vec<(u16, Option<RedisServer>)>,
    /// `requirepass` of every node, if any.
    pub password: Option<String>,
    /// The CA of the nodes' certificates when they serve TLS only (`rediss://`).
    pub tls_ca: Option<Vec<u8>>,
    _dir: TempDir,
}

/// `redis-cli` next to `RINGCAST_REDIS_SERVER`, else on PATH.
fn redis_cli() -> String {
    RedisServer::binary()
        .and_then(|b| {
            let cli = b.with_file_name("redis-cli");
            cli.is_file().then(|| cli.display().to_string())
        })
        .unwrap_or_else(|| "redis-cli".into())
}

/// A port free on 127.0.0.1 whose cluster bus port (port + 10000) is free too, and neither of which
/// another cluster of this test process took.
fn node_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let port = RedisServer::free_port().expect("a free port");
        let Some(bus) = port.checked_add(10000) else {
            continue;
        };
        if taken.contains(&port)
            || taken.contains(&bus)
            || std::net::TcpListener::bind(("127.0.0.1", bus)).is_err()
        {
            continue;
        }
        taken.extend([port, bus]);
        return port;
    }
    panic!("no free port pair (port, port + 10000)")
}

fn con(port: u16, password: Option<&str>, ca: Option<&[u8]>) -> Option<redis::Connection> {
    let auth = password.map(|p| format!(":{p}@")).unwrap_or_default();
    let s = if ca.is_some() { "s" } else { "" };
    let url = format!("redis{s}://{auth}127.0.0.1:{port}");
    let client = ringcast::ingest::redis_tls::client(&url, ca).ok()?;
    let con = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    con.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    Some(con)
}

impl RedisCluster {
    /// Start the nodes, create the cluster (`--cluster-replicas replicas`) and wait until every node says
    /// `cluster_state:ok` and every master has its replicas attached. `node_timeout_ms` is the cluster's
    /// failure-detection time (a replica is promoted about then after its master dies).
    pub fn start(masters: usize, replicas: usize, node_timeout_ms: u64) -> RedisCluster {
        RedisCluster::start_with_password(masters, replicas, node_timeout_ms, None)
    }

    /// [`RedisCluster::start`] with `requirepass`/`masterauth` set to `password` on every node.
    pub fn start_with_password(
        masters: usize,
        replicas: usize,
        node_timeout_ms: u64,
        password: Option<&str>,
    ) -> RedisCluster {
        RedisCluster::start_with(masters, replicas, node_timeout_ms, password, None)
    }

    /// [`RedisCluster::start_with_password`], every node serving TLS only (clients, cluster bus and
    /// replication) with `tls`'s `server` certificate when given.
    pub fn start_with(
        masters: usize,
        replicas: usize,
        node_timeout_ms: u64,
        password: Option<&str>,
        tls: Option<&TestCerts>,
    ) -> RedisCluster {
        let tls_ca = tls.map(|t| std::fs::read(t.path("ca.crt")).unwrap());
        let dir = TempDir::new("redis-cluster");
        let timeout = node_timeout_ms.to_string();
        let mut nodes = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            let port = node_port();
            let conf = dir.0.join(format!("nodes-{port}.conf"));
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                conf.to_str().unwrap(),
                "--cluster-node-timeout",
                &timeout,
                // A replica may take over however long its link was down (a fresh replica's is).
                "--cluster-replica-validity-factor",
                "0",
                "--dir",
                dir.0.to_str().unwrap(),
            ];
            let node = match tls {
                None => RedisServer::start_with(port, &args),
                Some(t) => {
                    let mut all = args.to_vec();
                    all.extend(["--tls-cluster", "yes", "--tls-replication", "yes"]);
                    t.start_redis("server", port, &all)
                }
            }
            .unwrap_or_else(|e| panic!("{e}"));
            // Set after start: RedisServer waits for an unauthenticated PING.
            if let Some(p) = password {
                let mut c = con(port, None, tls_ca.as_deref()).expect("a fresh node answers");
                for key in ["masterauth", "requirepass"] {
                    super::config_set(&mut c, key, p);
                }
            }
            nodes.push((port, Some(node)));
        }
        let cluster = RedisCluster {
            nodes,
            password: password.map(String::from),
            tls_ca,
            _dir: dir,
        };
        let mut cmd = Command::new(redis_cli());
        if let Some(p) = password {
            cmd.env("REDISCLI_AUTH", p);
        }
        if let Some(t) = tls {
            cmd.args(["--tls", "--cacert"]).arg(t.path("ca.crt"));
        }
        cmd.args(["--cluster", "create"]);
        for (port, _) in &cluster.nodes {
            cmd.arg(format!("127.0.0.1:{port}"));
        }
        let out = cmd
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create (apt-get install -y redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_until(FORM_WITHIN, "the cluster to form", |c| {
            c.live_ports().iter().all(|p| c.state_ok(*p))
                && c.masters().len() == masters
                && c.masters().iter().all(|m| c.replicas_of(*m) >= replicas)
                && c.live_ports().iter().all(|p| c.synced(*p))
        });
        cluster
    }

    /// Every live node's URL (with the password, if any), comma-separated: the `--redis-cluster` seeds.
    pub fn seeds(&self) -> String {
        let auth = self
            .password
            .as_ref()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        self.live_ports()
            .iter()
            .map(|p| format!("{}://{auth}127.0.0.1:{p}", self.scheme()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `redis` or `rediss`.
    pub fn scheme(&self) -> &'static str {
        if self.tls_ca.is_some() {
            "rediss"
        } else {
            "redis"
        }
    }

    fn node_con(&self, port: u16) -> Option<redis::Connection> {
        con(port, self.password.as_deref(), self.tls_ca.as_deref())
    }

    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.is_some())
            .map(|(p, _)| *p)
            .collect()
    }

    /// A connection to a live node.
    pub fn con(&self, port: u16) -> redis::Connection {
        self.node_con(port)
            .unwrap_or_else(|| panic!("node {port} does not answer"))
    }

    fn state_ok(&self, port: u16) -> bool {
        self.node_con(port)
            .and_then(|mut c| {
                redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query::<String>(&mut c)
                    .ok()
            })
            .is_some_and(|info| info.contains("cluster_state:ok"))
    }

    /// The ports of the masters that serve slots, as a live node sees them (sorted).
    pub fn masters(&self) -> Vec<u16> {
        for port in self.live_ports() {
            let Some(mut c) = self.node_con(port) else {
                continue;
            };
            let Ok(slots) = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query::<Vec<redis::Value>>(&mut c)
            else {
                continue;
            };
            let mut out: Vec<u16> = slot_masters(&slots).into_iter().map(|(_, p)| p).collect();
            out.sort();
            out.dedup();
            return out;
        }
        Vec::new()
    }

    /// The port of the master serving `slot`.
    pub fn owner_of(&self, slot: u16) -> u16 {
        for port in self.live_ports() {
            let Some(mut c) = self.node_con(port) else {
                continue;
            };
            let Ok(redis::Value::Array(ranges)) = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query::<redis::Value>(&mut c)
            else {
                continue;
            };
            for range in ranges {
                if let redis::Value::Array(parts) = range
                    && let (Some(redis::Value::Int(a)), Some(redis::Value::Int(b))) =
                        (parts.first(), parts.get(1))
                    && (*a..=*b).contains(&i64::from(slot))
                    && let Some(redis::Value::Array(m)) = parts.get(2)
                    && let Some(redis::Value::Int(p)) = m.get(1)
                {
                    return *p as u16;
                }
            }
        }
        panic!("no node knows the owner of slot {slot}")
    }

    /// Move `slot` (and its keys) from its master to master `to`, the way `redis-cli --cluster reshard`
    /// does: IMPORTING/MIGRATING, MIGRATE the keys, then SETSLOT NODE on every master.
    pub fn move_slot(&self, slot: u16, to: u16) {
        let from = self.owner_of(slot);
        let id = |port: u16| -> String {
            redis::cmd("CLUSTER")
                .arg("MYID")
                .query(&mut self.con(port))
                .unwrap()
        };
        let (from_id, to_id) = (id(from), id(to));
        let setslot = |port: u16, args: &[&str]| {
            let () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(args)
                .query(&mut self.con(port))
                .unwrap_or_else(|e| panic!("SETSLOT {slot} {args:?} on {port}: {e}"));
        };
        setslot(to, &["IMPORTING", &from_id]);
        setslot(from, &["MIGRATING", &to_id]);
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(1000)
            .query(&mut self.con(from))
            .unwrap();
        if !keys.is_empty() {
            let () = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(to)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query(&mut self.con(from))
                .unwrap();
        }
        setslot(to, &["NODE", &to_id]);
        setslot(from, &["NODE", &to_id]);
        for m in self.masters() {
            if m != from && m != to {
                setslot(m, &["NODE", &to_id]);
            }
        }
        self.wait_until(FORM_WITHIN, "the slot move to spread", |c| {
            c.owner_of(slot) == to
        });
    }

    /// How many replicas `master` has attached (INFO replication).
    pub fn replicas_of(&self, master: u16) -> usize {
        self.node_con(master)
            .and_then(|mut c| {
                redis::cmd("INFO")
                    .arg("replication")
                    .query::<String>(&mut c)
                    .ok()
            })
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.trim().strip_prefix("connected_slaves:")?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Whether the node on `port` is a master or a replica whose link to its master is up (synced).
    fn synced(&self, port: u16) -> bool {
        self.node_con(port)
            .and_then(|mut c| {
                redis::cmd("INFO")
                    .arg("replication")
                    .query::<String>(&mut c)
                    .ok()
            })
            .is_some_and(|info| {
                info.contains("role:master") || info.contains("master_link_status:up")
            })
    }

    /// SIGKILL the node on `port` (by PID), like a crash.
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|(p, _)| *p == port)
            .and_then(|(_, n)| n.take())
            .unwrap_or_else(|| panic!("no live node on {port}"));
        node.kill();
    }

    /// Wait until `masters()` no longer names `dead` and every live node says `cluster_state:ok` (a
    /// replica was promoted); returns how long that took.
    pub fn wait_failover(&self, dead: u16) -> Duration {
        let t0 = Instant::now();
        self.wait_until(FORM_WITHIN, "a replica to be promoted", |c| {
            let m = c.masters();
            !m.is_empty() && !m.contains(&dead) && c.live_ports().iter().all(|p| c.state_ok(*p))
        });
        t0.elapsed()
    }

    pub fn wait_until(&self, within: Duration, what: &str, mut ok: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + within;
        while !ok(self) {
            assert!(Instant::now() < deadline, "waited {within:?} for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `2 × shards` symbols named `{letter}000`, `{letter}001`, …, two on each shard (FNV-1a mod `shards`).
pub fn two_symbols_per_shard(letter: char, shards: u32) -> Vec<String> {
    let mut per_shard: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for i in 0.. {
        let s = format!("{letter}{i:03}");
        let n = per_shard
            .entry(ringcast::ingest::cluster::shard_of(&s, shards))
            .or_default();
        if *n < 2 {
            *n += 1;
            out.push(s);
        }
        if out.len() == 2 * shards as usize {
            return out;
        }
    }
    unreachable!()
}

/// The master of each range of a `CLUSTER SLOTS` reply: its host (None if not text) and port.
pub fn slot_masters(slots: &[redis::Value]) -> Vec<(Option<String>, u16)> {
    slots
        .iter()
        .filter_map(|range| {
            let redis::Value::Array(parts) = range else {
                return None;
            };
            let Some(redis::Value::Array(m)) = parts.get(2) else {
                return None;
            };
            let host = match m.first() {
                Some(redis::Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
                Some(redis::Value::SimpleString(s)) => Some(s.clone()),
                _ => None,
            };
            let redis::Value::Int(port) = m.get(1)? else {
                return None;
            };
            Some((host, *port as u16))
        })
        .collect()
}

/// `ringcast publish --redis-cluster <seeds>` of one tick `{"symbol":s,"p":p}` per symbol, as one message
/// (a JSON array), stdout and stderr piped.
pub fn publish_command(
    seeds: &str,
    prefix: &str,
    shards: u32,
    symbols: &[String],
    p: i64,
) -> Command {
    let ticks: Vec<String> = symbols
        .iter()
        .map(|s| format!(r#"{{"symbol":"{s}","p":{p}}}"#))
        .collect();
    super::ringcast_command(
        &[
            "publish",
            &format!("[{}]", ticks.join(",")),
            "--redis-cluster",
            seeds,
            "--prefix",
            prefix,
            "--feed-shards",
            &shards.to_string(),
        ],
        &[],
    )
}
