//! One run's conversation with its client processes: commands out, JSON lines in, progress, and the
//! measured phases (merged counters and histograms, server CPU and RSS, saturation checks).

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::report::{fmt_us, latency_json};
use super::sys::{server_cpu_ns, server_rss_kb};
use super::{Opts, Proc};
use crate::common::*;
use crate::publisher;

pub(super) struct Run<'a> {
    pub(super) o: &'a Opts,
    pub(super) rx: mpsc::Receiver<(usize, Option<Value>)>,
    pub(super) procs: &'a mut Vec<Proc>,
    pub(super) shared: Arc<publisher::Shared>,
    pub(super) server_pids: Vec<i32>,
    pub(super) redis_pid: Option<i32>,
    /// Other processes whose CPU each phase reports in `proc_cpu_pct` (redis-servers, HAProxy).
    pub(super) cpu_groups: Vec<(String, Vec<i32>)>,
    pub(super) progress: Vec<Value>,
    pub(super) last_progress_print: Instant,
    pub(super) deadline: Instant,
    pub(super) label: String,
    pub(super) last_deliv: (u64, Instant),
    pub(super) tty: bool,
    pub(super) exited: Vec<bool>,
    pub(super) subs_stable: Vec<u64>,
    pub(super) subs_slow: Vec<u64>,
    pub(super) phases: Vec<Value>,
    pub(super) warnings: Vec<String>,
}

impl Run<'_> {
    pub(super) fn broadcast(&mut self, cmd: &str) -> Result<(), String> {
        for (i, p) in self.procs.iter_mut().enumerate() {
            if self.exited[i] {
                continue;
            }
            writeln!(p.stdin, "{cmd}").map_err(|e| format!("client {i}: {e}"))?;
            let _ = p.stdin.flush();
        }
        Ok(())
    }

    pub(super) fn eprint_line(&mut self, s: &str) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{s}");
    }

    /// Handles one message from a client; returns it when it is not a progress line.
    pub(super) fn handle(&mut self, i: usize, v: Option<Value>) -> Result<Option<Value>, String> {
        let Some(v) = v else {
            self.exited[i] = true;
            return Err(format!("client process {i} exited unexpectedly"));
        };
        match v["kind"].as_str() {
            Some("progress") => {
                self.progress[i] = v;
                self.maybe_print_progress();
                Ok(None)
            }
            Some("timeout") => Err(format!("client process {i} hit its deadline")),
            _ => Ok(Some(v)),
        }
    }

    pub(super) fn maybe_print_progress(&mut self) {
        let every = if self.tty { 1.0 } else { 5.0 };
        if self.last_progress_print.elapsed().as_secs_f64() < every || self.o.quiet {
            return;
        }
        self.last_progress_print = Instant::now();
        let sum = |k: &str| {
            self.progress
                .iter()
                .map(|p| p[k].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        let deliv = sum("deliveries");
        let dt = self.last_deliv.1.elapsed().as_secs_f64();
        let rate = if dt > 0.0 {
            deliv.saturating_sub(self.last_deliv.0) as f64 / dt
        } else {
            0.0
        };
        self.last_deliv = (deliv, Instant::now());
        let line = format!(
            "[{}] open {}/{} | deliveries {} ({:.0}/s) | lost {} | errors {} | publishing {:.0}/s",
            self.label,
            sum("open"),
            self.o.conns,
            deliv,
            rate,
            sum("lost"),
            sum("errors"),
            self.shared.rate()
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    pub(super) fn check_deadline(&self) -> Result<(), String> {
        if Instant::now() > self.deadline {
            return Err("hard timeout reached (--timeout): stopping".into());
        }
        Ok(())
    }

    pub(super) fn pump_for(&mut self, d: Duration) -> Result<(), String> {
        let end = Instant::now() + d;
        loop {
            self.check_deadline()?;
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            match self
                .rx
                .recv_timeout((end - now).min(Duration::from_millis(200)))
            {
                Ok((i, v)) => {
                    self.handle(i, v)?;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("all client processes exited".into());
                }
            }
        }
    }

    /// Waits for one message of `kind` from every client process.
    pub(super) fn wait_kind(&mut self, kind: &str, limit: Duration) -> Result<Vec<Value>, String> {
        let end = Instant::now() + limit;
        let mut got: Vec<Option<Value>> = vec![None; self.procs.len()];
        while got.iter().any(|g| g.is_none()) {
            self.check_deadline()?;
            let now = Instant::now();
            if now >= end {
                return Err(format!(
                    "timed out waiting for `{kind}` from the client processes"
                ));
            }
            match self
                .rx
                .recv_timeout((end - now).min(Duration::from_millis(200)))
            {
                Ok((i, v)) => {
                    if v.is_none() && kind == "final" {
                        self.exited[i] = true;
                        continue;
                    }
                    if let Some(v) = self.handle(i, v)?
                        && v["kind"].as_str() == Some(kind)
                    {
                        got[i] = Some(v);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        Ok(got.into_iter().flatten().collect())
    }

    /// One measured phase: set the rate, warm up, reset, measure, report and merge.
    pub(super) fn phase(
        &mut self,
        name: &str,
        rate: f64,
        warmup: f64,
        duration: f64,
    ) -> Result<Value, String> {
        if self.label == "connect" || !self.label.starts_with("step") {
            self.label = name.to_string();
        }
        self.shared.set_rate(rate);
        self.pump_for(Duration::from_secs_f64(warmup))?;
        self.broadcast("reset")?;
        let cpu0 = server_cpu_ns(&self.server_pids);
        let redis_cpu0 = self.redis_pid.map(|p| server_cpu_ns(&[p]));
        let groups0: Vec<u64> = self
            .cpu_groups
            .iter()
            .map(|g| server_cpu_ns(&g.1))
            .collect();
        let pub0 = self.shared.published.load(Ordering::Relaxed);
        let msgs0 = self.shared.messages.load(Ordering::Relaxed);
        let pubcpu0 = self.shared.cpu_ns.load(Ordering::Relaxed);
        let per0 = self.shared.per_symbol.lock().unwrap().clone();
        self.shared.max_backlog.store(0, Ordering::Relaxed);
        let rss0 = server_rss_kb(&self.server_pids);
        let t0 = Instant::now();
        self.pump_for(Duration::from_secs_f64(duration))?;
        self.broadcast(&format!("report {name}"))?;
        let wall = t0.elapsed().as_secs_f64();
        let cpu1 = server_cpu_ns(&self.server_pids);
        let redis_cpu1 = self.redis_pid.map(|p| server_cpu_ns(&[p]));
        let groups_pct: serde_json::Map<String, Value> = (self.cpu_groups.iter().zip(groups0))
            .map(|((name, pids), c0)| {
                (
                    name.clone(),
                    json!((server_cpu_ns(pids) - c0) as f64 / wall / 1e7),
                )
            })
            .collect();
        let pub1 = self.shared.published.load(Ordering::Relaxed);
        let msgs1 = self.shared.messages.load(Ordering::Relaxed);
        let pubcpu1 = self.shared.cpu_ns.load(Ordering::Relaxed);
        let per1 = self.shared.per_symbol.lock().unwrap().clone();
        let backlog = self.shared.max_backlog.load(Ordering::Relaxed);
        let rss1 = server_rss_kb(&self.server_pids);
        let reports = self.wait_kind("report", Duration::from_secs(30))?;

        let mut hist = new_hist();
        let mut arrival_hist = new_hist();
        let mut churn_hist = new_hist();
        let mut connect_hist = new_hist();
        let mut c = json!({});
        let mut closes = json!({});
        let mut client_cpu = Vec::new();
        let mut slow_conns = 0u64;
        let mut open = 0u64;
        for r in &reports {
            if let Some(h) = r["hist"].as_str().and_then(hist_from_b64) {
                let _ = hist.add(&h);
            }
            if let Some(h) = r["arrival_hist"].as_str().and_then(hist_from_b64) {
                let _ = arrival_hist.add(&h);
            }
            if let Some(h) = r["churn_hist"].as_str().and_then(hist_from_b64) {
                let _ = churn_hist.add(&h);
            }
            if let Some(h) = r["connect_hist"].as_str().and_then(hist_from_b64) {
                let _ = connect_hist.add(&h);
            }
            for (k, v) in r["counters"].as_object().unwrap() {
                let cur = c[k].as_u64().unwrap_or(0);
                c[k] = json!(cur + v.as_u64().unwrap_or(0));
            }
            for (k, v) in r["closes"].as_object().into_iter().flatten() {
                let cur = closes[k].as_u64().unwrap_or(0);
                closes[k] = json!(cur + v.as_u64().unwrap_or(0));
            }
            let w = r["wall_ns"].as_f64().unwrap_or(1.0).max(1.0);
            client_cpu.push(r["cpu_ns"].as_f64().unwrap_or(0.0) / w);
            slow_conns += r["slow"].as_u64().unwrap_or(0);
            open += r["open"].as_u64().unwrap_or(0);
        }
        let deliveries = c["deliveries"].as_u64().unwrap_or(0);
        let stable = deliveries - c["churn_deliveries"].as_u64().unwrap_or(0);
        let published = pub1 - pub0;
        let slow_active = slow_conns > 0;
        let mut expected = 0u64;
        for s in 0..per1.len() {
            let n = per1[s] - per0[s];
            let subs = self.subs_stable[s] - if slow_active { self.subs_slow[s] } else { 0 };
            expected += n * subs;
        }
        let server_cpu_ns = cpu1.saturating_sub(cpu0);
        let cores = self.o.client_cores.len() as f64;
        let client_cpu_total: f64 = client_cpu.iter().sum();
        let client_cpu_max = client_cpu.iter().cloned().fold(0.0, f64::max);
        let client_saturated = client_cpu_max > 0.9 || client_cpu_total > 0.9 * cores;
        let achieved = published as f64 / wall;
        let mut warnings = Vec::new();
        if client_saturated {
            warnings.push(format!(
                "load generator saturated ({:.0}% of a core in the busiest client process, {:.0}% of {} client core(s) in all): results are a lower bound",
                client_cpu_max * 100.0, client_cpu_total / cores * 100.0, cores));
        }
        if rate > 0.0 && achieved < 0.95 * rate {
            warnings.push(format!("publisher fell behind: {achieved:.0} ticks/s of {rate:.0} offered (max backlog {backlog})"));
        }
        let lat = latency_json(&hist);
        // Publish→arrival in the clients' sockets (kernel timestamps): the server's side of the latency.
        // When deliveries also waited long in those sockets before a client read them, the load
        // generator (not the server) made the difference between the two.
        let arrival = (!arrival_hist.is_empty()).then(|| latency_json(&arrival_hist));
        let total_p99_ms = hist.value_at_quantile(0.99) as f64 / 1000.0;
        let server_p99_ms = match &arrival {
            Some(_) => arrival_hist.value_at_quantile(0.99) as f64 / 1000.0,
            None => total_p99_ms,
        };
        let read_delay_ms = total_p99_ms - server_p99_ms;
        let client_lagging = arrival.is_some() && read_delay_ms > 5.0_f64.max(0.25 * total_p99_ms);
        if client_lagging {
            warnings.push(format!(
                "load generator read delay: p99 {total_p99_ms:.1} ms publish→read, of which {read_delay_ms:.1} ms waiting in the clients' sockets (publish→arrival p99 {server_p99_ms:.1} ms): the latency tail is partly the harness's"));
        }
        let ratio = if expected > 0 {
            stable as f64 / expected as f64
        } else {
            1.0
        };
        let mut saturated = Value::Null;
        if rate > 0.0 && expected > 0 && !client_saturated {
            if ratio < 0.9 {
                saturated = json!(format!(
                    "delivered {:.0}% of the expected deliveries",
                    ratio * 100.0
                ));
            } else if c["lost"].as_u64().unwrap_or(0) > 0 {
                saturated = json!(format!("{} ticks lost", c["lost"]));
            } else if server_p99_ms > self.o.saturation_p99_ms {
                saturated = json!(format!(
                    "p99 {server_p99_ms:.1} ms > {} ms",
                    self.o.saturation_p99_ms
                ));
            }
        }
        let p = json!({
            "name": name,
            "offered_rate": rate,
            "duration_s": wall,
            "published": published,
            "publish_rate": achieved,
            "publish_messages": msgs1 - msgs0,
            "publisher_cpu_pct": (pubcpu1 - pubcpu0) as f64 / wall / 1e7,
            "expected_deliveries": expected,
            "deliveries": deliveries,
            "stable_deliveries": stable,
            "delivery_ratio": ratio,
            "deliveries_per_s": deliveries as f64 / wall,
            "latency_us": lat,
            "latency_hist": hist_to_b64(&hist),
            "arrival_latency_us": arrival.unwrap_or(Value::Null),
            "client_read_delay_p99_ms": read_delay_ms,
            "client_lagging": client_lagging,
            "churn_latency_us": if !churn_hist.is_empty() { latency_json(&churn_hist) } else { Value::Null },
            "connect_latency_us": if !connect_hist.is_empty() { latency_json(&connect_hist) } else { Value::Null },
            "connects_per_s": c["connects"].as_u64().unwrap_or(0) as f64 / wall,
            "counters": c,
            "server_closes": closes,
            "open": open,
            "slow_conns": slow_conns,
            "server_cpu_pct": server_cpu_ns as f64 / wall / 1e7,
            "server_cpu_ns_per_delivery": if deliveries > 0 { server_cpu_ns as f64 / deliveries as f64 } else { 0.0 },
            "server_rss_kb": rss1,
            "server_rss_growth_kb": rss1 as i64 - rss0 as i64,
            "redis_cpu_pct": match (redis_cpu0, redis_cpu1) { (Some(a), Some(b)) => json!((b - a) as f64 / wall / 1e7), _ => Value::Null },
            "proc_cpu_pct": groups_pct,
            "client_ns_per_delivery": if deliveries > 0 { client_cpu_total * wall * 1e9 / deliveries as f64 } else { 0.0 },
            "client_cpu_pct": client_cpu.iter().map(|x| x * 100.0).collect::<Vec<_>>(),
            "client_saturated": client_saturated,
            "saturated": saturated,
            "warnings": warnings,
        });
        self.eprint_line(&format!(
            "{:>12}: {:>9.0} deliveries/s  p50 {} p99 {} p99.9 {} max {}  lost {} dup {} ooo {}  server {:.0}% CPU, {:.0} ns/delivery",
            name, deliveries as f64 / wall, fmt_us(lat["p50"].as_u64()), fmt_us(lat["p99"].as_u64()),
            fmt_us(lat["p99.9"].as_u64()), fmt_us(lat["max"].as_u64()), c["lost"], c["duplicated"], c["out_of_order"],
            server_cpu_ns as f64 / wall / 1e7, if deliveries > 0 { server_cpu_ns as f64 / deliveries as f64 } else { 0.0 }));
        self.phases.push(p.clone());
        Ok(p)
    }
}
