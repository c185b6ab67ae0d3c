//! `ringcast feed --demo`: a simulated exchange publishing random-walk ticks to Redis exactly as a real
//! publisher would (HSET + PUBLISH in one MULTI/EXEC), at a steady total rate, until `--duration` or
//! SIGINT/SIGTERM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;

use super::market::Market;
use super::publish::OwnedTick;
use super::{CliError, RedisArgs};
use crate::config::parse_duration;
use crate::ingest::backoff::Backoff;
use crate::ingest::rng::XorShift;
use crate::runtime::signals;

/// Shortest interval between two messages: above 100 ticks/s, ticks are batched (one array message per
/// 10 ms).
const MIN_MESSAGE_INTERVAL: Duration = Duration::from_millis(10);
/// Progress line interval.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Largest batch in one message (catching up after a stall never builds a huge message).
const MAX_BATCH: u64 = 1_000;

/// `ringcast feed --demo [--symbols N] [--rate R] [--duration D] [--seed S]`
#[derive(Args, Debug, Clone)]
pub struct FeedArgs {
    /// Simulate an exchange (the only feed built in; real publishers use `ringcast publish` or HSET +
    /// PUBLISH themselves).
    #[arg(long)]
    pub demo: bool,
    /// How many symbols (PSX tickers first: EFERT, LUCK, HASCOL, …; then SYM0001, …).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub symbols: u32,
    /// Ticks per second, all symbols together (fractions allowed, e.g. 0.5).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Stop after this long (e.g. `30s`, `2m`); default: until SIGINT/SIGTERM.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Random seed (default: from the clock), for a reproducible market.
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub redis: RedisArgs,
}

/// Run `ringcast feed`; returns the exit code.
pub fn main(args: FeedArgs) -> i32 {
    super::finish(run(&args))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Set `stop` on SIGINT/SIGTERM (signals are blocked here and taken by a `sigwait` thread).
fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    signals::block();
    let flag = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("ringcast-signals".into())
        .spawn(move || {
            while !signals::wait().is_stop() {}
            flag.store(true, Ordering::Relaxed);
        });
    if spawned.is_err() {
        // Without the thread, let the signals act by default (terminate) again.
        signals::unblock();
    }
    stop
}

fn run(args: &FeedArgs) -> Result<(), CliError> {
    if !args.demo {
        return Err(CliError::Usage(
            "feed: only --demo (a simulated exchange) is built in; publish real ticks with \
             `ringcast publish` or HSET + PUBLISH on {prefix}ticks"
                .into(),
        ));
    }
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 1e6) {
        return Err(CliError::Usage(format!(
            "--rate must be between 0 (exclusive) and 1000000 ticks/s, got {}",
            args.rate
        )));
    }
    let stop = stop_on_signal();
    let keys = args.redis.keys();
    let seed = args
        .seed
        .unwrap_or_else(|| XorShift::from_clock().next_u64());
    let mut market = Market::new(args.symbols as usize, seed);
    let interval = Duration::from_secs_f64(1.0 / args.rate).max(MIN_MESSAGE_INTERVAL);
    let mut backoff = Backoff::new(XorShift::new(seed));
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + d);
    let past_deadline = || deadline.is_some_and(|d| Instant::now() >= d);
    tracing::info!(
        redis = %args.redis.shown(), channel = %keys.ticks, symbols = market.len(), rate = args.rate, seed,
        "demo feed starting"
    );

    let mut con: Option<super::target::Target> = None;
    let (mut ticks, mut messages, mut subscribers) = (0u64, 0u64, 0i64);
    // Ticks owed since `epoch` at `rate`; reset after an outage so the feed does not burst.
    let mut epoch = Instant::now();
    let mut sent_since_epoch = 0u64;
    let mut opened = false;
    let mut next_progress = started + PROGRESS_EVERY;
    while !stop.load(Ordering::Relaxed) && !past_deadline() {
        let Some(c) = con.as_mut() else {
            match args.redis.target() {
                Ok(c) => {
                    con = Some(c);
                    backoff.reset();
                    epoch = Instant::now();
                    sent_since_epoch = 0;
                }
                Err(e) => {
                    tracing::warn!("{e}; retrying");
                    sleep_until(Instant::now() + backoff.next_delay(), &stop);
                }
            }
            continue;
        };
        let batch: Vec<OwnedTick> = if !opened {
            // Open the market: one tick per symbol, so every symbol has a latest tick at once.
            let ts = now_ms();
            (0..market.len())
                .map(|i| owned(market.tick_of(i, ts)))
                .collect()
        } else {
            let owed = (epoch.elapsed().as_secs_f64() * args.rate) as u64;
            let due = owed.saturating_sub(sent_since_epoch).min(MAX_BATCH);
            let ts = now_ms();
            (0..due).map(|_| owned(market.tick(ts))).collect()
        };
        if !batch.is_empty() {
            // Chunks keep the opening message of a large market reasonable.
            for chunk in batch.chunks(MAX_BATCH as usize) {
                match c.store_and_publish(chunk) {
                    Ok(n) => {
                        subscribers = n;
                        messages += 1;
                        ticks += chunk.len() as u64;
                    }
                    Err(e) => {
                        tracing::warn!(redis = %args.redis.shown(), error = %e, "publish failed; reconnecting");
                        con = None;
                        break;
                    }
                }
            }
            if con.is_none() {
                continue;
            }
            if opened {
                sent_since_epoch += batch.len() as u64;
            }
            opened = true;
        }
        if Instant::now() >= next_progress {
            // The live rate: the market-opening tick of each symbol is not part of it.
            let secs = epoch.elapsed().as_secs_f64().max(1e-3);
            tracing::info!(
                ticks,
                messages,
                servers = subscribers,
                rate = format!("{:.1}/s", sent_since_epoch as f64 / secs),
                "demo feed running"
            );
            next_progress += PROGRESS_EVERY;
        }
        sleep_until(Instant::now() + interval, &stop);
    }
    tracing::info!(ticks, messages, "demo feed stopped");
    println!("demo feed: published {ticks} ticks in {messages} messages");
    Ok(())
}

fn owned((symbol, json): (String, String)) -> OwnedTick {
    OwnedTick {
        symbol,
        raw: json.into_bytes(),
    }
}

/// Sleep until `t`, waking early on `stop` (checked every 50 ms).
fn sleep_until(t: Instant, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let left = t.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}
