//! `--scenario storm`: the reconnect storm. Every client process runs with `--reconnect-policy`; after a
//! baseline phase (ticks flowing at --rate) the coordinator marks the time and restarts the server it
//! started on the same port (same certificate with --tls). `--storm-signal term` with `--storm-restart
//! handover` (the default): it starts the replacement with `serve --join`, waits until it listens, then
//! SIGTERMs the old one, which stops listening and closes its clients with 1012 over its
//! `--drain-window` (RINGCAST_DRAIN_WINDOW in the harness's environment), as a rolling restart does;
//! `--storm-restart after-exit`: SIGTERM, reap, wait `--storm-down`, then start the replacement;
//! `kill`: SIGKILL (every socket drops), reap, `--storm-down`, start. Then it waits until every connection is back (reconnected, subscribe acknowledged, a tick
//! published after the mark seen for each of its symbols) or `--storm-timeout` after the mark.
//! Ticks keep flowing throughout. Measured: time until all are back, per-connection time back
//! (p50/p99/max), the server's CPU from the mark until all were back (the old process's from its
//! rusage at reaping, the new one's from /proc), 503 refusals (draining server, handshake rate limit),
//! failed connects and upgrades, refusals per connection (503s and failed connects), the close frames
//! the server sent by code and reason, and the upgrades completed per second.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::report::fmt_us;
use super::run::Run;
use super::server::{self, ServerOpts, Started};
use super::sys::{Guard, descendants_of, kill_and_wait, listeners_on, server_cpu_ns, wait_until};
use crate::common::*;

/// Runs the storm after the baseline phase; returns the `extra.storm` object of the result.
pub(super) fn run(
    run: &mut Run,
    srv: &mut ServerOpts,
    guard: &Guard,
    started: &Started,
    redis_url: &str,
) -> Result<Value, String> {
    let o = run.o;
    if srv.kind == "none" {
        return Err("--scenario storm restarts the server: use --server ringcast (or node)".into());
    }
    run.phase("baseline", o.rate, o.warmup, o.duration)?;
    let old = started.pids[0];
    let old_cpu0 = server_cpu_ns(&run.server_pids);
    let kill = o.storm_signal == "kill";
    let handover = !kill && o.storm_restart == "handover";
    // The replacement: same port, same certificate; with the handover it joins the port.
    srv.port = Some(started.target.port());
    srv.target = None;
    srv.join = handover;
    if let (Some(t), Some((ca, _))) = (srv.tls.as_mut(), started.tls.as_ref())
        && t.cert_key.is_none()
    {
        let key = std::path::Path::new(ca).with_file_name("key.pem");
        t.cert_key = Some((ca.clone(), key.to_string_lossy().into_owned()));
    }
    // Times are from the mark; the signal follows once every client process has it (and, with the
    // handover, once the replacement listens).
    let mark = realtime_ns();
    let t0 = Instant::now();
    run.broadcast(&format!("storm {mark}"))?;
    run.wait_kind("storm_started", Duration::from_secs(10))?;
    let mut new = None;
    let mut up_s = None;
    if handover {
        let port = started.target.port();
        let before = listeners_on(port);
        let started_new = server::start(srv, guard, redis_url, &o.prefix, o.conns)?;
        let answered_s = t0.elapsed().as_secs_f64();
        // Its /healthz may have been answered by the old one: wait until it listens too.
        if wait_until(Duration::from_secs(10), || listeners_on(port) >= 2 * before).is_err() {
            run.warnings.push(format!(
                "storm: the replacement did not show {before} more listener(s) on port {port} within 10 s of starting ({answered_s:.2} s after the mark): SIGTERM sent anyway"
            ));
        }
        up_s = Some(t0.elapsed().as_secs_f64());
        run.eprint_line(&format!(
            "storm: replacement started ({before} listener(s) before it), /healthz answered {answered_s:.2} s after the mark"
        ));
        new = Some(started_new);
    }
    let signal_s = t0.elapsed().as_secs_f64();
    run.label = format!(
        "storm: {}",
        match (kill, handover) {
            (true, _) => "SIGKILL",
            (false, true) => "SIGTERM, handover to a --join'ed replacement",
            (false, false) => "SIGTERM, replacement after the exit",
        }
    );
    // SIGTERM to the server this run started (a --processes supervisor passes it on and reaps its
    // children); SIGKILL to it and every process of it, as a crash of the host's service would.
    // Its workers, known now (once the supervisor is gone they are init's): SIGKILLed with it if
    // it does not exit in time.
    let mut old_workers = Some(descendants_of(old));
    let targets = if kill {
        run.server_pids.clone()
    } else {
        vec![old]
    };
    for pid in targets {
        // SAFETY: kill(2) on pids of the server this run started (the first still our unreaped child).
        unsafe { libc::kill(pid, if kill { libc::SIGKILL } else { libc::SIGTERM }) };
    }
    if let Some(n) = &new {
        run.server_pids = n.pids.clone();
        run.eprint_line(&format!(
            "storm: replacement (--join) listening {:.2} s after the mark, SIGTERM to the old one at {signal_s:.2} s",
            up_s.unwrap_or(0.0)
        ));
    }
    // Until the old one is reaped (its CPU to the end from wait4's rusage; the drain takes at most the
    // window + the close timeout (5 s) + 1 s, as the server itself bounds it), the replacement is up
    // and every client process says all its connections are back, or the storm timeout.
    let drain = std::env::var("RINGCAST_DRAIN_WINDOW")
        .ok()
        .and_then(|v| parse_secs(&v))
        .unwrap_or(10.0);
    let limit = t0 + Duration::from_secs_f64(drain + 10.0);
    let end = t0 + Duration::from_secs_f64(o.storm_timeout);
    let mut all_back = vec![false; run.procs.len()];
    let mut old_cpu_total = None;
    let mut exited_s = 0.0;
    let mut start_new_at = None;
    while (old_cpu_total.is_none() || new.is_none() || all_back.iter().any(|b| !b))
        && Instant::now() < end
    {
        run.check_deadline()?;
        if old_cpu_total.is_none() {
            if let Some(cpu) = reap(old, libc::WNOHANG) {
                old_cpu_total = Some(cpu);
            } else if Instant::now() > limit {
                run.warnings.push(format!(
                    "the old server (pid {old}) did not exit within {:.0} s of SIGTERM: killed",
                    drain + 10.0
                ));
                // SAFETY: as above; the process is still our unreaped child.
                unsafe { libc::kill(old, libc::SIGKILL) };
                old_cpu_total = Some(reap(old, 0).unwrap_or(0));
                kill_and_wait(
                    old_workers.take().unwrap_or_default(),
                    "the old server's workers",
                );
            }
            if old_cpu_total.is_some() {
                guard.forget(old as u32);
                exited_s = t0.elapsed().as_secs_f64();
                run.eprint_line(&format!(
                    "storm: old server exited {exited_s:.2} s after the mark"
                ));
                start_new_at = Some(Instant::now() + Duration::from_secs_f64(o.storm_down));
            }
        }
        if new.is_none() && start_new_at.is_some_and(|at| Instant::now() >= at) {
            let n = server::start(srv, guard, redis_url, &o.prefix, o.conns)?;
            up_s = Some(t0.elapsed().as_secs_f64());
            run.server_pids = n.pids.clone();
            run.eprint_line(&format!(
                "storm: new server up {:.2} s after the mark",
                up_s.unwrap_or(0.0)
            ));
            new = Some(n);
        }
        match run.rx.recv_timeout(Duration::from_millis(10)) {
            Ok((i, v)) => {
                if let Some(v) = run.handle(i, v)?
                    && v["kind"].as_str() == Some("storm_all_back")
                {
                    all_back[i] = true;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => return Err("all client processes exited".into()),
        }
    }
    let Some(new) = new else {
        return Err(
            "storm: the replacement server never started (the old one did not exit)".into(),
        );
    };
    let old_cpu_total = old_cpu_total.unwrap_or(0);
    let up_s = up_s.unwrap_or(0.0);
    let window_s = t0.elapsed().as_secs_f64();
    let new_cpu = server_cpu_ns(&new.pids);
    run.broadcast("storm_report")?;
    let reports = run.wait_kind("storm", Duration::from_secs(30))?;

    let mut back_hist = new_hist();
    let mut accepted: Vec<u64> = Vec::new();
    let mut by_refusals = vec![0u64; 11];
    let mut closes: std::collections::BTreeMap<String, u64> = Default::default();
    let (mut back, mut conns, mut max_refusals) = (0, 0, 0);
    let mut client_cpu_s = 0f64;
    let mut sums = json!({});
    for r in &reports {
        if let Some(h) = r["back_hist"].as_str().and_then(hist_from_b64) {
            let _ = back_hist.add(&h);
        }
        for (i, n) in r["accepted_per_s"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if accepted.len() <= i {
                accepted.resize(i + 1, 0);
            }
            accepted[i] += n.as_u64().unwrap_or(0);
        }
        for (i, n) in r["by_refusals"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            by_refusals[i.min(10)] += n.as_u64().unwrap_or(0);
        }
        for (k, n) in r["closes"].as_object().into_iter().flatten() {
            *closes.entry(k.clone()).or_insert(0) += n.as_u64().unwrap_or(0);
        }
        back += r["back"].as_u64().unwrap_or(0);
        client_cpu_s += r["cpu_ns"].as_f64().unwrap_or(0.0) / 1e9;
        conns += r["conns"].as_u64().unwrap_or(0);
        max_refusals = max_refusals.max(r["max_refusals"].as_u64().unwrap_or(0));
        for k in [
            "refused_503",
            "upgrade_failed",
            "connect_failed",
            "reconnects",
        ] {
            sums[k] = json!(sums[k].as_u64().unwrap_or(0) + r[k].as_u64().unwrap_or(0));
        }
    }
    let cpu_s = (old_cpu_total.saturating_sub(old_cpu0) + new_cpu) as f64 / 1e9;
    let q = |p: f64| (!back_hist.is_empty()).then(|| back_hist.value_at_quantile(p));
    let not_back = conns.saturating_sub(back);
    let cores = o.client_cores.len() as f64;
    if client_cpu_s / window_s > 0.9 * cores {
        run.warnings.push(format!(
            "storm: the client processes used {:.0} % of their {cores} core(s) from the mark until all were back: the reconnect times are the load generator's, a lower bound on the server's",
            client_cpu_s / window_s * 100.0
        ));
    }
    if not_back > 0 {
        run.warnings.push(format!(
            "storm: {not_back} of {conns} connections not back within --storm-timeout {} s",
            o.storm_timeout
        ));
    }
    Ok(json!({
        "signal": if kill { "SIGKILL" } else { "SIGTERM" },
        "policy": o.reconnect_policy,
        "restart": if kill { "after-exit" } else { o.storm_restart.as_str() },
        "drain_window_s": if kill { Value::Null } else { json!(drain) },
        "down_s": o.storm_down,
        "signal_s": signal_s,
        "old_exited_s": exited_s,
        "new_up_s": up_s,
        "conns": conns,
        "back": back,
        "not_back": not_back,
        "all_back_s": (not_back == 0 && back > 0).then(|| back_hist.max() as f64 / 1e6),
        "back_us": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": q(1.0)},
        "back_hist": hist_to_b64(&back_hist),
        "window_s": window_s,
        "server_cpu_s": cpu_s,
        "server_cpu_pct": cpu_s / window_s * 100.0,
        "client_cpu_s": client_cpu_s,
        "client_cpu_pct": client_cpu_s / window_s * 100.0,
        "refused_503": sums["refused_503"],
        "max_refusals_per_conn": max_refusals,
        "conns_by_refusals": by_refusals,
        "server_closes": closes,
        "upgrade_failed": sums["upgrade_failed"],
        "connect_failed": sums["connect_failed"],
        "reconnects": sums["reconnects"],
        "accepted_per_s": accepted,
        "peak_accepted_per_s": accepted.iter().max().copied().unwrap_or(0),
    }))
}

/// wait4 on `pid`: its total CPU (ns) once it has exited, None while it runs (WNOHANG).
fn reap(pid: i32, flags: i32) -> Option<u64> {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our child `pid`.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
    if r == 0 {
        return None;
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    Some(if r == pid {
        tv(ru.ru_utime) + tv(ru.ru_stime)
    } else {
        0
    })
}

/// The storm's lines of the summary.
pub(super) fn print(s: &Value) {
    let ms = |v: &Value| fmt_us(v.as_u64());
    let b = &s["back_us"];
    println!(
        "storm:    {} ({}, {}), policy {}: old server gone at {:.2} s, new one up at {:.2} s",
        s["signal"].as_str().unwrap_or(""),
        s["restart"].as_str().unwrap_or(""),
        match s["drain_window_s"].as_f64() {
            Some(d) => format!("drain window {d} s"),
            None => "no drain".into(),
        },
        s["policy"].as_str().unwrap_or(""),
        s["old_exited_s"].as_f64().unwrap_or(0.0),
        s["new_up_s"].as_f64().unwrap_or(0.0)
    );
    println!(
        "          back and current: {}/{} — all back at {}; per connection p50 {} p99 {} max {}",
        s["back"],
        s["conns"],
        match s["all_back_s"].as_f64() {
            Some(t) => format!("{t:.2} s"),
            None => format!("NOT ALL ({} missing)", s["not_back"]),
        },
        ms(&b["p50"]),
        ms(&b["p99"]),
        ms(&b["max"])
    );
    println!(
        "          server CPU {:.2} s over {:.2} s ({:.0} % of a core), clients {:.0} %; 503 refusals {}, failed connects {}, failed upgrades {} (max {} refusals per connection); peak {} upgrades/s, {} reconnects",
        s["server_cpu_s"].as_f64().unwrap_or(0.0),
        s["window_s"].as_f64().unwrap_or(0.0),
        s["server_cpu_pct"].as_f64().unwrap_or(0.0),
        s["client_cpu_pct"].as_f64().unwrap_or(0.0),
        s["refused_503"],
        s["connect_failed"],
        s["upgrade_failed"],
        s["max_refusals_per_conn"],
        s["peak_accepted_per_s"],
        s["reconnects"]
    );
    let closes: Vec<String> = s["server_closes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, n)| {
            let (code, reason) = k.split_once(' ').unwrap_or((k, ""));
            format!("{code} \"{reason}\" ×{n}")
        })
        .collect();
    println!(
        "          server closes since the mark (code \"reason\" ×count): {}",
        if closes.is_empty() {
            "none".to_string()
        } else {
            closes.join(", ")
        }
    );
}
