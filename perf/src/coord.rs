//! `ringcast-load run`: the coordinator. Starts Redis and the server if asked, spawns the client
//! processes, publishes, samples the server from /proc, runs the scenario's phases, merges the results.
//!
//! Split: this file has the run from start to result; `coord/opts.rs` the options, the plan of client
//! processes and the planned time; `coord/clients.rs` spawns the client processes; `coord/server.rs` starts Redis
//! and the server (with `--tls`, its certificate); `coord/run.rs` talks to the clients and measures
//! the phases; `coord/report.rs` prints and writes the results; `coord/sys.rs` has /proc, pids, signals.

mod clients;
mod fleet;
mod haproxy;
mod opts;
mod redis_cluster;
mod report;
mod run;
mod server;
mod stall;
mod storm;
mod sys;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cli::RunArgs;
use crate::common::*;
use crate::publisher;
use clients::{ClientArgs, Proc, spawn_clients};
use opts::{Opts, opts, plan, planned_secs};
use run::Run;
use server::ServerOpts;
use sys::{Guard, install_signal_handler, server_rss_anon_kb, server_rss_kb, slab_kb};

pub const MAX_PER_PROCESS: u64 = 19_000;

pub fn main(args: &RunArgs) -> Result<(), String> {
    let guard = Arc::new(Guard::default());
    {
        // Ctrl-C / SIGTERM: stop what we started.
        let g = guard.clone();
        install_signal_handler(move || {
            g.stop_all();
            std::process::exit(130);
        });
    }
    let r = run_all(args, &guard);
    // Whatever happened, stop what we started (by pid).
    guard.stop_all();
    r
}

fn run_all(args: &RunArgs, guard: &Arc<Guard>) -> Result<(), String> {
    let o = opts(args);
    let stall = stall::Stall::from_args(args, o.duration)?;
    let mut srv = ServerOpts::from_args(args)?;
    let connect_timeout = args.connect_timeout;

    let t_begin = Instant::now();
    let self_exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut warnings: Vec<String> = Vec::new();

    fleet::Fleet::check(&args.fleet, &srv)?;
    let (mut fleet, redis_url, redis_pid) =
        fleet::Fleet::redis(&args.fleet, &mut srv, guard, &o.client_cores)?;

    // Seed the hash before the server starts (a real deployment has the latest ticks before it).
    let pub_dist = Dist::new(
        if o.pub_dist == "zipf" {
            "zipf"
        } else {
            "uniform"
        },
        o.symbols,
        o.zipf_s,
    )?;
    let pcfg = publisher::Config {
        redis_url: redis_url.clone(),
        prefix: o.prefix.clone(),
        symbols: o.symbols,
        tick_bytes: o.tick_bytes,
        round_robin: o.pub_dist != "zipf",
        dist: pub_dist,
        batch: o.batch,
        max_batch: 5000,
        cluster: fleet.publisher_cluster(),
    };
    let seqs = publisher::seed(&pcfg)?;
    let started = server::start(&srv, guard, &redis_url, &o.prefix, o.conns)?;
    let target = fleet.front(&args.fleet, o.conns, started.target, guard)?;
    let server_pids = started.pids.clone();

    // Publisher (rate 0 until a phase sets it).
    let shared = Arc::new(publisher::Shared {
        rate: Default::default(),
        stop: Default::default(),
        published: Default::default(),
        messages: Default::default(),
        max_backlog: Default::default(),
        errors: Default::default(),
        per_symbol: Mutex::new(vec![0; o.symbols as usize]),
        last_error: Mutex::new(None),
        cpu_ns: Default::default(),
    });
    shared.set_rate(0.0);
    let pub_thread = publisher::spawn(pcfg, seqs, shared.clone(), o.client_cores.clone())?;

    let (plan, subs_stable, subs_slow) = plan(&o)?;
    let n_procs = plan.len() as u64;
    // The server's start-up allocations (its feed connection, the first ticks from the publisher)
    // may still be landing: a sample taken in the middle counts ~128 kB of them as per-connection memory
    // in some runs and not in others (±13 B per connection at 10k). Wait until RSS holds still.
    let rss_before = sys::settled_rss_kb(&server_pids);
    let anon_before = server_rss_anon_kb(&server_pids);
    let slab_before = slab_kb();

    // Client processes.
    let hard_timeout = if o.timeout > 0.0 {
        o.timeout
    } else {
        planned_secs(&o) * 2.0 + 60.0
    };
    let client_args = ClientArgs {
        exe: &self_exe,
        target,
        connect_timeout,
        hard_timeout,
        tls: started.tls.as_ref(),
    };
    let (rx, mut procs) = spawn_clients(&o, guard, &plan, &client_args)?;

    let mut run = Run {
        o: &o,
        rx,
        procs: &mut procs,
        shared: shared.clone(),
        server_pids: server_pids.clone(),
        redis_pid,
        cpu_groups: fleet.cpu_groups(&redis_url, redis_pid),
        progress: vec![Value::Null; n_procs as usize],
        last_progress_print: Instant::now(),
        deadline: t_begin + Duration::from_secs_f64(hard_timeout),
        label: "connect".into(),
        last_deliv: (0, Instant::now()),
        tty: unsafe { libc::isatty(2) == 1 },
        exited: vec![false; n_procs as usize],
        subs_stable,
        subs_slow,
        phases: Vec::new(),
        warnings: Vec::new(),
    };

    // Connect.
    let t_connect = Instant::now();
    let connected = run.wait_kind(
        "connected",
        Duration::from_secs_f64((o.conns as f64 / 500.0).max(30.0) + connect_timeout),
    )?;
    let connect_s = t_connect.elapsed().as_secs_f64();
    let open: u64 = connected
        .iter()
        .map(|v| v["open"].as_u64().unwrap_or(0))
        .sum();
    let errors: u64 = connected
        .iter()
        .map(|v| v["errors"].as_u64().unwrap_or(0))
        .sum();
    let first = connected
        .iter()
        .filter_map(|v| v["first_ns"].as_u64())
        .filter(|&x| x > 0)
        .min()
        .unwrap_or(0);
    let last = connected
        .iter()
        .filter_map(|v| v["last_ns"].as_u64())
        .max()
        .unwrap_or(0);
    let span_s = if last > first {
        (last - first) as f64 / 1e9
    } else {
        connect_s
    };
    let connect = json!({"requested": o.conns, "open": open, "errors": errors,
        "seconds": span_s, "rate_per_s": if span_s > 0.0 { open as f64 / span_s } else { 0.0 }});
    run.eprint_line(&format!(
        "connected {open}/{} in {span_s:.2} s ({:.0}/s), {errors} errors",
        o.conns,
        if span_s > 0.0 {
            open as f64 / span_s
        } else {
            0.0
        }
    ));
    if open < o.conns {
        run.warnings.push(format!(
            "only {open} of {} connections opened ({errors} errors)",
            o.conns
        ));
    }
    // let snapshots and acks arrive
    run.pump_for(Duration::from_millis(500))?;
    let rss_connected = server_rss_kb(&server_pids);
    let slab_connected = slab_kb();

    // Scenario.
    let mut extra = json!({});
    match o.scenario.as_str() {
        "idle" => {
            run.phase("idle", 0.0, 0.0, o.duration)?;
            let rss_after = server_rss_kb(&server_pids);
            let anon_after = server_rss_anon_kb(&server_pids);
            let per_conn = |a: u64, before: u64| {
                if open > 0 {
                    (a.saturating_sub(before) as f64) * 1024.0 / open as f64
                } else {
                    0.0
                }
            };
            extra = json!({"server_rss_kb_before": rss_before, "server_rss_kb_connected": rss_connected,
                "server_rss_kb_after_hold": rss_after,
                "server_rss_bytes_per_conn": per_conn(rss_after, rss_before),
                "server_rss_anon_kb_before": anon_before, "server_rss_anon_kb_after_hold": anon_after,
                "server_rss_anon_bytes_per_conn": per_conn(anon_after, anon_before),
                "kernel_slab_bytes_per_conn_pair": if open > 0 { (slab_connected.saturating_sub(slab_before)) as f64 * 1024.0 / open as f64 } else { 0.0 },
            });
        }
        "latency" => match &stall {
            Some(s) => {
                let ringcast = srv.kind == "ringcast" || srv.kind == "none";
                extra = json!({ "stall": stall::latency(&mut run, s, target, ringcast)? });
            }
            None => {
                run.phase("latency", o.rate, o.warmup, o.duration)?;
            }
        },
        "fanout" => {
            let mut saturated_at = Value::Null;
            for (i, &r) in o.steps.iter().enumerate() {
                run.label = format!("step {}/{} {r}/s", i + 1, o.steps.len());
                let p = run.phase(&format!("{r}/s"), r, o.warmup, o.step_duration)?;
                if let Some(reason) = p["saturated"].as_str() {
                    run.eprint_line(&format!("server saturated at {r} ticks/s: {reason}"));
                    if saturated_at.is_null() {
                        saturated_at = json!({"rate": r, "reason": reason});
                    }
                    if !o.all_steps {
                        break;
                    }
                }
                if p["client_saturated"].as_bool() == Some(true) && !o.all_steps {
                    run.eprint_line("load generator saturated: stopping the steps");
                    break;
                }
            }
            extra = json!({"saturated_at": saturated_at});
        }
        "churn" => {
            run.phase("baseline", o.rate, o.warmup, o.duration / 3.0)?;
            let per_proc_rate = o.churn_rate / procs_len(&run) as f64;
            run.broadcast(&format!("churn {per_proc_rate}"))?;
            run.phase("churn", o.rate, 0.5, o.duration)?;
            run.broadcast("churn 0")?;
        }
        "slow" => {
            run.phase("baseline", o.rate, o.warmup, o.duration)?;
            let rss0 = server_rss_kb(&server_pids);
            run.broadcast(&format!("slow {}", o.slow_frac))?;
            run.phase("slow", o.rate, 0.5, o.duration)?;
            let rss1 = server_rss_kb(&server_pids);
            extra = json!({"server_rss_kb_before_slow": rss0, "server_rss_kb_after_slow": rss1,
                "server_rss_growth_kb": rss1 as i64 - rss0 as i64});
        }
        "storm" => {
            let s = storm::run(&mut run, &mut srv, guard, &started, &redis_url)?;
            extra = json!({ "storm": s });
        }
        _ => unreachable!(),
    }
    shared.set_rate(0.0);

    // Stop clients, collect finals.
    run.broadcast("stop")?;
    let finals = run
        .wait_kind("final", Duration::from_secs(30))
        .unwrap_or_default();
    let mut phases = std::mem::take(&mut run.phases);
    fleet::annotate(&mut phases, &fleet);
    warnings.append(&mut run.warnings);
    for p in procs.iter_mut() {
        let _ = p.child.wait();
        guard.forget(p.child.id());
    }
    shared.stop.store(true, Ordering::Relaxed);
    let _ = pub_thread.join();
    let total_published = shared.published.load(Ordering::Relaxed);
    if let Some(e) = shared.last_error.lock().unwrap().clone() {
        warnings.push(format!(
            "publisher errors: {} (last: {e})",
            shared.errors.load(Ordering::Relaxed)
        ));
    }
    guard.stop_all();

    // Totals across the run.
    let mut totals = json!({});
    for f in &finals {
        if let Some(c) = f["counters"].as_object() {
            for (k, v) in c {
                let cur = totals[k].as_u64().unwrap_or(0);
                totals[k] = json!(cur + v.as_u64().unwrap_or(0));
            }
        }
    }
    let any_rate = phases
        .iter()
        .any(|p| p["offered_rate"].as_f64().unwrap_or(0.0) > 0.0);
    if any_rate
        && totals["deliveries"].as_u64().unwrap_or(0) <= totals["snapshots"].as_u64().unwrap_or(0)
    {
        let acks = totals["acks"].as_u64().unwrap_or(0);
        warnings.push(format!(
            "no live tick was delivered ({} published, {acks} subscribe acks, {} snapshots): does the server support subscriptions (serve --redis URL --prefix {})?",
            total_published, totals["snapshots"], o.prefix));
    }
    if open > 0 && totals["snapshots"].as_u64() == Some(0) {
        warnings.push("no snapshot arrived after subscribing (every symbol had a latest tick in the hash): the server sent no latest value".into());
    }
    if open > 0 && totals["acks"].as_u64() == Some(0) {
        warnings.push("no subscribe acknowledgement ({\"type\":\"subscribed\"}) arrived".into());
    }
    // What the clients' TLS sessions negotiated, and the first failure any client saw.
    let mut tls_json = started.tls_json.clone();
    if let Some(n) = finals
        .iter()
        .chain(&connected)
        .map(|f| &f["tls"])
        .find(|t| t.is_object())
    {
        tls_json["negotiated"] = n.clone();
    }
    if let Some(e) = connected
        .iter()
        .chain(&finals)
        .find_map(|f| f["first_error"].as_str())
    {
        warnings.push(format!("first client error: {e}"));
    }
    for p in phases.iter_mut() {
        if let Some(w) = p.get("warnings").and_then(|w| w.as_array()) {
            for w in w {
                warnings.push(format!(
                    "{}: {}",
                    p["name"].as_str().unwrap_or(""),
                    w.as_str().unwrap_or("")
                ));
            }
        }
    }
    let result = json!({
        "scenario": o.scenario,
        "server": started.desc,
        "server_pids": server_pids,
        "target": target.to_string(),
        "url": format!("{}://{target}/", if started.tls.is_some() { "wss" } else { "ws" }),
        "tls": tls_json,
        "redis": redis_url,
        "fleet": fleet.json(),
        "config": {"conns": o.conns, "symbols": o.symbols, "per_conn": o.per_conn, "sub_dist": o.sub_dist,
            "pub_dist": o.pub_dist, "form": o.form, "tick_bytes": o.tick_bytes, "rate": o.rate,
            "steps": o.steps, "duration_s": o.duration, "step_duration_s": o.step_duration,
            "warmup_s": o.warmup, "client_processes": n_procs, "client_cores": o.client_cores,
            "churn_frac": o.churn_frac, "churn_rate": o.churn_rate, "slow_frac": o.slow_frac,
            "batch": o.batch, "prefix": o.prefix, "tls": started.tls.is_some()},
        "connect": connect,
        "phases": phases,
        "totals": totals,
        "published": total_published,
        "extra": extra,
        "warnings": warnings,
        "wall_s": t_begin.elapsed().as_secs_f64(),
    });
    report::print_summary(&result);
    report::write_outputs(&o, &result)
}

fn procs_len(run: &Run) -> usize {
    run.procs.len()
}
