//! Fixed-bucket histograms, written by one worker only (relaxed load + store, no atomic read-modify-write,
//! no allocation) and read on scrape. The buckets are chosen for the workload ([`PublishToSend`],
//! [`ConnBacklog`]) and rendered as a Prometheus histogram: cumulative `_bucket{le=…}`, `_sum`, `_count`.

use std::fmt::Write;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Most buckets a histogram may have (bounds, plus the `+Inf` one).
const MAX_BUCKETS: usize = 24;

/// A histogram's upper bounds in its integer unit (ascending), and how to show them.
pub trait Buckets {
    /// Upper bounds (inclusive), ascending; at most `MAX_BUCKETS - 1`.
    const BOUNDS: &'static [u64];
    /// Integer units per exposed unit (1e6 for µs shown as seconds; 1 for bytes).
    const PER_UNIT: f64;
}

/// Publish→send delay in µs, shown in seconds: 50 µs … 10 s (a tick on a quiet box is handed to the
/// sockets within ~100 µs of its publish; seconds mean a clock skew or a stalled edge).
#[derive(Debug, Default)]
pub struct PublishToSend;

impl Buckets for PublishToSend {
    const BOUNDS: &'static [u64] = &[
        50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
        1_000_000, 2_500_000, 5_000_000, 10_000_000,
    ];
    const PER_UNIT: f64 = 1e6;
}

/// Bytes waiting in one connection's queues: 0 (nothing waits: the common case) … 16 MiB
/// (`--max-backlog` defaults to 1 MiB, so the top buckets see only raised limits).
#[derive(Debug, Default)]
pub struct ConnBacklog;

impl Buckets for ConnBacklog {
    const BOUNDS: &'static [u64] = &[
        0,
        1 << 10,
        4 << 10,
        16 << 10,
        64 << 10,
        256 << 10,
        1 << 20,
        4 << 20,
        16 << 20,
    ];
    const PER_UNIT: f64 = 1.0;
}

/// Counts per bucket (not cumulative: the one bucket a value falls in is incremented) and the sum.
#[derive(Debug)]
pub struct Histogram<B> {
    counts: [AtomicU64; MAX_BUCKETS],
    sum: AtomicU64,
    buckets: PhantomData<B>,
}

impl<B: Buckets> Default for Histogram<B> {
    fn default() -> Self {
        debug_assert!(B::BOUNDS.len() < MAX_BUCKETS);
        Histogram {
            counts: Default::default(),
            sum: AtomicU64::new(0),
            buckets: PhantomData,
        }
    }
}

impl<B: Buckets> Histogram<B> {
    /// Count one value. Only the owning worker calls this (a plain load and store, like `WorkerStats`).
    pub fn observe(&self, value: u64) {
        let i = B::BOUNDS.partition_point(|&bound| bound < value);
        let c = &self.counts[i];
        c.store(c.load(Relaxed) + 1, Relaxed);
        self.sum
            .store(self.sum.load(Relaxed).wrapping_add(value), Relaxed);
    }

    /// The counts per bucket (the last one is `+Inf`) and the sum, in the integer unit.
    pub fn read(&self) -> (Vec<u64>, u64) {
        let counts = self.counts[..=B::BOUNDS.len()]
            .iter()
            .map(|c| c.load(Relaxed))
            .collect();
        (counts, self.sum.load(Relaxed))
    }
}

/// Write the Prometheus histogram `name` over the sum of `parts` (e.g. every worker's). The count is the
/// `+Inf` bucket, so a scrape racing a writer is still self-consistent.
pub fn render<'a, B: Buckets + 'a>(
    name: &str,
    help: &str,
    parts: impl IntoIterator<Item = &'a Histogram<B>>,
    out: &mut String,
) {
    let mut counts = vec![0u64; B::BOUNDS.len() + 1];
    let mut sum = 0u64;
    for h in parts {
        let (c, s) = h.read();
        counts.iter_mut().zip(c).for_each(|(a, b)| *a += b);
        sum = sum.wrapping_add(s);
    }
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0;
    for (i, count) in counts.iter().enumerate() {
        cumulative += count;
        match B::BOUNDS.get(i) {
            Some(&bound) => {
                let le = bound as f64 / B::PER_UNIT;
                let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
            }
            None => {
                let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
            }
        }
    }
    let _ = writeln!(
        out,
        "{name}_sum {}\n{name}_count {cumulative}",
        sum as f64 / B::PER_UNIT
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(h: &Histogram<PublishToSend>) -> Vec<String> {
        let mut s = String::new();
        render("x", "help", [h], &mut s);
        s.lines().map(str::to_string).collect()
    }

    #[test]
    fn a_value_on_a_bound_counts_in_that_bucket() {
        let h = Histogram::<PublishToSend>::default();
        for v in [0, 50, 51, 100, 10_000_000, 10_000_001, u64::MAX / 4] {
            h.observe(v);
        }
        let (counts, _) = h.read();
        assert_eq!(counts.len(), PublishToSend::BOUNDS.len() + 1);
        assert_eq!(counts[0], 2, "0 and 50 are <= 50 µs");
        assert_eq!(counts[1], 2, "51 and 100");
        assert_eq!(counts[PublishToSend::BOUNDS.len() - 1], 1, "10 s exactly");
        assert_eq!(counts[PublishToSend::BOUNDS.len()], 2, "past 10 s: +Inf");
    }

    #[test]
    fn rendering_is_cumulative_with_count_equal_to_inf_and_sum_in_seconds() {
        let h = Histogram::<PublishToSend>::default();
        h.observe(40); // 50 µs bucket
        h.observe(300); // 500 µs bucket
        h.observe(2_000_000); // 2.5 s bucket
        let text = lines(&h);
        assert_eq!(text[0], "# HELP x help");
        assert_eq!(text[1], "# TYPE x histogram");
        assert_eq!(text[2], "x_bucket{le=\"0.00005\"} 1");
        assert!(text.contains(&"x_bucket{le=\"0.00025\"} 1".to_string()));
        assert!(text.contains(&"x_bucket{le=\"0.0005\"} 2".to_string()));
        assert!(text.contains(&"x_bucket{le=\"2.5\"} 3".to_string()));
        assert!(text.contains(&"x_bucket{le=\"10\"} 3".to_string()));
        assert!(text.contains(&"x_bucket{le=\"+Inf\"} 3".to_string()));
        assert!(text.contains(&"x_count 3".to_string()));
        let sum: f64 = text
            .iter()
            .find_map(|l| l.strip_prefix("x_sum "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 2.00034).abs() < 1e-9, "{sum}");
        let mut last = 0;
        for l in text.iter().filter(|l| l.starts_with("x_bucket")) {
            let n: u64 = l.rsplit(' ').next().unwrap().parse().unwrap();
            assert!(n >= last, "cumulative: {l}");
            last = n;
        }
    }

    #[test]
    fn several_parts_are_summed_and_bytes_show_as_integers() {
        let a = Histogram::<ConnBacklog>::default();
        let b = Histogram::<ConnBacklog>::default();
        a.observe(0);
        b.observe(0);
        b.observe(5000);
        let mut s = String::new();
        render("b", "h", [&a, &b], &mut s);
        assert!(s.contains("b_bucket{le=\"0\"} 2\n"), "{s}");
        assert!(s.contains("b_bucket{le=\"1024\"} 2\n"), "{s}");
        assert!(s.contains("b_bucket{le=\"16384\"} 3\n"), "{s}");
        assert!(s.contains("b_sum 5000\nb_count 3\n"), "{s}");
    }
}
