//! The cluster ingest thread: one session per shard-owning master ([`super::session`], each on its own
//! thread), which fail and recover independently. When a master's session is lost (its master killed, a
//! failover, an error reply) only that master's shards are rediscovered, resubscribed and re-read; the
//! other masters' shards keep streaming meanwhile. When Redis moves one shard's slot away (an
//! `sunsubscribe`), only that shard moves.
//!
//! The ingest thread parses ticks and feeds the workers as the single-node ingest does (the same
//! [`Ingest`] sink); a recovered session's snapshot covers its shards only (`FeedEvent::Snapshot` merges).
//! The feed status is one for the whole feed: `down` as soon as any shard lost its subscription, `up`
//! once every shard is subscribed and read again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::session::{self, Incoming, Session};
use super::topology::{Node, Seeds, Topology};
use super::{ClusterConfig, ShardKeys};
use crate::fanout::{FeedSender, FetchRequest, PreparedFrame, Symbol};
use crate::ingest::backoff::Backoff;
use crate::ingest::rng::XorShift;
use crate::ingest::subscriber::Ingest;
use crate::ingest::{IngestConfig, IngestStats, Keys, StartError};

/// How long the ingest thread waits for a message at most: how quickly `stop` is noticed.
const POLL: Duration = Duration::from_millis(200);
/// Resubscribe back-off: a failover takes about the cluster's node timeout, so retry sooner than the
/// single-node ingest does.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_millis(500);

/// Start the cluster ingest thread (see [`crate::ingest::start_with_fetches`]); `ca` is `--redis-ca`.
pub fn start(
    cfg: IngestConfig,
    cluster: ClusterConfig,
    ca: Option<Vec<u8>>,
    workers: Vec<FeedSender>,
    fetches: Option<Receiver<FetchRequest>>,
    stats: Arc<IngestStats>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, StartError> {
    let seeds = Seeds::parse(&cluster.seeds, ca.as_deref())
        .map_err(|e| StartError::BadCluster(e.to_string()))?;
    let client = redis::Client::open(seeds.info(&seeds.nodes()[0]))
        .map_err(|e| StartError::BadCluster(seeds.scrub(&e.to_string())))?;
    let shards = ShardKeys::all(&cfg.prefix, cluster.shards);
    let keys = Keys::new(&cfg.prefix);
    stats.shards.store(shards.len() as u64, Ordering::Relaxed);
    stats
        .shards_down
        .store(shards.len() as u64, Ordering::Relaxed);
    let sink = Ingest::new(cfg, client, workers, fetches, stats, stop);
    let (tx, rx) = mpsc::channel();
    let ingest = ClusterIngest {
        sink,
        seeds,
        shards,
        keys,
        topology: Topology::default(),
        sessions: BTreeMap::new(),
        next_id: 0,
        tx,
        rx,
        retry_at: Instant::now(),
        backoff: Backoff::with_range(RETRY_MIN, RETRY_MAX, XorShift::from_clock()),
        fetch_cons: HashMap::new(),
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
    keys: Keys,
    /// The last topology discovered.
    topology: Topology,
    /// One session per master that owns shards (connecting or streaming).
    sessions: BTreeMap<Node, Session>,
    next_id: u64,
    /// The sessions' channel to this thread.
    tx: Sender<Incoming>,
    rx: Receiver<Incoming>,
    /// When shards without a session are next given one.
    retry_at: Instant,
    backoff: Backoff,
    /// Command connections answering fetch requests, per master.
    fetch_cons: HashMap<Node, redis::Connection>,
}

impl ClusterIngest {
    fn run(mut self) {
        while !self.sink.stopping() {
            if self.needs_repair() && Instant::now() >= self.retry_at {
                self.repair();
            }
            self.answer_fetches();
            let wait = if self.needs_repair() {
                self.retry_at
                    .saturating_duration_since(Instant::now())
                    .min(POLL)
            } else {
                POLL
            };
            match self.rx.recv_timeout(wait) {
                Ok(incoming) => self.on_incoming(incoming),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break, // never: `self.tx` lives
            }
            self.count_shards_down();
        }
        self.sessions.clear();
        self.sink.stats.redis_up.store(false, Ordering::Relaxed);
        tracing::debug!("cluster ingest thread stopped");
    }

    /// The shards no session holds.
    fn unassigned(&self) -> Vec<ShardKeys> {
        self.shards
            .iter()
            .filter(|k| {
                !self
                    .sessions
                    .values()
                    .any(|s| s.shards.iter().any(|o| o.shard == k.shard))
            })
            .cloned()
            .collect()
    }

    /// `shards_down` for `/readyz` and `/metrics`: the shards no ready (subscribed and read) session holds.
    fn count_shards_down(&self) {
        let streaming: usize = self
            .sessions
            .values()
            .filter(|s| s.ready)
            .map(|s| s.shards.len())
            .sum();
        let down = self.shards.len().saturating_sub(streaming) as u64;
        self.sink.stats.shards_down.store(down, Ordering::Relaxed);
    }

    fn needs_repair(&self) -> bool {
        !self.unassigned().is_empty() || !self.sessions.values().any(|s| s.plain)
    }

    fn session_mut(&mut self, id: u64) -> Option<&mut Session> {
        self.sessions.values_mut().find(|s| s.id == id)
    }

    fn on_incoming(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Message {
                id,
                channel,
                payload,
            } => {
                // A closed session's last messages are dropped: its replacement's snapshot covers them.
                if self.sessions.values().any(|s| s.id == id) {
                    self.dispatch(&channel, &payload);
                }
            }
            Incoming::Ready {
                id,
                entries,
                refused,
            } => self.on_ready(id, entries, refused),
            Incoming::Unsubscribed { id, channel } => {
                let channel = String::from_utf8_lossy(&channel).into_owned();
                let Some(s) = self.session_mut(id) else {
                    return;
                };
                let before = s.shards.len();
                s.shards
                    .retain(|k| k.ticks != channel && k.control != channel);
                if s.shards.len() < before {
                    tracing::info!(master = %s.node, %channel, "Redis moved a shard away; resubscribing it where it went");
                    self.retry_at = Instant::now();
                    self.failed(format!("Redis unsubscribed {channel}"));
                }
            }
            Incoming::Lost { id, why } => {
                let Some(node) = self
                    .sessions
                    .iter()
                    .find(|(_, s)| s.id == id)
                    .map(|(n, _)| n.clone())
                else {
                    return;
                };
                let lost = self.sessions.remove(&node).expect("found");
                self.fetch_cons.remove(&node);
                let why = self.seeds.scrub(&why);
                if lost.ready {
                    tracing::warn!(master = %node, shards = lost.shards.len(), error = %why, "Redis Cluster master lost; its shards resubscribe, the others keep streaming");
                } else {
                    tracing::debug!(master = %node, error = %why, "Redis Cluster session failed");
                }
                self.retry_at = Instant::now() + self.backoff.next_delay();
                self.failed(why);
            }
        }
    }

    /// Some shard has no subscription: the feed is down (announced once).
    fn failed(&mut self, why: String) {
        self.sink.stats.redis_up.store(false, Ordering::Relaxed);
        if !self.sink.down_announced {
            tracing::warn!(error = %why, "Redis Cluster feed down (some shards); resubscribing them");
            self.sink.broadcast_status(false);
        }
    }

    /// A session subscribed and read its shards: hand on its snapshot; once every shard is back, the feed
    /// is up.
    fn on_ready(
        &mut self,
        id: u64,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        refused: Vec<(String, String)>,
    ) {
        let Some(s) = self.session_mut(id) else {
            return;
        };
        s.ready = true;
        let master = s.node.to_string();
        for (key, error) in refused {
            IngestStats::add(&self.sink.stats.snapshot_failures, 1);
            tracing::warn!(%key, error = %self.seeds.scrub(&error), "cannot read a shard's latest-value hash; its symbols wait for live ticks");
        }
        let mut snapshot: Vec<(Symbol, PreparedFrame)> = Vec::with_capacity(entries.len());
        for (field, value) in &entries {
            snapshot.extend(self.sink.stored_tick(field, value));
        }
        snapshot.sort_by(|a, b| a.0.cmp(&b.0));
        let all_up = !self.needs_repair() && self.sessions.values().all(|s| s.ready);
        if all_up {
            let masters: Vec<String> = self.sessions.keys().map(Node::to_string).collect();
            if self.sink.connected_once {
                IngestStats::add(&self.sink.stats.reconnects, 1);
            }
            self.backoff.reset();
            self.sink.stats.redis_up.store(true, Ordering::Relaxed);
            if self.sink.down_announced {
                tracing::info!(masters = ?masters, %master, symbols = snapshot.len(), "Redis Cluster feed up again");
                self.sink.broadcast_status(true);
            } else if !self.sink.connected_once {
                tracing::info!(masters = ?masters, shards = self.shards.len(), "subscribed to the sharded tick feed");
            }
            self.sink.connected_once = true;
        }
        self.sink.send_snapshot(snapshot);
    }

    /// Give every shard without a session one: rediscover (asking the streaming masters first), group
    /// those shards by their master, and start a session per master (a master that already has a
    /// session gets a new one for its old and new shards together: one connection per master).
    fn repair(&mut self) {
        let mut candidates: Vec<Node> = self
            .sessions
            .values()
            .filter(|s| s.ready)
            .map(|s| s.node.clone())
            .collect();
        candidates.extend(self.topology.masters());
        match Topology::discover(&self.seeds, &candidates) {
            Ok(t) => self.topology = t,
            Err(e) => {
                let why = self.seeds.scrub(&e.to_string());
                tracing::debug!(error = %why, "Redis Cluster rediscovery failed");
                self.retry_at = Instant::now() + self.backoff.next_delay();
                self.failed(why);
                return;
            }
        }
        let mut groups: BTreeMap<Node, Vec<ShardKeys>> = BTreeMap::new();
        let mut uncovered = false;
        for k in self.unassigned() {
            match self.topology.owner(k.slot) {
                Some(node) => groups.entry(node.clone()).or_default().push(k),
                None => uncovered = true,
            }
        }
        if groups.is_empty()
            && !self.sessions.values().any(|s| s.plain)
            && let Some(node) = self.sessions.keys().next().cloned()
        {
            groups.insert(node, Vec::new()); // only the plain channels need a home
        }
        let mut plain_needed = !self.sessions.values().any(|s| s.plain);
        for (node, mut shards) in groups {
            let mut plain = false;
            if let Some(old) = self.sessions.remove(&node) {
                shards.extend(old.shards.iter().cloned());
                plain = old.plain;
            }
            if plain_needed {
                plain = true;
            }
            shards.sort_by_key(|k| k.shard);
            self.next_id += 1;
            let keys = plain.then(|| self.keys.clone());
            match session::spawn(
                self.next_id,
                node.clone(),
                shards,
                keys,
                &self.seeds,
                self.tx.clone(),
            ) {
                Ok(s) => {
                    plain_needed &= !plain;
                    self.sessions.insert(node, s);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a subscriber thread");
                    uncovered = true;
                }
            }
        }
        self.retry_at = if uncovered {
            self.failed("a shard's slot has no master (cluster down?)".into());
            Instant::now() + self.backoff.next_delay()
        } else {
            Instant::now() + RETRY_MAX
        };
    }

    fn dispatch(&mut self, channel: &[u8], payload: &[u8]) {
        let channel = String::from_utf8_lossy(channel);
        if self.shards.iter().any(|k| k.ticks == channel) {
            self.sink.on_ticks(payload);
        } else if channel == self.keys.control || self.shards.iter().any(|k| k.control == channel) {
            self.sink.on_control(payload);
        } else if let Some(user) = channel.strip_prefix(self.keys.user_prefix.as_str()) {
            self.sink.on_user(user, payload);
        }
    }

    /// Workers' fetch requests: one HMGET per shard on its master.
    fn answer_fetches(&mut self) {
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
            let Some(node) = self.topology.owner(k.slot) else {
                continue;
            };
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(&k.ticks);
            for &i in &idx {
                cmd.arg(symbols[i].as_bytes());
            }
            let cons = &mut self.fetch_cons;
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
                    self.fetch_cons.remove(node);
                    let error = self.seeds.scrub(&e.to_string());
                    self.sink.fetch_failed(&k.ticks, idx.len(), &error);
                }
            }
        }
        self.sink.answer_fetched(requests, symbols, values);
    }
}
