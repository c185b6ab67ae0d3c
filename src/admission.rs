//! Admission limits, sans-IO (time passed in as milliseconds from any monotonic origin): handshakes
//! per second ([`AcceptRate`], refused with `503` + `Retry-After`), open connections per client IP
//! ([`PerIpLimiter`], IPv6 grouped by prefix), both shared by a process's workers
//! ([`SharedAcceptRate`], [`SharedPerIp`]), and inbound messages per connection ([`MessageRate`],
//! 8 bytes each; over the limit the connection is closed with 1008).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A token bucket: `burst` tokens, refilled at `rate_per_s`. 24 bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenBucket {
    rate_per_s: f32,
    burst: f32,
    tokens: f32,
    last_ms: u64,
}

const _: () = assert!(std::mem::size_of::<TokenBucket>() <= 24);

impl TokenBucket {
    /// A full bucket. Negative or NaN `rate_per_s`/`burst` count as 0.
    pub fn new(rate_per_s: f32, burst: f32, now_ms: u64) -> Self {
        let burst = non_negative(burst);
        TokenBucket {
            rate_per_s: non_negative(rate_per_s),
            burst,
            tokens: burst,
            last_ms: now_ms,
        }
    }

    /// Take one token if there is one. Time going backwards refills nothing until it passes the
    /// latest time seen again (so a flapping clock cannot mint tokens).
    pub fn try_take(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Milliseconds until a token is available (0 if one is now; `u64::MAX` if it never will be).
    pub fn ms_until_available(&self, now_ms: u64) -> u64 {
        let mut probe = *self;
        probe.refill(now_ms);
        let missing = 1.0 - probe.tokens;
        if missing <= 0.0 {
            0
        } else if probe.rate_per_s <= 0.0 || probe.burst < 1.0 {
            u64::MAX
        } else {
            // `as` saturates; the value is finite and positive here.
            (missing * 1000.0 / probe.rate_per_s).ceil() as u64
        }
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.tokens = (self.tokens + elapsed as f32 * self.rate_per_s / 1000.0).min(self.burst);
        self.last_ms = self.last_ms.max(now_ms);
    }
}

fn non_negative(x: f32) -> f32 {
    if x > 0.0 { x } else { 0.0 }
}

/// Handshakes per second (shared by a process's workers through [`SharedAcceptRate`]). When refused,
/// answer `503` (`crate::http::write_unavailable`) with [`AcceptRate::retry_after_s`] and close.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AcceptRate {
    bucket: TokenBucket,
}

impl AcceptRate {
    /// `per_s` handshakes per second, bursts of up to one second's worth (at least 1).
    pub fn new(per_s: u32, now_ms: u64) -> Self {
        let rate = per_s as f32;
        AcceptRate {
            bucket: TokenBucket::new(rate, rate.max(1.0), now_ms),
        }
    }

    /// May one more handshake proceed now?
    pub fn try_accept(&mut self, now_ms: u64) -> bool {
        self.bucket.try_take(now_ms)
    }

    /// `Retry-After` seconds for a refused handshake: until a token is back, rounded up, 1–60.
    pub fn retry_after_s(&self, now_ms: u64) -> u64 {
        self.bucket
            .ms_until_available(now_ms)
            .div_ceil(1000)
            .clamp(1, MAX_RETRY_AFTER_S)
    }
}

/// Longest `Retry-After` advertised.
pub const MAX_RETRY_AFTER_S: u64 = 60;

/// `Retry-After` for a refusal by [`PerIpLimiter`] (a connection of that client must close first).
pub const CONN_LIMIT_RETRY_AFTER_S: u64 = 5;

/// `Retry-After` for an upgrade refused because the worker holds its most WebSocket connections.
pub const CAPACITY_RETRY_AFTER_S: u64 = 5;

/// [`AcceptRate`] shared by every worker of a process (one lock, taken once per upgrade). `now_ms`
/// must come from one origin for all callers.
#[derive(Debug)]
pub struct SharedAcceptRate(Mutex<AcceptRate>);

impl SharedAcceptRate {
    pub fn new(per_s: u32, now_ms: u64) -> Self {
        SharedAcceptRate(Mutex::new(AcceptRate::new(per_s, now_ms)))
    }

    /// `Ok` if one more handshake may proceed now, else the `Retry-After` seconds to answer with.
    pub fn try_accept(&self, now_ms: u64) -> Result<(), u64> {
        let mut rate = lock(&self.0);
        if rate.try_accept(now_ms) {
            Ok(())
        } else {
            Err(rate.retry_after_s(now_ms))
        }
    }
}

/// [`PerIpLimiter`] shared by every worker of a process, so the limit holds whichever worker the kernel
/// hands a connection to: address groups spread over shards, each behind its own lock, so workers
/// admitting different clients do not wait on each other. Touched when an upgrade is admitted and when
/// an admitted connection closes, never on the delivery path.
#[derive(Debug)]
pub struct SharedPerIp {
    shards: Box<[Mutex<PerIpLimiter>]>,
    hasher: RandomState,
    ipv6_prefix_len: u8,
}

/// Shards of [`SharedPerIp`] (a few per core of a large box).
const PER_IP_SHARDS: usize = 64;

impl SharedPerIp {
    /// `ipv6_prefix_len` as in [`PerIpLimiter::new`].
    pub fn new(ipv6_prefix_len: u8) -> Self {
        SharedPerIp {
            shards: (0..PER_IP_SHARDS)
                .map(|_| Mutex::new(PerIpLimiter::new(ipv6_prefix_len)))
                .collect(),
            hasher: RandomState::new(),
            ipv6_prefix_len: ipv6_prefix_len.min(128),
        }
    }

    fn shard(&self, ip: IpAddr) -> (MutexGuard<'_, PerIpLimiter>, IpAddr) {
        let group = group(ip, self.ipv6_prefix_len);
        let index = self.hasher.hash_one(group) as usize % self.shards.len();
        (lock(&self.shards[index]), group)
    }

    /// As [`PerIpLimiter::try_admit`], for the whole process.
    pub fn try_admit(&self, ip: IpAddr, max_per_ip: u32) -> bool {
        let (mut shard, group) = self.shard(ip);
        shard.try_admit(group, max_per_ip)
    }

    /// As [`PerIpLimiter::release`].
    pub fn release(&self, ip: IpAddr) {
        let (mut shard, group) = self.shard(ip);
        shard.release(group);
    }

    /// Connections open in `ip`'s group, over every worker.
    pub fn open(&self, ip: IpAddr) -> u32 {
        let (shard, group) = self.shard(ip);
        shard.open(group)
    }
}

impl Default for SharedPerIp {
    fn default() -> Self {
        SharedPerIp::new(64)
    }
}

/// A lock whose holder cannot leave the counts half-updated (no code between lock and unlock panics),
/// so a poisoned one is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Open connections per client. IPv4 addresses count one by one (IPv4-mapped IPv6 addresses as
/// IPv4); IPv6 addresses are grouped by their first `ipv6_prefix_len` bits (default /64: one
/// customer's LAN), so a client cannot dodge the limit by rotating addresses. The server shares them
/// between its workers through [`SharedPerIp`].
#[derive(Clone, Debug)]
pub struct PerIpLimiter {
    open: HashMap<IpAddr, u32>,
    ipv6_prefix_len: u8,
}

impl Default for PerIpLimiter {
    fn default() -> Self {
        PerIpLimiter::new(64)
    }
}

impl PerIpLimiter {
    /// `ipv6_prefix_len` is clamped to 0–128.
    pub fn new(ipv6_prefix_len: u8) -> Self {
        PerIpLimiter {
            open: HashMap::new(),
            ipv6_prefix_len: ipv6_prefix_len.min(128),
        }
    }

    /// The address `ip` is counted under.
    pub fn group(&self, ip: IpAddr) -> IpAddr {
        group(ip, self.ipv6_prefix_len)
    }

    /// Count a new connection from `ip` if its group has fewer than `max_per_ip` open (0 = no
    /// limit). Call [`PerIpLimiter::release`] with the same `ip` when an admitted connection ends.
    pub fn try_admit(&mut self, ip: IpAddr, max_per_ip: u32) -> bool {
        let count = self.open.entry(self.group(ip)).or_insert(0);
        if max_per_ip != 0 && *count >= max_per_ip {
            return false;
        }
        *count = count.saturating_add(1);
        true
    }

    /// An admitted connection from `ip` ended. Releasing more than was admitted is a no-op.
    pub fn release(&mut self, ip: IpAddr) {
        let group = self.group(ip);
        if let Some(count) = self.open.get_mut(&group) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.open.remove(&group);
            }
        }
    }

    /// Connections open in `ip`'s group.
    pub fn open(&self, ip: IpAddr) -> u32 {
        self.open.get(&self.group(ip)).copied().unwrap_or(0)
    }

    /// Groups with at least one open connection.
    pub fn groups(&self) -> usize {
        self.open.len()
    }
}

/// The address `ip` is counted under: itself for IPv4 (and IPv4-mapped IPv6), its first
/// `ipv6_prefix_len` bits (≤ 128) for IPv6.
fn group(ip: IpAddr, ipv6_prefix_len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(ipv6_prefix_len))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
        },
    }
}

/// The inbound message limit shared by a worker's connections: `rate_per_s`, bursts of `burst`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MessageLimit {
    rate_per_s: f32,
    burst: f32,
}

impl MessageLimit {
    /// Negative or NaN values count as 0.
    pub fn new(rate_per_s: f32, burst: f32) -> Self {
        MessageLimit {
            rate_per_s: non_negative(rate_per_s),
            burst: non_negative(burst),
        }
    }

    /// `per_s` messages per second, bursts of one second's worth (at least 1): `--max-msgs-per-s`.
    pub fn per_second(per_s: u32) -> Self {
        MessageLimit::new(per_s as f32, (per_s as f32).max(1.0))
    }
}

/// Per-connection state of the inbound message limit: 8 bytes (the limit lives in [`MessageLimit`]).
/// Time is kept in 10 ms units in 32 bits: refill is exact over time, granted at 10 ms steps.
/// A step back in time (or a gap over ~248 days, indistinguishable in 32 bits) refills nothing and
/// restarts the count from `now_ms`, so a stalled clock can never lock a connection out.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MessageRate {
    tokens: f32,
    last_tick: u32,
}

const _: () = assert!(std::mem::size_of::<MessageRate>() <= 8);

/// Milliseconds per time unit of [`MessageRate`].
const TICK_MS: u64 = 10;
const TICKS_PER_S: f32 = (1000 / TICK_MS) as f32;

impl MessageRate {
    /// A full allowance.
    pub fn new(limit: &MessageLimit, now_ms: u64) -> Self {
        MessageRate {
            tokens: limit.burst,
            last_tick: tick(now_ms),
        }
    }

    /// Count one inbound message; `false` = over the limit (close with 1008).
    pub fn try_take(&mut self, limit: &MessageLimit, now_ms: u64) -> bool {
        let now = tick(now_ms);
        let elapsed = now.wrapping_sub(self.last_tick);
        if elapsed < 1 << 31 {
            // One division, so whole token counts stay exact (10 ticks × 10/s / 100 = 1.0).
            let refill = elapsed as f32 * limit.rate_per_s / TICKS_PER_S;
            self.tokens = (self.tokens + refill).min(limit.burst);
        }
        self.last_tick = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// `now_ms` in [`TICK_MS`] units, wrapping at 32 bits (about 497 days).
fn tick(now_ms: u64) -> u32 {
    (now_ms / TICK_MS) as u32
}

pub mod refusals;
pub mod trusted;

#[cfg(test)]
mod tests;
