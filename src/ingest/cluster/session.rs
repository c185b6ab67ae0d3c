//! One master's subscriber session, on its own thread: connect (TLS with `rediss://` seeds), AUTH,
//! SSUBSCRIBE the shards it owns, read those shards' hashes (the snapshot), report `Ready`, then hand every
//! message to the ingest thread until the connection fails, Redis unsubscribes a shard, or the session is
//! closed. A failure ends this session only: the other masters' sessions keep streaming.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ShardKeys;
use super::resp::{self, Resp};
use super::topology::{Node, Seeds, is_connection_trouble};
use crate::ingest::Keys;
use crate::ingest::redis_tls::Link;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Read timeout while streaming: how quickly a closed session notices.
const POLL: Duration = Duration::from_millis(200);
/// After this long without a byte from the master, PING it.
const IDLE_PING: Duration = Duration::from_secs(15);

/// What a session thread hands the ingest thread; `id` names the session.
pub(super) enum Incoming {
    /// Subscribed, and the shards' stored ticks read: `entries` are (field, value) pairs of every shard
    /// whose hash could be read, `refused` the (hash, error) of those Redis refused (e.g. WRONGTYPE).
    Ready {
        id: u64,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        refused: Vec<(String, String)>,
    },
    /// A message on `channel` (sharded, plain, or matched by the user pattern).
    Message {
        id: u64,
        channel: Vec<u8>,
        payload: Vec<u8>,
    },
    /// Redis unsubscribed `channel` (its slot moved away); the session goes on with its other shards.
    Unsubscribed { id: u64, channel: Vec<u8> },
    /// The session failed (connect, subscribe, snapshot, the connection, an error reply); it has stopped.
    Lost { id: u64, why: String },
}

/// A running session, as the ingest thread holds it. Dropping it closes the session (its thread notices
/// at once: its socket is shut down) without waiting for the thread.
pub(super) struct Session {
    pub id: u64,
    pub node: Node,
    pub shards: Vec<ShardKeys>,
    /// It also carries the plain control channel and the per-user pattern.
    pub plain: bool,
    /// `Ready` arrived.
    pub ready: bool,
    stop: Arc<AtomicBool>,
    sock: Arc<Mutex<Option<TcpStream>>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(s) = self.sock.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// What a session thread needs.
struct Job {
    id: u64,
    node: Node,
    shards: Vec<ShardKeys>,
    plain: Option<Keys>,
    seeds: Seeds,
    tx: Sender<Incoming>,
    stop: Arc<AtomicBool>,
    sock: Arc<Mutex<Option<TcpStream>>>,
}

/// Start session `id` on `node` for `shards` (and the plain channels of `plain`).
pub(super) fn spawn(
    id: u64,
    node: Node,
    shards: Vec<ShardKeys>,
    plain: Option<Keys>,
    seeds: &Seeds,
    tx: Sender<Incoming>,
) -> std::io::Result<Session> {
    let stop = Arc::new(AtomicBool::new(false));
    let sock = Arc::new(Mutex::new(None));
    let session = Session {
        id,
        node: node.clone(),
        shards: shards.clone(),
        plain: plain.is_some(),
        ready: false,
        stop: stop.clone(),
        sock: sock.clone(),
    };
    let job = Job {
        id,
        node,
        shards,
        plain,
        seeds: seeds.clone(),
        tx,
        stop,
        sock,
    };
    std::thread::Builder::new()
        .name("ringcast-ingest-shard".into())
        .spawn(move || job.run())?;
    Ok(session)
}

impl Job {
    fn run(self) {
        let result = self.session();
        if let Err(why) = result
            && !self.stop.load(Ordering::Relaxed)
        {
            let _ = self.tx.send(Incoming::Lost {
                id: self.id,
                why: format!("{}: {why}", self.node),
            });
        }
    }

    /// `Ok` when closed by the ingest thread, `Err(why)` on failure.
    fn session(&self) -> Result<(), String> {
        let (mut link, sock) = Link::connect(
            &self.node.host,
            self.node.port,
            self.seeds.tls(),
            CONNECT_TIMEOUT,
            COMMAND_TIMEOUT,
        )?;
        *self.sock.lock().unwrap_or_else(|e| e.into_inner()) = Some(sock);
        if self.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        // Subscribe first, then read the hashes: a tick published in between is in both, never in neither.
        let buf = self.subscribe(&mut link)?;
        let (entries, refused) = self.snapshot()?;
        let ready = Incoming::Ready {
            id: self.id,
            entries,
            refused,
        };
        if self.tx.send(ready).is_err() {
            return Ok(());
        }
        link.set_read_timeout(POLL).map_err(|e| e.to_string())?;
        self.read_loop(link, buf)
    }

    /// AUTH, one SSUBSCRIBE per shard (the channels of one command must share a slot), and with `plain`
    /// SUBSCRIBE the plain control channel and PSUBSCRIBE the per-user channels (a plain PUBLISH reaches
    /// every node). Returns any bytes read past the confirmations.
    fn subscribe(&self, link: &mut Link) -> Result<Vec<u8>, String> {
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
        for k in &self.shards {
            out.extend(resp::encode(&["SSUBSCRIBE", &k.ticks, &k.control]));
            expect += 2;
        }
        if let Some(keys) = &self.plain {
            out.extend(resp::encode(&["SUBSCRIBE", keys.control.as_str()]));
            out.extend(resp::encode(&[
                "PSUBSCRIBE".to_string(),
                format!("{}*", keys.user_prefix),
            ]));
            expect += 2;
        }
        link.write_all(&out).map_err(|e| e.to_string())?;
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
                    let n = link.read(&mut chunk).map_err(|e| e.to_string())?;
                    if n == 0 {
                        return Err("connection closed while subscribing".into());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
        Ok(buf)
    }

    /// HGETALL each shard's hash on a command connection to the master. A hash Redis refuses is reported
    /// (its symbols wait for live ticks); a cluster error or a failed connection fails the session.
    #[allow(clippy::type_complexity)]
    fn snapshot(&self) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, Vec<(String, String)>), String> {
        let mut con = self
            .seeds
            .connect(&self.node)
            .map_err(|e| format!("snapshot: {}", crate::ingest::explain(&e)))?;
        let (mut entries, mut refused) = (Vec::new(), Vec::new());
        for k in &self.shards {
            match redis::cmd("HGETALL")
                .arg(&k.ticks)
                .query::<Vec<(Vec<u8>, Vec<u8>)>>(&mut con)
            {
                Ok(e) => entries.extend(e),
                Err(e) if e.is_cluster_error() || is_connection_trouble(&e) => {
                    return Err(format!("snapshot of {}: {e}", k.ticks));
                }
                Err(e) => refused.push((k.ticks.clone(), e.to_string())),
            }
        }
        Ok((entries, refused))
    }

    /// Decode what the master sends and hand it on, until closed (`Ok`) or lost (`Err`).
    fn read_loop(&self, mut link: Link, mut buf: Vec<u8>) -> Result<(), String> {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut last_byte = Instant::now();
        let mut ping_sent: Option<Instant> = None;
        while !self.stop.load(Ordering::Relaxed) {
            while let Some((value, used)) = resp::decode(&buf).map_err(|e| e.to_string())? {
                buf.drain(..used);
                let sent = match classify(self.id, value) {
                    Some(Incoming::Lost { why, .. }) => return Err(why),
                    Some(incoming) => self.tx.send(incoming).is_ok(),
                    None => true,
                };
                if !sent {
                    return Ok(()); // the ingest thread ended
                }
            }
            match link.read(&mut chunk) {
                Ok(0) => return Err("connection closed".into()),
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
                            return Err("no answer to PING".into());
                        }
                        None if last_byte.elapsed() >= IDLE_PING => {
                            link.write_all(&resp::encode(&["PING"]))
                                .map_err(|e| e.to_string())?;
                            ping_sent = Some(Instant::now());
                        }
                        _ => {}
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }
}

/// What one value from session `id`'s subscribed connection means.
pub(super) fn classify(id: u64, value: Resp) -> Option<Incoming> {
    let items = match value {
        Resp::Array(Some(items)) => items,
        Resp::Error(e) => {
            return Some(Incoming::Lost {
                id,
                why: format!("Redis answered: {e}"),
            });
        }
        _ => return None,
    };
    let kind = items.first().and_then(Resp::bytes)?;
    let at = |i: usize| items.get(i).and_then(Resp::bytes).map(<[u8]>::to_vec);
    match kind {
        b"smessage" | b"message" => Some(Incoming::Message {
            id,
            channel: at(1)?,
            payload: at(2)?,
        }),
        b"pmessage" => Some(Incoming::Message {
            id,
            channel: at(2)?,
            payload: at(3)?,
        }),
        // Redis unsubscribes a shard channel whose slot moved away (resharding, failover).
        b"sunsubscribe" => Some(Incoming::Unsubscribed {
            id,
            channel: at(1)?,
        }),
        b"unsubscribe" | b"punsubscribe" => Some(Incoming::Lost {
            id,
            why: format!(
                "Redis unsubscribed {}",
                String::from_utf8_lossy(&at(1).unwrap_or_default())
            ),
        }),
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
        let Some(Incoming::Message {
            id: 7,
            channel,
            payload,
        }) = classify(7, array(&["smessage", "psx:ticks:{3}", "{}"]))
        else {
            panic!("smessage")
        };
        assert_eq!(
            (&channel[..], &payload[..]),
            (&b"psx:ticks:{3}"[..], &b"{}"[..])
        );
        let Some(Incoming::Message { channel, .. }) =
            classify(1, array(&["pmessage", "psx:user:*", "psx:user:7", "hi"]))
        else {
            panic!("pmessage")
        };
        assert_eq!(channel, b"psx:user:7");
        assert!(matches!(
            classify(1, array(&["sunsubscribe", "psx:ticks:{3}", "1"])),
            Some(Incoming::Unsubscribed { channel, .. }) if channel == b"psx:ticks:{3}"
        ));
        assert!(matches!(
            classify(1, Resp::Error("MOVED 1 h:1".into())),
            Some(Incoming::Lost { .. })
        ));
        assert!(classify(1, array(&["pong", ""])).is_none());
    }
}
