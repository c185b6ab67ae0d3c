//! Reconnect back-off: exponential from 100 ms, doubling up to 5 s, each delay jittered.

use std::time::Duration;

use super::rng::XorShift;

/// First delay.
pub const INITIAL: Duration = Duration::from_millis(100);
/// Longest delay.
pub const MAX: Duration = Duration::from_secs(5);

/// Delays between reconnection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    initial: Duration,
    max: Duration,
    rng: XorShift,
}

impl Backoff {
    /// From `INITIAL` to `MAX`: reconnecting to Redis.
    pub fn new(rng: XorShift) -> Backoff {
        Backoff::with_range(INITIAL, MAX, rng)
    }

    /// From `initial`, doubling up to `max`.
    pub fn with_range(initial: Duration, max: Duration, rng: XorShift) -> Backoff {
        Backoff {
            next: initial,
            initial,
            max,
            rng,
        }
    }

    /// The delay before the next attempt: the current step with ±25% jitter (so that many servers do not
    /// reconnect in lock-step); the step then doubles, up to `MAX`.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        step.mul_f64(0.75 + 0.5 * self.rng.unit())
    }

    /// After a successful connection.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(XorShift::new(1));
        let mut steps = Vec::new();
        for _ in 0..10 {
            steps.push(b.next_delay());
        }
        let nominal = [100u64, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000];
        for (d, n) in steps.iter().zip(nominal) {
            let ms = d.as_millis() as u64;
            assert!(ms >= n * 3 / 4 && ms <= n * 5 / 4, "{ms} vs {n}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
        let mut b = Backoff::with_range(
            Duration::from_secs(1),
            Duration::from_secs(30),
            XorShift::new(2),
        );
        let last = (0..10).map(|_| b.next_delay()).last().unwrap();
        assert!(last >= Duration::from_millis(22_500) && last <= Duration::from_millis(37_500));
    }
}
