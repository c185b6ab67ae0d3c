//! The cluster ingest thread: discover, subscribe one connection per master, snapshot every shard, stream;
//! on any trouble announce the outage once, rediscover and start over (the snapshot then brings every
//! client to the latest values, through the same `FeedEvent::Snapshot` a single-node reconnect sends).
//!
//! Each subscriber connection has a reader thread (blocking reads, a sans-IO RESP decoder) that hands
//! messages to the ingest thread over a channel; the ingest thread parses ticks and feeds the workers as
//! the single-node ingest does.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::resp::{self, Resp};
use super::topology::{Node, Seeds, Topology, is_connection_trouble};
use super::{ClusterConfig, ShardKeys};
use crate::fanout::{FeedSender, FetchRequest, PreparedFrame, Symbol};
use crate::ingest::backoff::Backoff;
use crate::ingest::rng::XorShift;
use crate::ingest::subscriber::Ingest;
use crate::ingest::{IngestConfig, IngestStats, Keys, StartError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Read timeout of the reader threads and of the ingest thread's wait: how quickly `stop` is noticed.
const POLL: Duration = Duration::from_millis(200);
/// After this long without a byte from a master, PING it.
const IDLE_PING: Duration = Duration::from_secs(15);
/// Reconnect back-off: a failover takes about the cluster's node timeout, so retry sooner than the
/// single-node ingest does.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// What a reader thread hands the ingest thread.
enum Incoming {
    /// A message on `channel` (sharded, plain or matched by the user pattern).
    Message { channel: Vec<u8>, payload: Vec<u8> },
    /// The connection to `node` failed or Redis unsubscribed it (a slot moved); the text says which.
    Lost(String),
}

/// Start the cluster ingest thread (see [`crate::ingest::start_with_fetches`]).
pub fn start(
    cfg: IngestConfig,
    cluster: ClusterConfig,
    workers: Vec<FeedSender>,
    fetches: Option<Receiver<FetchRequest>>,
    stats: Arc<IngestStats>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, StartError> {
    let seeds = Seeds::parse(&cluster.seeds).map_err(|e| StartError::BadCluster(e.to_string()))?;
    let client = redis::Client::open(seeds.info(&seeds.nodes()[0]))
        .map_err(|e| StartError::BadCluster(seeds.scrub(&e.to_string())))?;
    let shards = ShardKeys::all(&cfg.prefix, cluster.shards);
    let sink = Ingest::new(cfg, client, workers, fetches, stats, stop);
    let ingest = ClusterIngest {
        sink,
        seeds,
        shards,
        known: Vec::new(),
    };
    std::thread::Builder::new()
        .name("ringcast-ingest".into())
        .spawn(move || ingest.run())
        .map_err(StartError::Spawn)
}

struct ClusterIngest {
    /// The single-node ingest's tick handling (parse once, frames once, snapshot/status/retire events).
    sink: Ingest,
    seeds: Seeds,
    shards: Vec<ShardKeys>,
    /// The masters of the last topology: asked first when rediscovering.
    known: Vec<Node>,
}

/// A session's subscriber connections: their reader threads stop and are joined on drop.
struct Readers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// The readers' sockets, shut down on drop so that a blocked read returns at once.
    streams: Vec<TcpStream>,
}

impl Drop for Readers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in &self.streams {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl ClusterIngest {
    fn run(mut self) {
        let mut backoff = Backoff::with_range(RETRY_MIN, RETRY_MAX, XorShift::from_clock());
        while !self.sink.stopping() {
            match self.session(&mut backoff) {
                Ok(()) => break,
                Err(why) => {
                    let why = self.seeds.scrub(&why);
                    self.sink.stats.redis_up.store(false, Ordering::Relaxed);
                    if !self.sink.down_announced {
                        tracing::warn!(error = %why, "Redis Cluster feed down; rediscovering");
                        self.sink.broadcast_status(false);
                    } else {
                        tracing::debug!(error = %why, "Redis Cluster reconnect failed");
                    }
                    self.sink.sleep(backoff.next_delay());
                }
            }
        }
        self.sink.stats.redis_up.store(false, Ordering::Relaxed);
        tracing::debug!("cluster ingest thread stopped");
    }

    /// One session: `Ok` when stopped, `Err(why)` when it must start over.
    fn session(&mut self, backoff: &mut Backoff) -> Result<(), String> {
        let topology = Topology::discover(&self.seeds, &self.known).map_err(|e| e.to_string())?;
        self.known = topology.masters();
        let mut owned: BTreeMap<Node, Vec<ShardKeys>> = BTreeMap::new();
        for k in &self.shards {
            let node = topology
                .owner(k.slot)
                .ok_or_else(|| format!("no master serves slot {} ({})", k.slot, k.ticks))?;
            owned.entry(node.clone()).or_default().push(k.clone());
        }
        // Subscribe first, then read the hashes: a tick published in between is in both, never in neither.
        let (tx, rx) = mpsc::channel();
        let mut readers = Readers {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            streams: Vec::new(),
        };
        let keys = Keys::new(&self.sink.cfg.prefix);
        for (i, (node, shards)) in owned.iter().enumerate() {
            let (stream, rest) = self
                .subscribe(node, shards, (i == 0).then_some(&keys))
                .map_err(|e| format!("subscribing on {node}: {e}"))?;
            if let Ok(clone) = stream.try_clone() {
                readers.streams.push(clone);
            }
            let (tx, stop, node) = (tx.clone(), readers.stop.clone(), node.clone());
            let t = std::thread::Builder::new()
                .name("ringcast-ingest-shard".into())
                .spawn(move || read_loop(stream, rest, &node, &tx, &stop))
                .map_err(|e| format!("cannot start a reader thread: {e}"))?;
            readers.threads.push(t);
        }
        drop(tx);
        let snapshot = self.snapshot(&owned)?;
        let symbols = snapshot.len();
        if self.sink.connected_once {
            IngestStats::add(&self.sink.stats.reconnects, 1);
        }
        self.sink.connected_once = true;
        backoff.reset();
        self.sink.stats.redis_up.store(true, Ordering::Relaxed);
        let masters: Vec<String> = owned.keys().map(Node::to_string).collect();
        if self.sink.down_announced {
            tracing::info!(masters = ?masters, symbols, "Redis Cluster feed up again");
            self.sink.broadcast_status(true);
        } else {
            tracing::info!(masters = ?masters, shards = self.shards.len(), symbols, "subscribed to the sharded tick feed");
        }
        self.sink.send_snapshot(snapshot);

        let mut fetch_cons: HashMap<Node, redis::Connection> = HashMap::new();
        loop {
            if self.sink.stopping() {
                return Ok(());
            }
            self.answer_fetches(&topology, &mut fetch_cons);
            match rx.recv_timeout(POLL) {
                Ok(Incoming::Message { channel, payload }) => {
                    self.dispatch(&keys, &channel, &payload)
                }
                Ok(Incoming::Lost(why)) => return Err(why),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err("every reader stopped".into()),
            }
        }
    }

    fn dispatch(&mut self, keys: &Keys, channel: &[u8], payload: &[u8]) {
        let channel = String::from_utf8_lossy(channel);
        if self.shards.iter().any(|k| k.ticks == channel) {
            self.sink.on_ticks(payload);
        } else if channel == keys.control || self.shards.iter().any(|k| k.control == channel) {
            self.sink.on_control(payload);
        } else if let Some(user) = channel.strip_prefix(keys.user_prefix.as_str()) {
            self.sink.on_user(user, payload);
        }
    }

    /// Connect to `node`, AUTH, SSUBSCRIBE its shards' channels (and, on one connection, SUBSCRIBE the plain
    /// control channel and PSUBSCRIBE the per-user channels: a plain PUBLISH reaches every node). Returns
    /// the stream and any bytes read past the confirmations.
    fn subscribe(
        &self,
        node: &Node,
        shards: &[ShardKeys],
        plain: Option<&Keys>,
    ) -> Result<(TcpStream, Vec<u8>), String> {
        let addr: SocketAddr = (node.host.as_str(), node.port)
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("no address")?;
        let mut stream =
            TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(COMMAND_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(COMMAND_TIMEOUT)))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let mut expect = 0;
        let (user, password) = self.seeds.credentials();
        if let Some(password) = password {
            let mut auth = vec!["AUTH".to_string()];
            auth.extend(user);
            auth.push(password);
            out.extend(resp::encode(&auth));
            expect += 1;
        }
        // One SSUBSCRIBE per shard: the channels of one command must share a slot.
        for k in shards {
            out.extend(resp::encode(&["SSUBSCRIBE", &k.ticks, &k.control]));
            expect += 2;
        }
        if let Some(keys) = plain {
            out.extend(resp::encode(&["SUBSCRIBE", keys.control.as_str()]));
            out.extend(resp::encode(&[
                "PSUBSCRIBE".to_string(),
                format!("{}*", keys.user_prefix),
            ]));
            expect += 2;
        }
        stream.write_all(&out).map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        while expect > 0 {
            match resp::decode(&buf).map_err(|e| e.to_string())? {
                Some((value, used)) => {
                    buf.drain(..used);
                    match value {
                        Resp::Error(e) => return Err(format!("Redis answered: {e}")),
                        Resp::Simple(_) => expect -= 1, // +OK to AUTH
                        Resp::Array(Some(items)) => {
                            let kind = items.first().and_then(Resp::bytes).unwrap_or_default();
                            if matches!(kind, b"ssubscribe" | b"subscribe" | b"psubscribe") {
                                expect -= 1;
                            }
                        }
                        _ => {}
                    }
                }
                None => {
                    let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
                    if n == 0 {
                        return Err("connection closed while subscribing".into());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
        stream
            .set_read_timeout(Some(POLL))
            .map_err(|e| e.to_string())?;
        Ok((stream, buf))
    }

    /// HGETALL every shard's hash on its master: every stored tick, validated, frames built once.
    fn snapshot(
        &mut self,
        owned: &BTreeMap<Node, Vec<ShardKeys>>,
    ) -> Result<Vec<(Symbol, PreparedFrame)>, String> {
        let mut out = Vec::new();
        for (node, shards) in owned {
            let mut con = self
                .seeds
                .connect(node)
                .map_err(|e| format!("snapshot from {node}: {e}"))?;
            for k in shards {
                let entries: Vec<(Vec<u8>, Vec<u8>)> = match redis::cmd("HGETALL")
                    .arg(&k.ticks)
                    .query(&mut con)
                {
                    Ok(e) => e,
                    Err(e) if e.is_cluster_error() || is_connection_trouble(&e) => {
                        return Err(format!("snapshot of {} from {node}: {e}", k.ticks));
                    }
                    Err(e) => {
                        IngestStats::add(&self.sink.stats.snapshot_failures, 1);
                        tracing::warn!(key = %k.ticks, error = %self.seeds.scrub(&e.to_string()), "cannot read a shard's latest-value hash; its symbols wait for live ticks");
                        continue;
                    }
                };
                for (field, value) in &entries {
                    out.extend(self.sink.stored_tick(field, value));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Workers' fetch requests: one HMGET per shard on its master.
    fn answer_fetches(&mut self, topology: &Topology, cons: &mut HashMap<Node, redis::Connection>) {
        let Some((requests, symbols)) = self.sink.pending_fetches() else {
            return;
        };
        let n = self.shards.len() as u32;
        let mut by_shard: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, s) in symbols.iter().enumerate() {
            by_shard.entry(super::shard_of(s, n)).or_default().push(i);
        }
        let mut values: Vec<Option<Vec<u8>>> = vec![None; symbols.len()];
        for (shard, idx) in by_shard {
            let k = &self.shards[shard as usize];
            let Some(node) = topology.owner(k.slot) else {
                continue;
            };
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(&k.ticks);
            for &i in &idx {
                cmd.arg(symbols[i].as_bytes());
            }
            let result = match cons.get_mut(node) {
                Some(con) => cmd.query::<Vec<Option<Vec<u8>>>>(con),
                None => self.seeds.connect(node).and_then(|con| {
                    cmd.query::<Vec<Option<Vec<u8>>>>(cons.entry(node.clone()).or_insert(con))
                }),
            };
            match result {
                Ok(got) => {
                    for (&i, v) in idx.iter().zip(got) {
                        values[i] = v;
                    }
                }
                Err(e) => {
                    cons.remove(node);
                    let error = self.seeds.scrub(&e.to_string());
                    self.sink.fetch_failed(&k.ticks, idx.len(), &error);
                }
            }
        }
        self.sink.answer_fetched(requests, symbols, values);
    }
}

/// A reader thread: decode what `node` sends, hand on messages; report a loss (EOF, error, an unsubscribe
/// by Redis, no answer to PING) once and stop.
fn read_loop(
    mut stream: TcpStream,
    mut buf: Vec<u8>,
    node: &Node,
    tx: &Sender<Incoming>,
    stop: &AtomicBool,
) {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut last_byte = Instant::now();
    let mut ping_sent: Option<Instant> = None;
    let lost = |why: String| {
        let _ = tx.send(Incoming::Lost(format!("{node}: {why}")));
    };
    while !stop.load(Ordering::Relaxed) {
        loop {
            match resp::decode(&buf) {
                Ok(Some((value, used))) => {
                    buf.drain(..used);
                    let sent = match classify(value) {
                        Some(Incoming::Lost(why)) => return lost(why),
                        Some(message) => tx.send(message).is_ok(),
                        None => true,
                    };
                    if !sent {
                        return; // the session ended
                    }
                }
                Ok(None) => break,
                Err(e) => return lost(e.to_string()),
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => return lost("connection closed".into()),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                last_byte = Instant::now();
                ping_sent = None;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                match ping_sent {
                    Some(at) if at.elapsed() >= COMMAND_TIMEOUT => {
                        return lost("no answer to PING".into());
                    }
                    None if last_byte.elapsed() >= IDLE_PING => {
                        if let Err(e) = stream.write_all(&resp::encode(&["PING"])) {
                            return lost(e.to_string());
                        }
                        ping_sent = Some(Instant::now());
                    }
                    _ => {}
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return lost(e.to_string()),
        }
    }
}

/// What one value from a subscribed connection means.
fn classify(value: Resp) -> Option<Incoming> {
    let items = match value {
        Resp::Array(Some(items)) => items,
        Resp::Error(e) => return Some(Incoming::Lost(format!("Redis answered: {e}"))),
        _ => return None,
    };
    let kind = items.first().and_then(Resp::bytes)?;
    let at = |i: usize| items.get(i).and_then(Resp::bytes).map(<[u8]>::to_vec);
    match kind {
        b"smessage" | b"message" => Some(Incoming::Message {
            channel: at(1)?,
            payload: at(2)?,
        }),
        b"pmessage" => Some(Incoming::Message {
            channel: at(2)?,
            payload: at(3)?,
        }),
        // Redis unsubscribes a shard channel whose slot moved away (resharding, failover).
        b"sunsubscribe" | b"unsubscribe" | b"punsubscribe" => Some(Incoming::Lost(format!(
            "Redis unsubscribed {}",
            String::from_utf8_lossy(&at(1).unwrap_or_default())
        ))),
        _ => None, // pong
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(items: &[&str]) -> Resp {
        Resp::Array(Some(
            items
                .iter()
                .map(|s| Resp::Bulk(Some(s.as_bytes().to_vec())))
                .collect(),
        ))
    }

    #[test]
    fn pushes_are_classified() {
        let Some(Incoming::Message { channel, payload }) =
            classify(array(&["smessage", "psx:ticks:{3}", "{}"]))
        else {
            panic!("smessage")
        };
        assert_eq!(
            (&channel[..], &payload[..]),
            (&b"psx:ticks:{3}"[..], &b"{}"[..])
        );
        let Some(Incoming::Message { channel, .. }) =
            classify(array(&["pmessage", "psx:user:*", "psx:user:7", "hi"]))
        else {
            panic!("pmessage")
        };
        assert_eq!(channel, b"psx:user:7");
        assert!(matches!(
            classify(array(&["sunsubscribe", "psx:ticks:{3}"])),
            Some(Incoming::Lost(why)) if why.contains("psx:ticks:{3}")
        ));
        assert!(matches!(
            classify(Resp::Error("MOVED 1 h:1".into())),
            Some(Incoming::Lost(_))
        ));
        assert!(classify(array(&["pong", ""])).is_none());
    }
}
