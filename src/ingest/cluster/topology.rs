//! Which master owns which slot (CLUSTER SLOTS from the seeds), and command connections routed by slot
//! with MOVED/ASK and failover handled by rediscovering and trying again.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, ConnectionInfo, RedisError, Value};

use crate::ingest::redis_tls;

use crate::secret::{Redacted, scrub};

/// TCP connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Read/write timeout of a command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`Router::in_slot`] keeps rediscovering while a slot has no reachable master (a failover).
const FAILOVER_WAIT: Duration = Duration::from_secs(10);

/// A cluster node, `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Why the cluster could not be used. Grouped by who is at fault.
#[derive(Debug)]
pub enum ClusterError {
    /// The operator's `--redis-cluster` is wrong (`url` redacted, `error` scrubbed).
    BadUrl { url: String, error: String },
    /// No seed answered CLUSTER SLOTS (each seed's error, scrubbed).
    Unreachable(Vec<String>),
    /// A slot no master serves (the cluster is down or being reconfigured).
    Uncovered(u16),
    /// A node refused a command or the connection failed (scrubbed).
    Redis { node: Node, error: String },
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::BadUrl { url, error } => write!(
                f,
                "--redis-cluster (RINGCAST_REDIS_CLUSTER): `{url}` is not a Redis URL: {error}"
            ),
            ClusterError::Unreachable(errors) => write!(
                f,
                "no Redis Cluster seed answered CLUSTER SLOTS: {}",
                errors.join("; ")
            ),
            ClusterError::Uncovered(slot) => {
                write!(f, "no master serves slot {slot} (cluster down?)")
            }
            ClusterError::Redis { node, error } => write!(f, "Redis node {node}: {error}"),
        }
    }
}

impl std::error::Error for ClusterError {}

/// The seeds, parsed: their connection settings (address, user, password, TLS) and the text to scrub.
#[derive(Clone)]
pub struct Seeds {
    infos: Vec<ConnectionInfo>,
    /// The `--redis-cluster` text: what error messages are scrubbed of.
    list: String,
    /// `rediss://` seeds: every node is reached over TLS, trusting what this configuration trusts.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Seeds {
    /// The seeds of `--redis-cluster`; `rediss://` ones (all or none) trust `ca` (PEM) if given, else the
    /// system's roots.
    pub fn parse(urls: &[String], ca: Option<&[u8]>) -> Result<Seeds, ClusterError> {
        let list = urls.join(",");
        let mut infos = Vec::new();
        for url in urls {
            let bad = |error: String| ClusterError::BadUrl {
                url: Redacted(url).to_string(),
                error: scrub(&error, url),
            };
            let client = redis_tls::client(url, ca).map_err(|e| bad(e.to_string()))?;
            let info = client.get_connection_info().clone();
            let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
            match info.addr() {
                ConnectionAddr::Tcp(..) | ConnectionAddr::TcpTls { .. } => {}
                _ => {
                    return Err(bad(
                        "only redis://host:port or rediss://host:port seeds".into()
                    ));
                }
            }
            if infos.first().is_some_and(|f: &ConnectionInfo| {
                matches!(f.addr(), ConnectionAddr::TcpTls { .. }) != tls
            }) {
                return Err(bad(
                    "all seeds redis:// or all rediss:// (TLS), not a mix".into()
                ));
            }
            infos.push(info);
        }
        let Some(first) = infos.first() else {
            return Err(ClusterError::BadUrl {
                url: String::new(),
                error: "no seed URL".into(),
            });
        };
        let tls = match first.addr() {
            ConnectionAddr::TcpTls { .. } => Some(redis_tls::client_config(ca).map_err(
                |error| ClusterError::BadUrl {
                    url: Redacted(&list).to_string(),
                    error,
                },
            )?),
            _ => None,
        };
        Ok(Seeds { infos, list, tls })
    }

    /// The TLS configuration of the nodes' connections, if the seeds are `rediss://`.
    pub fn tls(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.tls.as_ref()
    }

    /// The seeds' addresses.
    pub fn nodes(&self) -> Vec<Node> {
        self.infos
            .iter()
            .filter_map(|i| match i.addr() {
                ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                    Some(Node {
                        host: host.clone(),
                        port: *port,
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// Connection settings for `node`: the first seed's user, password and TLS settings, `node`'s address.
    pub fn info(&self, node: &Node) -> ConnectionInfo {
        let mut addr = self.infos[0].addr().clone();
        if let ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } =
            &mut addr
        {
            *host = node.host.clone();
            *port = node.port;
        }
        self.infos[0].clone().set_addr(addr)
    }

    /// The user name and password to AUTH with, if any.
    pub fn credentials(&self) -> (Option<String>, Option<String>) {
        let r = self.infos[0].redis_settings();
        (
            r.username().map(String::from),
            r.password().map(String::from),
        )
    }

    /// `text` without any seed's password.
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, &self.list)
    }

    /// A command connection to `node` with bounded connect, read and write times.
    pub fn connect(&self, node: &Node) -> Result<redis::Connection, RedisError> {
        let client = redis::Client::open(self.info(node))?;
        let con = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        con.set_read_timeout(Some(COMMAND_TIMEOUT))?;
        con.set_write_timeout(Some(COMMAND_TIMEOUT))?;
        Ok(con)
    }

    fn error(&self, node: &Node, e: &RedisError) -> ClusterError {
        ClusterError::Redis {
            node: node.clone(),
            error: self.scrub(&super::super::explain(e)),
        }
    }
}

/// Slot ranges and their masters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// `(first slot, last slot, master)`, sorted.
    ranges: Vec<(u16, u16, Node)>,
}

impl Topology {
    /// Ask `candidates` (then the seeds) in turn for CLUSTER SLOTS; the first answer wins.
    pub fn discover(seeds: &Seeds, candidates: &[Node]) -> Result<Topology, ClusterError> {
        let mut errors = Vec::new();
        let mut tried = Vec::new();
        for node in candidates.iter().cloned().chain(seeds.nodes()) {
            if tried.contains(&node) {
                continue;
            }
            tried.push(node.clone());
            let answer = seeds
                .connect(&node)
                .and_then(|mut con| redis::cmd("CLUSTER").arg("SLOTS").query::<Value>(&mut con));
            match answer {
                Ok(v) => match Topology::from_slots(&v, &node) {
                    Some(t) if !t.ranges.is_empty() => return Ok(t),
                    _ => errors.push(format!("{node}: no slots in the answer to CLUSTER SLOTS")),
                },
                Err(e) => errors.push(format!(
                    "{node}: {}",
                    seeds.scrub(&super::super::explain(&e))
                )),
            }
        }
        Err(ClusterError::Unreachable(errors))
    }

    /// Parse a CLUSTER SLOTS reply: `[[first, last, [host, port, id…], replicas…], …]`. An empty host means
    /// the node that answered.
    pub fn from_slots(v: &Value, asked: &Node) -> Option<Topology> {
        let Value::Array(entries) = v else {
            return None;
        };
        let mut ranges = Vec::new();
        for e in entries {
            let Value::Array(parts) = e else { return None };
            let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(master))) =
                (parts.first(), parts.get(1), parts.get(2))
            else {
                return None;
            };
            let host = match master.first() {
                Some(Value::BulkString(h)) if !h.is_empty() && h != b"?" => {
                    String::from_utf8_lossy(h).into_owned()
                }
                _ => asked.host.clone(),
            };
            let Some(Value::Int(port)) = master.get(1) else {
                return None;
            };
            ranges.push((
                u16::try_from(*first).ok()?,
                u16::try_from(*last).ok()?,
                Node {
                    host,
                    port: u16::try_from(*port).ok()?,
                },
            ));
        }
        ranges.sort();
        Some(Topology { ranges })
    }

    /// The master serving `slot`.
    pub fn owner(&self, slot: u16) -> Option<&Node> {
        self.ranges
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .map(|(_, _, n)| n)
    }

    /// Every master, once.
    pub fn masters(&self) -> Vec<Node> {
        let mut out: Vec<Node> = self.ranges.iter().map(|r| r.2.clone()).collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Commands routed by slot, one connection per master, kept open.
pub struct Router {
    pub seeds: Seeds,
    topology: Topology,
    cons: HashMap<Node, redis::Connection>,
}

impl Router {
    pub fn new(seeds: Seeds) -> Result<Router, ClusterError> {
        let topology = Topology::discover(&seeds, &[])?;
        Ok(Router {
            seeds,
            topology,
            cons: HashMap::new(),
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Run `f` on the connection to the master of `slot`. On MOVED/ASK/CLUSTERDOWN or a failed connection:
    /// rediscover and try again, for up to `FAILOVER_WAIT` (a replica's promotion takes about the cluster's
    /// node timeout); any other refusal is returned at once.
    pub fn in_slot<T>(
        &mut self,
        slot: u16,
        mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, ClusterError> {
        let deadline = Instant::now() + FAILOVER_WAIT;
        loop {
            let err = match self.topology.owner(slot).cloned() {
                None => ClusterError::Uncovered(slot),
                Some(node) => {
                    let result = match self.cons.get_mut(&node) {
                        Some(con) => f(con),
                        None => match self.seeds.connect(&node) {
                            Ok(con) => f(self.cons.entry(node.clone()).or_insert(con)),
                            Err(e) => Err(e),
                        },
                    };
                    match result {
                        Ok(v) => return Ok(v),
                        Err(e) if e.is_cluster_error() || is_connection_trouble(&e) => {
                            self.cons.remove(&node);
                            self.seeds.error(&node, &e)
                        }
                        Err(e) => return Err(self.seeds.error(&node, &e)),
                    }
                }
            };
            if Instant::now() >= deadline {
                return Err(err);
            }
            tracing::debug!(error = %err, "cluster command failed; rediscovering");
            std::thread::sleep(Duration::from_millis(100));
            if let Ok(t) = Topology::discover(&self.seeds, &self.topology.masters()) {
                self.topology = t;
            }
        }
    }
}

/// Whether a Redis error means the connection is unusable.
pub fn is_connection_trouble(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_reply() {
        let node = |h: &str, p: i64| {
            Value::Array(vec![
                Value::BulkString(h.as_bytes().to_vec()),
                Value::Int(p),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let v = Value::Array(vec![
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                node("10.0.0.2", 7001),
            ]),
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("", 7000),
                node("r", 7003),
            ]),
        ]);
        let asked = Node {
            host: "10.0.0.1".into(),
            port: 7000,
        };
        let t = Topology::from_slots(&v, &asked).unwrap();
        assert_eq!(t.owner(0), Some(&asked));
        assert_eq!(t.owner(10922).unwrap().to_string(), "10.0.0.2:7001");
        assert_eq!(t.owner(16000), None);
        assert_eq!(t.masters().len(), 2);
    }
}
