//! The publisher thread: HSET + PUBLISH (pipelined) at a target rate, paced every millisecond. Each tick
//! carries `ts` (CLOCK_REALTIME ns at publish) and a per-symbol `seq` starting at 1. With a Redis Cluster
//! (`Config::cluster`) each shard's ticks go to its master as HSET + SPUBLISH (`crate::cluster`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use crate::tick::write_tick;

pub struct Shared {
    /// Target rate, ticks per second (f64 bits).
    pub rate: AtomicU64,
    pub stop: AtomicBool,
    pub published: AtomicU64,
    pub messages: AtomicU64,
    /// Ticks that were due but not yet sent (the largest backlog since the last take).
    pub max_backlog: AtomicU64,
    pub errors: AtomicU64,
    /// Ticks published per symbol (for the expected delivery count).
    pub per_symbol: Mutex<Vec<u64>>,
    pub last_error: Mutex<Option<String>>,
    pub cpu_ns: AtomicU64,
}

pub struct Config {
    pub redis_url: String,
    pub prefix: String,
    pub symbols: u32,
    pub tick_bytes: usize,
    pub dist: Dist, // which symbol each tick is for (uniform: round robin)
    pub round_robin: bool,
    pub batch: bool, // several ticks per PUBLISH as a JSON array
    pub max_batch: usize,
    /// A Redis Cluster feed: its seed URLs and shard count (None: one Redis at `redis_url`).
    pub cluster: Option<(Vec<String>, u32)>,
}

impl Shared {
    pub fn set_rate(&self, r: f64) {
        self.rate.store(r.to_bits(), Ordering::Relaxed);
    }
    pub fn rate(&self) -> f64 {
        f64::from_bits(self.rate.load(Ordering::Relaxed))
    }
}

pub fn connect(url: &str) -> Result<redis::Connection, String> {
    let client = redis::Client::open(url).map_err(|e| format!("redis {url}: {e}"))?;
    client
        .get_connection_with_timeout(Duration::from_secs(3))
        .map_err(|e| format!("redis {url}: {e}"))
}

/// Deletes the old hash and seeds one tick per symbol (so subscribers get a snapshot). Returns the
/// per-symbol sequence numbers to continue from.
pub fn seed(cfg: &Config) -> Result<Vec<u64>, String> {
    if let Some((seeds, shards)) = &cfg.cluster {
        let mut router = crate::cluster::Router::connect(seeds, &cfg.prefix, *shards, cfg.symbols)?;
        let ts = realtime_ns();
        let ticks: Vec<(u32, Vec<u8>)> = (0..cfg.symbols)
            .map(|s| {
                let mut t = Vec::new();
                write_tick(&mut t, s, 1, ts, cfg.tick_bytes);
                (s, t)
            })
            .collect();
        router.seed(&ticks)?;
        return Ok(vec![1; cfg.symbols as usize]);
    }
    let mut con = connect(&cfg.redis_url)?;
    let key = format!("{}ticks", cfg.prefix);
    redis::cmd("DEL")
        .arg(&key)
        .query::<()>(&mut con)
        .map_err(|e| format!("redis DEL: {e}"))?;
    let mut seqs = vec![0u64; cfg.symbols as usize];
    let ts = realtime_ns();
    for chunk in (0..cfg.symbols).collect::<Vec<_>>().chunks(1000) {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&key);
        for &s in chunk {
            seqs[s as usize] = 1;
            let mut t = Vec::new();
            write_tick(&mut t, s, 1, ts, cfg.tick_bytes);
            cmd.arg(symbol_name(s)).arg(t);
        }
        cmd.query::<()>(&mut con)
            .map_err(|e| format!("redis HSET: {e}"))?;
    }
    Ok(seqs)
}

pub fn spawn(
    cfg: Config,
    mut seqs: Vec<u64>,
    shared: Arc<Shared>,
    cores: Vec<usize>,
) -> Result<std::thread::JoinHandle<()>, String> {
    let mut con = connect(&cfg.redis_url)?;
    let router = |cfg: &Config| match &cfg.cluster {
        Some((seeds, shards)) => {
            crate::cluster::Router::connect(seeds, &cfg.prefix, *shards, cfg.symbols).map(Some)
        }
        None => Ok(None),
    };
    let mut cluster = router(&cfg)?;
    let h = std::thread::Builder::new()
        .name("publisher".into())
        .spawn(move || {
            let _ = pin_to(0, &cores);
            let key = format!("{}ticks", cfg.prefix);
            let names: Vec<String> = (0..cfg.symbols).map(symbol_name).collect();
            let mut rng = Rng::new(7);
            let mut rr = 0u32;
            let mut rate = shared.rate();
            let mut since = monotonic_ns();
            let mut sent_since: u64 = 0;
            let mut ticks: Vec<(u32, Vec<u8>)> = Vec::new();
            let mut per_symbol_local = vec![0u64; cfg.symbols as usize];
            let cpu0 = thread_cpu_ns();
            while !shared.stop.load(Ordering::Relaxed) {
                let r = shared.rate();
                let now = monotonic_ns();
                if r != rate {
                    rate = r;
                    since = now;
                    sent_since = 0;
                }
                if rate <= 0.0 {
                    std::thread::sleep(Duration::from_millis(5));
                    since = monotonic_ns();
                    continue;
                }
                let due = ((now - since) as f64 / 1e9 * rate) as u64;
                let backlog = due.saturating_sub(sent_since);
                shared.max_backlog.fetch_max(backlog, Ordering::Relaxed);
                let n = backlog.min(cfg.max_batch as u64) as usize;
                if n > 0 {
                    let ts = realtime_ns();
                    ticks.clear();
                    for _ in 0..n {
                        let s = if cfg.round_robin {
                            rr = (rr + 1) % cfg.symbols;
                            rr
                        } else {
                            cfg.dist.sample(&mut rng)
                        };
                        seqs[s as usize] += 1;
                        per_symbol_local[s as usize] += 1;
                        let mut t = Vec::with_capacity(cfg.tick_bytes + 8);
                        write_tick(&mut t, s, seqs[s as usize], ts, cfg.tick_bytes);
                        ticks.push((s, t));
                    }
                    let sent = match cluster.as_mut() {
                        Some(r) => r.publish(&ticks, &names, cfg.batch),
                        None => publish(&mut con, &key, &ticks, &names, &cfg),
                    };
                    match sent {
                        Ok(messages) => {
                            sent_since += n as u64;
                            shared.published.fetch_add(n as u64, Ordering::Relaxed);
                            shared.messages.fetch_add(messages, Ordering::Relaxed);
                        }
                        Err(e) => {
                            shared.errors.fetch_add(1, Ordering::Relaxed);
                            *shared.last_error.lock().unwrap() = Some(e);
                            sent_since += n as u64;
                            std::thread::sleep(Duration::from_millis(100));
                            if let Ok(c) = connect(&cfg.redis_url) {
                                con = c;
                            }
                            if cluster.is_some()
                                && let Ok(r) = router(&cfg)
                            {
                                cluster = r;
                            }
                        }
                    }
                    if let Ok(mut ps) = shared.per_symbol.try_lock() {
                        for (a, b) in ps.iter_mut().zip(per_symbol_local.iter_mut()) {
                            *a += *b;
                            *b = 0;
                        }
                    }
                    shared
                        .cpu_ns
                        .store(thread_cpu_ns() - cpu0, Ordering::Relaxed);
                }
                if backlog <= cfg.max_batch as u64 {
                    // next millisecond, or the next tick at low rates
                    let interval_ns = (1e9 / rate).max(1e6) as u64;
                    let next = since + ((sent_since as f64 + 1.0) / rate * 1e9) as u64;
                    let now = monotonic_ns();
                    let wake = next.max(now + 1_000_000.min(interval_ns));
                    let wake = wake.min(now + 50_000_000);
                    sleep_until(wake);
                }
            }
            let mut ps = shared.per_symbol.lock().unwrap();
            for (a, b) in ps.iter_mut().zip(per_symbol_local.iter()) {
                *a += *b;
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(h)
}

/// One Redis: HSET of every tick, then one PUBLISH (a JSON array when batching) or one per tick,
/// pipelined. Returns the messages published.
fn publish(
    con: &mut redis::Connection,
    key: &str,
    ticks: &[(u32, Vec<u8>)],
    names: &[String],
    cfg: &Config,
) -> Result<u64, String> {
    let mut pipe = redis::pipe();
    {
        let cmd = pipe.cmd("HSET").arg(key);
        for (s, t) in ticks {
            cmd.arg(&names[*s as usize]).arg(t.as_slice());
        }
        cmd.ignore();
    }
    let mut messages = 0;
    if cfg.batch && ticks.len() > 1 {
        let mut arr = Vec::with_capacity(ticks.len() * (cfg.tick_bytes + 1) + 2);
        arr.push(b'[');
        for (i, (_, t)) in ticks.iter().enumerate() {
            if i > 0 {
                arr.push(b',');
            }
            arr.extend_from_slice(t);
        }
        arr.push(b']');
        pipe.cmd("PUBLISH").arg(key).arg(arr).ignore();
        messages += 1;
    } else {
        for (_, t) in ticks {
            pipe.cmd("PUBLISH").arg(key).arg(t.as_slice()).ignore();
            messages += 1;
        }
    }
    pipe.query::<()>(con).map_err(|e| e.to_string())?;
    Ok(messages)
}

fn sleep_until(t: u64) {
    let now = monotonic_ns();
    if t > now {
        std::thread::sleep(Duration::from_nanos(t - now));
    }
}

pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
