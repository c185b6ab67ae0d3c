//! Refusals logged where an operator sees them: at info level with their stable reason (the same words
//! the client gets), at most one line per second per (code, reason), the next line saying how many were
//! not logged meanwhile, so a flood of refused clients cannot fill the disk. Every refusal, logged or not,
//! is counted by code in `/metrics` (`ringcast_refusals_total{code="…"}`, [`CODES`]); the log says which
//! client and why.
//!
//! [`RefusalLog`] decides (sans-IO, time passed in); [`refused`] is the one call the worker makes: it
//! counts and logs.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Instant;

/// The refusals counted in `/metrics` by code, in this order: 401 (token, `--auth-refusal http`), 403
/// (origin, `/metrics` token), 503 (admission limits), 1008 (message rate), 1013 (slow consumer), 4001
/// (token expired: at the upgrade or later), 4003 (token missing or invalid, `--auth-refusal close`).
pub const CODES: [u16; 7] = [401, 403, 503, 1008, 1013, 4001, 4003];

/// Where `code` is in [`CODES`] (`None`: not a counted refusal).
pub fn code_index(code: u16) -> Option<usize> {
    CODES.iter().position(|&c| c == code)
}

/// A worker's refusal counters, one per code of [`CODES`] in that order (written by their worker only,
/// summed on scrape).
#[derive(Debug, Default)]
pub struct RefusalCounts([AtomicU64; CODES.len()]);

impl RefusalCounts {
    /// How many refusals with the `i`-th code of [`CODES`] were counted.
    pub fn get(&self, i: usize) -> u64 {
        self.0[i].load(Relaxed)
    }

    fn add(&self, i: usize) {
        let counter = &self.0[i];
        counter.store(counter.load(Relaxed) + 1, Relaxed);
    }
}

/// Most lines per (code, reason) per this many milliseconds.
pub const INTERVAL_MS: u64 = 1000;

/// Distinct (code, reason) pairs tracked; reasons are a fixed set, this only bounds a surprise.
const MAX_KINDS: usize = 256;

#[derive(Debug)]
struct Kind {
    code: u16,
    reason: String,
    /// When the last line of this kind was written.
    logged_ms: u64,
    /// Refusals of this kind not logged since then.
    suppressed: u64,
}

/// Which refusals to log.
#[derive(Debug, Default)]
pub struct RefusalLog {
    kinds: Vec<Kind>,
}

impl RefusalLog {
    /// A refusal with `code` (HTTP status or close code) and `reason` at `now_ms`: `Some(n)` when it is to
    /// be logged, `n` being how many of its kind were not logged since the previous line; `None` when it
    /// is only counted.
    pub fn note(&mut self, code: u16, reason: &str, now_ms: u64) -> Option<u64> {
        let found = self
            .kinds
            .iter()
            .position(|k| k.code == code && k.reason == reason);
        let index = match found {
            Some(i) => i,
            None if self.kinds.len() < MAX_KINDS => {
                self.kinds.push(Kind {
                    code,
                    reason: reason.to_string(),
                    logged_ms: now_ms,
                    suppressed: 0,
                });
                return Some(0);
            }
            // Full (never expected): one shared kind per table, still bounded.
            None => self.kinds.len() - 1,
        };
        let kind = &mut self.kinds[index];
        if now_ms.saturating_sub(kind.logged_ms) < INTERVAL_MS {
            kind.suppressed += 1;
            return None;
        }
        kind.logged_ms = now_ms;
        Some(std::mem::take(&mut kind.suppressed))
    }
}

static LOG: Mutex<RefusalLog> = Mutex::new(RefusalLog { kinds: Vec::new() });

fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// A refused upgrade or a connection closed for a policy (`code`: one of [`CODES`]): counted in the
/// worker's `counts`, and logged at info level, rate-limited per (code, reason).
pub fn refused(counts: &RefusalCounts, code: u16, reason: &str, peer: Option<IpAddr>) {
    debug_assert!(
        code_index(code).is_some(),
        "refusal code {code} is not counted"
    );
    if let Some(i) = code_index(code) {
        counts.add(i);
    }
    log_refusal(code, reason, peer);
}

/// Log a refusal at info level, rate-limited per (code, reason), without counting it by code: a
/// connection closed unanswered (`code` 0: a PROXY header missing, malformed or from outside
/// `--trusted-proxies`), which the caller counts as a failed handshake.
pub fn log_refusal(code: u16, reason: &str, peer: Option<IpAddr>) {
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let decision = LOG
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .note(code, reason, now_ms());
    if let Some(suppressed) = decision {
        match peer {
            Some(peer) => tracing::info!(code, reason, %peer, suppressed, "refused"),
            None => tracing::info!(code, reason, suppressed, "refused"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_second_per_kind_then_the_count() {
        let mut log = RefusalLog::default();
        assert_eq!(log.note(403, "origin not allowed", 0), Some(0));
        for t in 1..1000 {
            assert_eq!(log.note(403, "origin not allowed", t), None);
        }
        // Another kind is not held back by the first.
        assert_eq!(log.note(401, "token expired", 500), Some(0));
        assert_eq!(log.note(403, "origin not allowed", 1000), Some(999));
        assert_eq!(log.note(403, "origin not allowed", 1001), None);
        assert_eq!(log.note(403, "origin not allowed", 5000), Some(1));
    }

    #[test]
    fn a_flood_is_bounded() {
        let mut log = RefusalLog::default();
        let lines = (0..100_000u64)
            .filter(|i| {
                log.note(503, "too many connections from your address", i / 10)
                    .is_some()
            })
            .count();
        assert_eq!(lines, 10, "10 s of a flood: one line a second");
        let kinds = (0..1000u16)
            .filter(|&c| log.note(c, "x", 0).is_some())
            .count();
        assert!(kinds <= MAX_KINDS, "{kinds}");
    }
}
