//! The reconnect storm (`run --scenario storm`): with `--reconnect-policy P` every connection that ends
//! (server close, EOF, refused connect or upgrade) connects again after P's delay and subscribes again.
//! The coordinator sends `storm MARK` (CLOCK_REALTIME ns of the restart signal) just before it restarts
//! or kills the server; from then on a connection is *back* once it has connected again after MARK, its
//! subscribe was acknowledged and it has a tick published after MARK for each of its symbols (the
//! snapshot or a live one: "subscribed and current"). `storm_report` sends the figures.
//!
//! Policies (close code → delay), as the clients in client/ do:
//! - `ringcast` (client/ringcast.js `planReconnect`): 1001/1012 → uniform [0, 1 s), attempt reset;
//!   1013 → 5 s + backoff(attempt + 4), capped at 30 s; any other end (1006, refused) → backoff(attempt),
//!   attempt + 1, where backoff(n) is uniform in [w/4, w), w = min(30 s, 1 s·1.5^n).
//! - `seed` (the seed's browser client, client/bench/seed-client.mjs): uniform 3–8 s after every end.
//! - `full-jitter`: 1001/1012 → [0, 1 s) as ringcast.js; any other end → uniform [0, w), w = min(30 s,
//!   1 s·2^n), attempt + 1.
//!
//! The attempt counter resets when the connection is back (ringcast.js resets it after 10 s live).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::Client;
use crate::common::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Policy {
    Ringcast,
    Seed,
    FullJitter,
}

impl Policy {
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "ringcast" => Some(Policy::Ringcast),
            "seed" => Some(Policy::Seed),
            "full-jitter" => Some(Policy::FullJitter),
            _ => None,
        }
    }

    /// The delay (ms) before the next connect after an end with `code` (1006: no close frame, or a
    /// refused connect/upgrade), and the attempt counter after it.
    pub fn plan(self, code: u16, attempt: u32, unit: f64) -> (u64, u32) {
        const CAP_MS: f64 = 30_000.0;
        let backoff = |n: u32, growth: f64, floor: f64| {
            let w = (1000.0 * growth.powi(n.min(60) as i32)).min(CAP_MS);
            (w * (floor + (1.0 - floor) * unit)) as u64
        };
        match (self, code) {
            (Policy::Seed, _) => ((3000.0 + 5000.0 * unit) as u64, 0),
            (_, 1001 | 1012 | 4001) => ((1000.0 * unit) as u64, 0),
            (Policy::Ringcast, 1013) => (
                (5000 + backoff(attempt + 4, 1.5, 0.25)).min(CAP_MS as u64),
                attempt + 1,
            ),
            (Policy::Ringcast, _) => (backoff(attempt, 1.5, 0.25), attempt + 1),
            (Policy::FullJitter, _) => (backoff(attempt, 2.0, 0.0), attempt + 1),
        }
    }
}

/// A client process's storm state.
pub(super) struct Storm {
    pub(super) policy: Policy,
    /// CLOCK_REALTIME ns of the restart signal (0: not started).
    pub(super) mark_rt: u64,
    /// (due monotonic ns, connection, its generation when scheduled)
    retries: BinaryHeap<Reverse<(u64, usize, u32)>>,
    /// mark → back, µs, one value per connection back.
    back_hist: Histogram<u64>,
    pub(super) back: u64,
    all_back_sent: bool,
    /// Upgrades completed (101) per second since the mark.
    accepted: Vec<u64>,
    /// Upgrades refused with 503 (draining server, handshake rate limit) since the mark.
    refused_503: u64,
    /// Other failed upgrades and failed or refused TCP connects since the mark.
    upgrade_failed: u64,
    connect_failed: u64,
    reconnects: u64,
    /// Close frames the server started since the mark, by "CODE reason".
    closes: std::collections::BTreeMap<String, u64>,
    /// This process's CPU time at the mark (ns).
    cpu0: u64,
}

impl Storm {
    pub(super) fn new(policy: Policy) -> Storm {
        Storm {
            policy,
            mark_rt: 0,
            retries: BinaryHeap::new(),
            back_hist: new_hist(),
            back: 0,
            all_back_sent: false,
            accepted: Vec::new(),
            refused_503: 0,
            upgrade_failed: 0,
            connect_failed: 0,
            reconnects: 0,
            closes: Default::default(),
            cpu0: 0,
        }
    }
}

impl Client {
    /// A connection ended (`code` 1006 when no close frame came): connect again after the policy's delay.
    pub(super) fn storm_retry(&mut self, idx: usize, code: u16) {
        if self.stop {
            return;
        }
        let unit = self.rng.unit();
        let Some(s) = self.storm.as_mut() else {
            return;
        };
        let c = &mut self.conns[idx];
        let (delay_ms, attempt) = s.policy.plan(code, c.attempt, unit);
        c.attempt = attempt;
        let due = monotonic_ns() + delay_ms * 1_000_000;
        s.retries.push(Reverse((due, idx, c.generation)));
    }

    /// A connect or upgrade failed during the storm: counted, and per connection (a refusal is a 503, a
    /// refused, reset or timed-out TCP/TLS connect, or another failed upgrade).
    pub(super) fn storm_refused(&mut self, idx: usize, status_503: bool, connect: bool) {
        let Some(s) = self.storm.as_mut() else {
            return;
        };
        if s.mark_rt == 0 {
            return;
        }
        self.conns[idx].refusals += 1;
        if status_503 {
            s.refused_503 += 1;
        } else if connect {
            s.connect_failed += 1;
        } else {
            s.upgrade_failed += 1;
        }
    }

    /// The server closed a connection with `key` ("CODE reason") since the mark.
    pub(super) fn storm_closed(&mut self, key: &str) {
        if let Some(s) = self.storm.as_mut()
            && s.mark_rt != 0
        {
            *s.closes.entry(key.to_string()).or_insert(0) += 1;
        }
    }

    /// Due retries join the connect queue. True while some are waiting.
    pub(super) fn storm_tick(&mut self, now: u64) -> bool {
        let Some(s) = self.storm.as_mut() else {
            return false;
        };
        while let Some(&Reverse((due, idx, g))) = s.retries.peek() {
            if due > now {
                break;
            }
            s.retries.pop();
            let c = &self.conns[idx];
            if c.generation == g && c.fd < 0 {
                self.queue.push_back(idx);
            }
        }
        !s.retries.is_empty()
    }

    /// The upgrade of `idx` completed.
    pub(super) fn storm_opened(&mut self, idx: usize, now_rt: u64) {
        let Some(s) = self.storm.as_mut() else {
            return;
        };
        if s.mark_rt == 0 || self.conns[idx].back {
            return;
        }
        let c = &mut self.conns[idx];
        c.reconnected = true;
        c.fresh = 0;
        s.reconnects += 1;
        let sec = (now_rt.saturating_sub(s.mark_rt) / 1_000_000_000) as usize;
        if s.accepted.len() <= sec {
            s.accepted.resize(sec + 1, 0);
        }
        s.accepted[sec] += 1;
    }

    /// After a message on `idx`: back when reconnected, acknowledged and current on every symbol.
    pub(super) fn storm_check(&mut self, idx: usize, now_rt: u64) {
        let Some(s) = self.storm.as_mut() else {
            return;
        };
        let c = &mut self.conns[idx];
        if s.mark_rt == 0 || c.back || !c.reconnected || !c.acked {
            return;
        }
        let n = c.syms.len().min(64);
        let all = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        if c.fresh & all != all {
            return;
        }
        c.back = true;
        c.attempt = 0;
        s.back += 1;
        let us = (now_rt.saturating_sub(s.mark_rt) / 1000).clamp(1, 60_000_000);
        let _ = s.back_hist.record(us);
        if s.back == self.conns.len() as u64 && !s.all_back_sent {
            s.all_back_sent = true;
            self.emit(json!({"kind": "storm_all_back"}));
        }
    }

    /// `storm MARK`: the server is about to go; every connection must come back.
    pub(super) fn storm_start(&mut self, mark_rt: u64) {
        let Some(s) = self.storm.as_mut() else {
            return;
        };
        s.mark_rt = mark_rt;
        s.cpu0 = self_cpu_ns();
        s.back = 0;
        for c in self.conns.iter_mut() {
            c.back = false;
            c.reconnected = false;
            c.fresh = 0;
            c.refusals = 0;
            c.attempt = 0;
        }
        self.emit(json!({"kind": "storm_started"}));
    }

    /// `storm_report`: the figures of this process.
    pub(super) fn storm_report(&mut self) -> Value {
        let Some(s) = self.storm.as_ref() else {
            return json!({"kind": "storm"});
        };
        // connections by refusals suffered (503s and failed connects): [0, 1, 2, ..., 10+]
        let mut by_refusals = vec![0u64; 11];
        for c in &self.conns {
            by_refusals[(c.refusals as usize).min(10)] += 1;
        }
        let max_refusals = self.conns.iter().map(|c| c.refusals).max().unwrap_or(0);
        json!({"kind": "storm", "conns": self.conns.len(), "back": s.back,
            "back_hist": hist_to_b64(&s.back_hist), "accepted_per_s": s.accepted,
            "refused_503": s.refused_503, "upgrade_failed": s.upgrade_failed,
            "connect_failed": s.connect_failed, "reconnects": s.reconnects,
            "max_refusals": max_refusals, "by_refusals": by_refusals, "closes": s.closes,
            "cpu_ns": self_cpu_ns() - s.cpu0})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_draw_from_their_windows() {
        for (unit, want) in [(0.0, 3000), (0.999_999, 7999)] {
            assert_eq!(Policy::Seed.plan(1012, 5, unit).0, want);
        }
        // ringcast.js: 1012 prompt [0, 1 s), attempt reset; 1006 backoff [w/4, w), w = 1 s·1.5^n
        assert_eq!(Policy::Ringcast.plan(1012, 7, 0.5), (500, 0));
        assert_eq!(Policy::Ringcast.plan(1006, 0, 0.0), (250, 1));
        assert_eq!(Policy::Ringcast.plan(1006, 2, 0.0), (562, 3));
        assert_eq!(Policy::Ringcast.plan(1006, 40, 0.0), (7500, 41));
        // full jitter: [0, 1 s·2^n), cap 30 s
        assert_eq!(Policy::FullJitter.plan(1006, 3, 0.5), (4000, 4));
        assert_eq!(Policy::FullJitter.plan(1006, 30, 0.999), (29_970, 31));
        assert_eq!(Policy::FullJitter.plan(1012, 3, 0.5), (500, 0));
    }
}
