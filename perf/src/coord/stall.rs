//! `--stall MS` (latency scenario): the server's core stops for MS milliseconds mid-run, and the run
//! reports how long latency took to come back.
//!
//! How: `--stall-kind stop` sends SIGSTOP to every server process and SIGCONT MS later; `hog` runs a
//! busy loop at SCHED_FIFO priority 1 on each core of `--server-core` for MS (a host stall: the server
//! is runnable but gets no CPU, and no signal is involved). The stall begins `--stall-at` seconds into
//! the measured phase.
//!
//! What: every client buckets each delivery's publish→read latency (and publish→arrival) by the
//! CLOCK_REALTIME of its read, in 100 ms buckets from the start of the measured phase
//! (`client/timeline.rs`); alongside, the coordinator samples per bucket the server's CPU (per
//! thread), its `/metrics` counters (ticks ingested, deliveries queued) and the ticks published. From
//! the merged buckets: the pre-stall p50 (every delivery read in the buckets that ended before the
//! stall began) and **recovered after X ms**: X = start of the first bucket B (among those that end
//! after the stall began) such that B and the 9 buckets after it (1 s; fewer if the phase ends first)
//! all have deliveries and a p50 under twice the pre-stall p50, minus the end of the stall (0 if B
//! began before it ended); with the number of buckets after B that went over again (a noisy host).
//! `drained_ms`: the first bucket that begins after the stall ended with a p50 under 2 × the pre-stall
//! p50 (no hold: the stall's own backlog gone, whatever the host did next), from the stall's end.
//! The same with an absolute 2 ms bound (`recovered_2ms_ms`), and on publish→arrival against its own
//! pre-stall p50 (`recovered_arrival_ms`: the server's recovery, without the load generator's read
//! delay). Never: `null`.

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::Run;
use super::report::fmt_us;
use crate::cli::RunArgs;
use crate::common::*;

pub(super) const BUCKET_MS: u64 = 100;
/// "Stays so": this many buckets in a row (1 s).
const HOLD: usize = 10;

pub(super) struct Stall {
    ms: f64,
    at: f64,
    kind: String,
    cores: Vec<usize>,
}

impl Stall {
    /// `None` without `--stall`; an error if it does not fit the run.
    pub(super) fn from_args(a: &RunArgs, duration: f64) -> Result<Option<Stall>, String> {
        let Some(ms) = a.stall else {
            return Ok(None);
        };
        if a.scenario != "latency" {
            return Err("--stall works with --scenario latency only".into());
        }
        let at = a.stall_at.unwrap_or((duration / 3.0).min(3.0));
        if at + ms / 1000.0 >= duration {
            return Err(format!(
                "--stall-at {at} s + --stall {ms} ms must end before the measured phase ({duration} s) does"
            ));
        }
        Ok(Some(Stall {
            ms,
            at,
            kind: a.stall_kind.clone(),
            cores: parse_cores(&a.server_core)?,
        }))
    }
}

/// One sample of the server and the publisher, taken every bucket.
#[derive(Default, Clone)]
struct Sample {
    rt: u64,
    /// per server thread (comm): CPU ns so far
    threads: Vec<(String, u64)>,
    published: u64,
    /// /metrics: ringcast_feed_ticks_total, ringcast_deliveries_total (None if the scrape failed)
    ingested: Option<u64>,
    queued: Option<u64>,
}

fn thread_cpu(pids: &[i32]) -> Vec<(String, u64)> {
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mut out: Vec<(String, u64)> = Vec::new();
    for &pid in pids {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in dir.flatten() {
            let Ok(s) = std::fs::read_to_string(t.path().join("stat")) else {
                continue;
            };
            let (Some(a), Some(b)) = (s.find('('), s.rfind(')')) else {
                continue;
            };
            let comm = s[a + 1..b].to_string();
            let f: Vec<&str> = s[b + 2..].split_whitespace().collect();
            let ut: u64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0);
            let st: u64 = f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0);
            let ns = (ut + st) * 1_000_000_000 / tck;
            match out.iter_mut().find(|(c, _)| *c == comm) {
                Some(e) => e.1 += ns,
                None => out.push((comm, ns)),
            }
        }
    }
    out
}

/// `ringcast_feed_ticks_total` and `ringcast_deliveries_total` from the server's /metrics (summed
/// over its labels), within 50 ms or not at all.
fn scrape(target: SocketAddrV4) -> Option<(u64, u64)> {
    let t = Duration::from_millis(50);
    let mut s = TcpStream::connect_timeout(&target.into(), t).ok()?;
    s.set_read_timeout(Some(t)).ok()?;
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    // Read until the server closes or goes quiet (a timeout ends the read, not the scrape).
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&raw);
    let sum = |name: &str| -> u64 {
        body.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    body.starts_with("HTTP/1.1 200").then(|| {
        (
            sum("ringcast_feed_ticks_total"),
            sum("ringcast_deliveries_total"),
        )
    })
}

/// Stops the server's core for `ms`: returns (stall start, stall end) in CLOCK_REALTIME ns, and a
/// warning if the stall was not what was asked.
fn stall(kind: &str, ms: f64, pids: &[i32], cores: &[usize]) -> (u64, u64, Option<String>) {
    let d = Duration::from_secs_f64(ms / 1000.0);
    if kind == "stop" {
        let t0 = realtime_ns();
        for &p in pids {
            // SAFETY: kill(2) with our own server's pid and a valid signal number.
            unsafe { libc::kill(p, libc::SIGSTOP) };
        }
        std::thread::sleep(d);
        for &p in pids {
            // SAFETY: as above.
            unsafe { libc::kill(p, libc::SIGCONT) };
        }
        return (t0, realtime_ns(), None);
    }
    // hog: one SCHED_FIFO busy thread per server core, all for the same window.
    let fifo_failed = Arc::new(AtomicBool::new(false));
    let start = monotonic_ns() + 1_000_000;
    let end = start + d.as_nanos() as u64;
    let hogs: Vec<_> = cores
        .iter()
        .map(|&c| {
            let failed = fifo_failed.clone();
            std::thread::spawn(move || {
                let _ = pin_to(0, &[c]);
                let p = libc::sched_param { sched_priority: 1 };
                // SAFETY: sets the calling thread's policy; `p` is a valid sched_param.
                if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) } != 0 {
                    failed.store(true, Ordering::Relaxed);
                }
                while monotonic_ns() < start {}
                let t0 = realtime_ns();
                while monotonic_ns() < end {
                    std::hint::spin_loop();
                }
                (t0, realtime_ns())
            })
        })
        .collect();
    let spans: Vec<(u64, u64)> = hogs.into_iter().filter_map(|h| h.join().ok()).collect();
    let t0 = spans.iter().map(|s| s.0).min().unwrap_or(0);
    let t1 = spans.iter().map(|s| s.1).max().unwrap_or(0);
    let warn = fifo_failed.load(Ordering::Relaxed).then(|| {
        "--stall-kind hog could not use SCHED_FIFO (not root?): the hog shared the core with the server, which was slowed, not stopped".to_string()
    });
    (t0, t1, warn)
}

/// The latency phase with a stall in it; returns the `stall` object of the result.
pub(super) fn latency(
    run: &mut Run,
    s: &Stall,
    target: SocketAddrV4,
    metrics: bool,
) -> Result<Value, String> {
    let o = run.o;
    let start_rt = realtime_ns() + (o.warmup * 1e9) as u64;
    run.broadcast(&format!("timeline {start_rt} {BUCKET_MS}"))?;

    let done = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let sampler = {
        let (done, samples, pids, shared) = (
            done.clone(),
            samples.clone(),
            run.server_pids.clone(),
            run.shared.clone(),
        );
        std::thread::spawn(move || {
            let mut next = start_rt;
            while !done.load(Ordering::Relaxed) {
                let now = realtime_ns();
                if now < next {
                    std::thread::sleep(Duration::from_nanos((next - now).min(20_000_000)));
                    continue;
                }
                next += BUCKET_MS * 1_000_000;
                let m = if metrics { scrape(target) } else { None };
                let x = Sample {
                    rt: realtime_ns(),
                    threads: thread_cpu(&pids),
                    published: shared.published.load(Ordering::Relaxed),
                    ingested: m.map(|m| m.0),
                    queued: m.map(|m| m.1),
                };
                samples.lock().unwrap().push(x);
            }
        })
    };
    let staller = {
        let (kind, ms, pids, cores) = (
            s.kind.clone(),
            s.ms,
            run.server_pids.clone(),
            s.cores.clone(),
        );
        let at = start_rt + (s.at * 1e9) as u64;
        std::thread::spawn(move || {
            let now = realtime_ns();
            if at > now {
                std::thread::sleep(Duration::from_nanos(at - now));
            }
            stall(&kind, ms, &pids, &cores)
        })
    };

    let phase = run.phase("latency", o.rate, o.warmup, o.duration);
    let end_rt = realtime_ns();
    let stalled = staller.join();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let (t0, t1, warn) = stalled.map_err(|_| "the stall thread panicked".to_string())?;
    phase?;
    if let Some(w) = warn {
        run.warnings.push(w);
    }

    run.broadcast("timeline_report")?;
    let reports = run.wait_kind("timeline", Duration::from_secs(30))?;
    let n = ((end_rt - start_rt) / (BUCKET_MS * 1_000_000)) as usize; // complete buckets
    let mut read: Vec<_> = (0..n).map(|_| new_hist()).collect();
    let mut arrival: Vec<_> = (0..n).map(|_| new_hist()).collect();
    let mut reads = vec![0u64; n];
    let mut client_cpu = vec![0u64; n + 1];
    for r in &reports {
        for b in r["buckets"].as_array().into_iter().flatten() {
            let i = b["i"].as_u64().unwrap_or(u64::MAX) as usize;
            if i >= n {
                continue;
            }
            if let Some(h) = b["read"].as_str().and_then(hist_from_b64) {
                let _ = read[i].add(&h);
            }
            if let Some(h) = b["arrival"].as_str().and_then(hist_from_b64) {
                let _ = arrival[i].add(&h);
            }
            reads[i] += b["reads"].as_u64().unwrap_or(0);
            client_cpu[i] += b["cpu_ns"].as_u64().unwrap_or(0);
        }
    }
    let bucket_ns = BUCKET_MS * 1_000_000;
    let b_start = |i: usize| start_rt + i as u64 * bucket_ns;
    // Pre-stall: the buckets that ended before the stall began.
    let mut pre = new_hist();
    for (i, h) in read.iter().enumerate() {
        if b_start(i + 1) <= t0 {
            let _ = pre.add(h);
        }
    }
    let pre_p50_us = pre.value_at_quantile(0.5);
    let mut pre_arrival = new_hist();
    for (i, h) in arrival.iter().enumerate() {
        if b_start(i + 1) <= t0 {
            let _ = pre_arrival.add(h);
        }
    }
    let pre_arrival_p50_us = pre_arrival.value_at_quantile(0.5);
    let p50 = |h: &hdrhistogram::Histogram<u64>| (!h.is_empty()).then(|| h.value_at_quantile(0.5));
    // The first bucket from which the p50 stays under `limit_us` for HOLD buckets in a row (or to the
    // end of the phase, if that comes first): (ms after the stall ended, buckets over the limit after it).
    let recovered =
        |hists: &[hdrhistogram::Histogram<u64>], limit_us: u64| -> Option<(u64, usize)> {
            let first = (0..n).find(|&i| b_start(i + 1) > t0)?;
            let good = |i: usize| p50(&hists[i]).is_some_and(|v| v < limit_us);
            let b = (first..n).find(|&b| (b..n.min(b + HOLD)).all(good))?;
            let later = (b..n).filter(|&i| !good(i)).count();
            Some((b_start(b).saturating_sub(t1) / 1_000_000, later))
        };
    let rec = recovered(&read, 2 * pre_p50_us);
    let rec_2ms = recovered(&read, 2000);
    // The same on publish→arrival: the server's side, without the time deliveries then waited for
    // the load generator to read them.
    let rec_arrival = recovered(&arrival, 2 * pre_arrival_p50_us);
    // Drained: the first bucket under 2× the pre-stall p50 at all (no hold): how long the stall's own
    // backlog took to go, whatever the host did afterwards.
    let drained = (0..n)
        .filter(|&i| b_start(i + 1) > t1)
        .find(|&i| p50(&read[i]).is_some_and(|v| v < 2 * pre_p50_us))
        .map(|i| b_start(i).saturating_sub(t1) / 1_000_000);

    // Per-bucket rows: latency, and from the samples, server CPU per thread, ticks published and
    // ingested and deliveries queued in the bucket.
    let samples = samples.lock().unwrap().clone();
    let at = |i: usize| {
        samples
            .iter()
            .rev()
            .find(|x| x.rt <= b_start(i) + bucket_ns / 2)
    };
    let mut rows = Vec::new();
    for i in 0..n {
        let (a, b) = (at(i), at(i + 1));
        let delta = |f: &dyn Fn(&Sample) -> Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(f(b)?.saturating_sub(f(a)?)),
            _ => None,
        };
        let mut threads = json!({});
        if let (Some(a), Some(b)) = (a, b) {
            for (comm, ns) in &b.threads {
                let before = a.threads.iter().find(|t| t.0 == *comm).map_or(0, |t| t.1);
                threads[comm] = json!(
                    (ns.saturating_sub(before) as f64 / bucket_ns as f64 * 1000.0).round() / 10.0
                );
            }
        }
        let deliveries = read[i].len();
        rows.push(json!({
            "t_ms": i as u64 * BUCKET_MS,
            "deliveries": deliveries,
            "reads": reads[i],
            "p50_us": p50(&read[i]), "p99_us": (!read[i].is_empty()).then(|| read[i].value_at_quantile(0.99)),
            "arrival_p50_us": p50(&arrival[i]),
            "client_cpu_pct": (client_cpu[i] > 0 && client_cpu[i + 1] > 0).then(|| (client_cpu[i + 1].saturating_sub(client_cpu[i])) as f64 / bucket_ns as f64 * 100.0),
            "server_cpu_pct": threads,
            "published": delta(&|x| Some(x.published)),
            "ingested": delta(&|x| x.ingested),
            "queued": delta(&|x| x.queued),
        }));
    }
    let ms = |ns: u64| (ns.saturating_sub(start_rt)) as f64 / 1e6;
    let fmt = |r: Option<(u64, usize)>| match r {
        Some((x, 0)) => format!("after {x} ms"),
        Some((x, later)) => format!("after {x} ms ({later} later buckets over)"),
        None => "not within the run".to_string(),
    };
    run.eprint_line(&format!(
        "stall ({}): {:.0} ms at {:.0}–{:.0} ms of the phase; pre-stall p50 {}; first back under 2× that after {} ms; held for 1 s: {}; p50 < 2 ms: {}; publish→arrival p50 < 2× its pre-stall {}: {}",
        s.kind, (t1 - t0) as f64 / 1e6, ms(t0), ms(t1), fmt_us(Some(pre_p50_us)),
        drained.map_or("-".to_string(), |d| d.to_string()), fmt(rec), fmt(rec_2ms),
        fmt_us(Some(pre_arrival_p50_us)), fmt(rec_arrival)
    ));
    let line = |i: usize, r: &Value| {
        format!(
            "  {:>6} ms  p50 {:>8}  arrival p50 {:>8}  read {:>6}  in {:>6} reads  ticks published {:>4} ingested {:>4}  queued {:>6}  server CPU % {}",
            r["t_ms"],
            fmt_us(r["p50_us"].as_u64()),
            fmt_us(r["arrival_p50_us"].as_u64()),
            r["deliveries"],
            reads[i],
            r["published"],
            r["ingested"],
            r["queued"],
            r["server_cpu_pct"]
        )
    };
    // The buckets around the stall: from 300 ms before it to 1 s after it ended.
    for (i, r) in rows.iter().enumerate() {
        if b_start(i + 1) + 300_000_000 > t0 && b_start(i) < t1 + 1_000_000_000 {
            let l = line(i, r);
            run.eprint_line(&l);
        }
    }
    Ok(json!({
        "kind": s.kind, "requested_ms": s.ms, "at_s": s.at,
        "start_ms": ms(t0), "end_ms": ms(t1), "stalled_ms": (t1 - t0) as f64 / 1e6,
        "bucket_ms": BUCKET_MS,
        "pre_stall_p50_us": pre_p50_us,
        "recovered_ms": rec.map(|r| r.0),
        "recovered_later_over": rec.map(|r| r.1),
        "recovered_2ms_ms": rec_2ms.map(|r| r.0),
        "recovered_2ms_later_over": rec_2ms.map(|r| r.1),
        "drained_ms": drained,
        "pre_stall_arrival_p50_us": pre_arrival_p50_us,
        "recovered_arrival_ms": rec_arrival.map(|r| r.0),
        "buckets": rows,
    }))
}
