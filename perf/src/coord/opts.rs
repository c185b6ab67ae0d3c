//! The run's options: the flags with the scenario's defaults, the plan of client processes and
//! subscriptions, the time the run is planned to take.

use std::net::Ipv4Addr;

use crate::cli::RunArgs;
use crate::common::*;

pub(super) struct Opts {
    pub(super) scenario: String,
    pub(super) conns: u64,
    pub(super) symbols: u32,
    pub(super) per_conn: u32,
    pub(super) sub_dist: String,
    pub(super) zipf_s: f64,
    pub(super) pub_dist: String,
    pub(super) form: String,
    pub(super) tick_bytes: usize,
    pub(super) rate: f64,
    pub(super) steps: Vec<f64>,
    pub(super) step_duration: f64,
    pub(super) duration: f64,
    pub(super) warmup: f64,
    pub(super) client_cores: Vec<usize>,
    pub(super) per_client: u64,
    /// fanout: run every step even past saturation (CPU per delivery at each offered rate).
    pub(super) all_steps: bool,
    pub(super) connect_concurrency: u64,
    pub(super) churn_frac: f64,
    pub(super) churn_rate: f64,
    pub(super) slow_frac: f64,
    pub(super) seed: u64,
    pub(super) prefix: String,
    pub(super) batch: bool,
    pub(super) saturation_p99_ms: f64,
    pub(super) timeout: f64,
    pub(super) out: String,
    pub(super) svg: String,
    pub(super) quiet: bool,
    /// --tls-resume, --tls-groups G: passed on to the clients.
    pub(super) client_tls: Vec<String>,
    /// storm: `term` or `kill`, the clients' reconnect policy, the time allowed for all to come back,
    /// the wait between the old server's exit and the new one's start.
    pub(super) storm_signal: String,
    pub(super) reconnect_policy: String,
    pub(super) storm_timeout: f64,
    pub(super) storm_down: f64,
    pub(super) storm_restart: String,
}

fn defaults(scenario: &str) -> (u64, f64, f64) {
    // (conns, rate, duration)
    match scenario {
        "idle" => (10_000, 0.0, 10.0),
        "fanout" => (10_000, 0.0, 5.0),
        "latency" => (10_000, 1000.0, 20.0),
        "churn" => (5_000, 500.0, 15.0),
        "slow" => (2_000, 500.0, 10.0),
        "storm" => (10_000, 500.0, 2.0),
        _ => (1000, 100.0, 10.0),
    }
}

/// The run's options from the flags (values already checked by clap), with the scenario's defaults.
pub(super) fn opts(a: &RunArgs) -> Opts {
    let scenario = a.scenario.clone();
    let (dconns, drate, ddur) = defaults(&scenario);
    Opts {
        conns: a.conns.unwrap_or(dconns),
        symbols: a.symbols,
        per_conn: a.per_conn,
        sub_dist: a.sub_dist.clone(),
        zipf_s: a.zipf_s,
        pub_dist: a.pub_dist.clone(),
        form: a.form.clone(),
        tick_bytes: a.tick_bytes,
        rate: a.rate.unwrap_or(drate),
        steps: a.steps.0.clone(),
        step_duration: a.step_duration,
        duration: a.duration.unwrap_or(ddur),
        warmup: a.warmup,
        client_cores: a.client_cores.0.clone(),
        per_client: a.conns_per_client,
        connect_concurrency: a.connect_concurrency,
        churn_frac: a
            .churn_frac
            .unwrap_or(if scenario == "churn" { 0.2 } else { 0.0 }),
        churn_rate: a.churn_rate,
        slow_frac: a.slow_frac,
        seed: a.seed,
        prefix: a.prefix.clone(),
        batch: !a.no_batch,
        saturation_p99_ms: a.saturation_p99_ms,
        all_steps: a.all_steps,
        timeout: a.timeout.unwrap_or(0.0),
        out: a
            .out
            .clone()
            .unwrap_or_else(|| format!("ringcast-load-{scenario}.json")),
        svg: a
            .svg
            .clone()
            .unwrap_or_else(|| format!("ringcast-load-{scenario}.svg")),
        quiet: a.quiet,
        client_tls: {
            let mut v = Vec::new();
            if a.tls.tls_resume {
                v.push("--tls-resume".to_string());
            }
            if let Some(g) = &a.tls.tls_groups {
                v.extend(["--tls-groups".to_string(), g.clone()]);
            }
            v
        },
        storm_signal: a.storm_signal.clone(),
        reconnect_policy: a.reconnect_policy.clone(),
        storm_timeout: a.storm_timeout,
        storm_down: a.storm_down,
        storm_restart: a.storm_restart.clone(),
        scenario,
    }
}

/// Per client process (offset, connections, first source address); and the subscriber counts per
/// symbol: all stable connections, and per client the first `slow` share.
pub(super) type Plan = (Vec<(u64, u64, Ipv4Addr)>, Vec<u64>, Vec<u64>);

pub(super) fn plan(o: &Opts) -> Result<Plan, String> {
    let sub_dist = Dist::new(&o.sub_dist, o.symbols, o.zipf_s)?;
    let n_procs = o.conns.div_ceil(o.per_client).max(1);
    let mut plan = Vec::new();
    let base = u32::from(Ipv4Addr::new(127, 0, 0, 2));
    let addrs_per_proc = o.per_client.div_ceil(28_000) as u32;
    let mut left = o.conns;
    for i in 0..n_procs {
        let n = left.min(o.per_client);
        left -= n;
        plan.push((
            i * o.per_client,
            n,
            Ipv4Addr::from(base + i as u32 * addrs_per_proc),
        ));
    }
    let mut subs_stable = vec![0u64; o.symbols as usize];
    let mut subs_slow = vec![0u64; o.symbols as usize];
    for &(offset, n, _) in &plan {
        let slow_n = ((n as f64) * o.slow_frac).round() as u64;
        for j in 0..n {
            let g = offset + j;
            let churner = o.churn_frac > 0.0 && Rng::new(g ^ 0xC4u64).unit() < o.churn_frac;
            if churner {
                continue;
            }
            for s in subscriptions(g, o.per_conn, &sub_dist, o.seed) {
                subs_stable[s as usize] += 1;
                if j < slow_n {
                    subs_slow[s as usize] += 1;
                }
            }
        }
    }
    Ok((plan, subs_stable, subs_slow))
}

pub(super) fn planned_secs(o: &Opts) -> f64 {
    let connect = o.conns as f64 / 1000.0 + 10.0;
    let phases = match o.scenario.as_str() {
        "fanout" => o.steps.len() as f64 * (o.step_duration + o.warmup + 2.0),
        "churn" => o.duration * 4.0 / 3.0 + 2.0 * o.warmup + 4.0,
        "slow" => 2.0 * (o.duration + o.warmup + 2.0),
        "storm" => o.duration + o.warmup + 2.0 + o.storm_timeout + 30.0,
        _ => o.duration + o.warmup + 2.0,
    };
    connect + phases
}
