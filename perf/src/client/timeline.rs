//! Latency over time (`--stall`): every delivery of a stable connection also lands in the histogram of
//! its time bucket (by the CLOCK_REALTIME of the read, `bucket_ms` wide, from the coordinator's
//! `start_rt`), with its publish→arrival latency, so the coordinator can follow the p50 through a stall
//! and the recovery after it. Off unless the coordinator sends `timeline START_RT BUCKET_MS`.

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::common::*;

/// At most this many buckets (10 minutes of 100 ms buckets); later reads are not bucketed.
const MAX_BUCKETS: usize = 6000;

pub(super) struct Bucket {
    /// publish→read, µs
    read: Histogram<u64>,
    /// publish→arrival in the socket (kernel timestamp), µs
    arrival: Histogram<u64>,
    /// socket reads that returned data, and this process's CPU time when the bucket was first used
    reads: u64,
    cpu_ns: u64,
}

pub(super) struct Timeline {
    start_rt: u64,
    bucket_ns: u64,
    buckets: Vec<Option<Box<Bucket>>>,
}

/// Two significant figures are enough for a p50 over time and keep a bucket at ~20 kB.
fn small_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("histogram bounds")
}

impl Timeline {
    /// From `timeline START_RT BUCKET_MS`.
    pub(super) fn parse(arg: &str) -> Option<Timeline> {
        let mut it = arg.split_whitespace();
        let start_rt = it.next()?.parse().ok()?;
        let bucket_ms: u64 = it.next()?.parse().ok()?;
        (bucket_ms > 0).then(|| Timeline {
            start_rt,
            bucket_ns: bucket_ms * 1_000_000,
            buckets: Vec::new(),
        })
    }

    fn bucket(&mut self, now_rt: u64) -> Option<&mut Bucket> {
        let i = (now_rt.checked_sub(self.start_rt)? / self.bucket_ns) as usize;
        if i >= MAX_BUCKETS {
            return None;
        }
        if self.buckets.len() <= i {
            self.buckets.resize_with(i + 1, || None);
        }
        Some(self.buckets[i].get_or_insert_with(|| {
            Box::new(Bucket {
                read: small_hist(),
                arrival: small_hist(),
                reads: 0,
                cpu_ns: self_cpu_ns(),
            })
        }))
    }

    /// One socket read that returned data, at `now_rt`.
    pub(super) fn read(&mut self, now_rt: u64) {
        if let Some(b) = self.bucket(now_rt) {
            b.reads += 1;
        }
    }

    /// One delivery read at `now_rt`: publish→read and (0 if none) publish→arrival, µs.
    pub(super) fn record(&mut self, now_rt: u64, read_us: u64, arrival_us: u64) {
        if let Some(b) = self.bucket(now_rt) {
            let _ = b.read.record(read_us);
            if arrival_us > 0 {
                let _ = b.arrival.record(arrival_us);
            }
        }
    }

    /// `{"kind":"timeline", ...}`: one entry per bucket used (index, histograms, reads, CPU at its start).
    pub(super) fn report(&self) -> Value {
        let buckets: Vec<Value> = self
            .buckets
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let b = b.as_ref()?;
                Some(json!({"i": i, "reads": b.reads, "cpu_ns": b.cpu_ns,
                    "read": hist_to_b64(&b.read), "arrival": hist_to_b64(&b.arrival)}))
            })
            .collect();
        json!({"kind": "timeline", "start_rt": self.start_rt,
            "bucket_ms": self.bucket_ns / 1_000_000, "buckets": buckets})
    }
}
