//! `ringcast-load run`: the coordinator. Starts Redis and the server if asked, spawns the client
//! processes, publishes, samples the server from /proc, runs the scenario's phases, merges the results.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::common::*;
use crate::publisher;

const MAX_PER_PROCESS: u64 = 19_000;

struct Opts {
    scenario: String,
    conns: u64,
    symbols: u32,
    per_conn: u32,
    sub_dist: String,
    zipf_s: f64,
    pub_dist: String,
    form: String,
    tick_bytes: usize,
    rate: f64,
    steps: Vec<f64>,
    step_duration: f64,
    duration: f64,
    warmup: f64,
    client_cores: Vec<usize>,
    per_client: u64,
    /// fanout: run every step even past saturation (CPU per delivery at each offered rate).
    all_steps: bool,
    connect_concurrency: u64,
    churn_frac: f64,
    churn_rate: f64,
    slow_frac: f64,
    seed: u64,
    prefix: String,
    batch: bool,
    saturation_p99_ms: f64,
    timeout: f64,
    out: String,
    svg: String,
    quiet: bool,
}

struct Proc {
    child: Child,
    stdin: ChildStdin,
    conns: u64,
    offset: u64,
}

/// Everything we started, stopped by pid on every way out.
#[derive(Default)]
struct Guard {
    pids: Mutex<Vec<(i32, String)>>,
}
impl Guard {
    fn add(&self, pid: u32, what: &str) {
        self.pids.lock().unwrap().push((pid as i32, what.to_string()));
    }
    fn forget(&self, pid: u32) {
        self.pids.lock().unwrap().retain(|(p, _)| *p != pid as i32);
    }
    fn stop_all(&self) {
        let mut pids = self.pids.lock().unwrap();
        // newest first (clients, then the server, then Redis), each one gone before the next
        for (pid, _) in pids.iter().rev() {
            unsafe { libc::kill(*pid, libc::SIGTERM) };
            let t = Instant::now();
            loop {
                let mut st = 0;
                let r = unsafe { libc::waitpid(*pid, &mut st, libc::WNOHANG) };
                if r != 0 {
                    break;
                }
                if t.elapsed() > Duration::from_secs(5) {
                    unsafe { libc::kill(*pid, libc::SIGKILL) };
                    unsafe { libc::waitpid(*pid, &mut st, 0) };
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        pids.clear();
    }
}
impl Drop for Guard {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn defaults(scenario: &str) -> (u64, f64, f64) {
    // (conns, rate, duration)
    match scenario {
        "idle" => (10_000, 0.0, 10.0),
        "fanout" => (10_000, 0.0, 5.0),
        "latency" => (10_000, 1000.0, 20.0),
        "churn" => (5_000, 500.0, 15.0),
        "slow" => (2_000, 500.0, 10.0),
        _ => (1000, 100.0, 10.0),
    }
}

pub fn main(flags: &Flags) -> Result<(), String> {
    let guard = Arc::new(Guard::default());
    {
        // Ctrl-C / SIGTERM: stop what we started.
        let g = guard.clone();
        install_signal_handler(move || {
            g.stop_all();
            std::process::exit(130);
        });
    }
    let r = run_all(flags, &guard);
    // Whatever happened, stop what we started (by pid).
    guard.stop_all();
    r
}

fn run_all(flags: &Flags, guard: &Arc<Guard>) -> Result<(), String> {
    let scenario = flags.str("scenario", "latency");
    if !["idle", "fanout", "latency", "churn", "slow"].contains(&scenario.as_str()) {
        return Err(format!(
            "--scenario must be idle, fanout, latency, churn or slow, got `{scenario}`"
        ));
    }
    let (dconns, drate, ddur) = defaults(&scenario);
    let steps: Vec<f64> = flags
        .str("steps", "100,1000,5000,10000,20000,50000")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('_', "").parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--steps: {e}"))?;
    let o = Opts {
        conns: flags.num("conns", dconns),
        symbols: flags.num("symbols", 100),
        per_conn: flags.num("per-conn", 1),
        sub_dist: flags.str("sub-dist", "uniform"),
        zipf_s: flags.num("zipf-s", 1.0),
        pub_dist: flags.str("pub-dist", "roundrobin"),
        form: flags.str("form", "plain"),
        tick_bytes: flags.num("tick-bytes", 100),
        rate: flags.num("rate", drate),
        steps,
        step_duration: flags.secs("step-duration", 5.0),
        duration: flags.secs("duration", ddur),
        warmup: flags.secs("warmup", 1.0),
        client_cores: parse_cores(&flags.str("client-cores", "1"))?,
        per_client: flags.num("conns-per-client", MAX_PER_PROCESS),
        connect_concurrency: flags.num("connect-concurrency", 2000),
        churn_frac: flags.num("churn-frac", if scenario == "churn" { 0.2 } else { 0.0 }),
        churn_rate: flags.num("churn-rate", 500.0),
        slow_frac: flags.num("slow-frac", 0.1),
        seed: flags.num("seed", 1),
        prefix: flags.str("prefix", "perf:"),
        batch: !flags.bool("no-batch"),
        saturation_p99_ms: flags.num("saturation-p99-ms", 100.0),
        all_steps: flags.bool("all-steps"),
        timeout: flags.secs("timeout", 0.0),
        out: flags.str("out", &format!("ringcast-load-{scenario}.json")),
        svg: flags.str("svg", &format!("ringcast-load-{scenario}.svg")),
        quiet: flags.bool("quiet"),
        scenario,
    };
    if o.per_client == 0 || o.per_client > MAX_PER_PROCESS {
        return Err(format!("--conns-per-client must be 1..={MAX_PER_PROCESS}"));
    }
    if o.conns > 1_000_000 {
        return Err("--conns: at most 1,000,000".into());
    }
    if !["plain", "json"].contains(&o.form.as_str()) {
        return Err("--form must be plain or json".into());
    }
    let server_kind = flags.str("server", if flags.get("server-pid").is_some() { "none" } else { "ringcast" });
    let server_core = flags.str("server-core", "0");
    let server_workers: u32 = flags.num("server-workers", 1);
    let server_processes: u32 = flags.num("server-processes", 1);
    let connect_timeout = flags.secs("connect-timeout", 10.0);
    let manifest = env!("CARGO_MANIFEST_DIR");
    let ringcast_bin = flags.str("ringcast-bin", &format!("{manifest}/../target/release/ringcast"));
    let node_dir = flags.str("node-dir", &format!("{manifest}/baselines/node-ws"));
    let mut server_pids: Vec<i32> = match flags.get("server-pid") {
        Some(list) => list
            .split(',')
            .map(|p| p.trim().parse::<i32>().map_err(|_| format!("--server-pid: bad pid `{p}`")))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let start_redis = flags.bool("start-redis");
    let mut redis_url = flags.str("redis", "redis://127.0.0.1:6379");
    let target_flag = flags.get("target").map(|s| s.to_string());
    let port_flag: Option<u16> = flags.get("port").map(|p| p.parse().unwrap_or(0));
    let unknown = flags.unknown();
    if !unknown.is_empty() {
        return Err(format!("unknown flags: --{}", unknown.join(", --")));
    }

    let t_begin = Instant::now();
    let self_exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut warnings: Vec<String> = Vec::new();

    // Redis.
    let mut redis_pid = None;
    if start_redis {
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--protected-mode", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("--start-redis: cannot run redis-server from PATH: {e}"))?;
        guard.add(child.id(), "redis-server");
        let _ = pin_to(child.id() as i32, &o.client_cores);
        redis_pid = Some(child.id() as i32);
        redis_url = format!("redis://127.0.0.1:{port}");
        wait_until(Duration::from_secs(10), || publisher::connect(&redis_url).is_ok())
            .map_err(|_| format!("redis-server on port {port} did not come up"))?;
    } else if let Err(e) = publisher::connect(&redis_url) {
        return Err(format!("{e} (give --redis URL or --start-redis)"));
    }

    // Seed the hash before the server starts (a real deployment has the latest ticks before it).
    let pub_dist = Dist::new(if o.pub_dist == "zipf" { "zipf" } else { "uniform" }, o.symbols, o.zipf_s)?;
    let pcfg = publisher::Config {
        redis_url: redis_url.clone(),
        prefix: o.prefix.clone(),
        symbols: o.symbols,
        tick_bytes: o.tick_bytes,
        round_robin: o.pub_dist != "zipf",
        dist: pub_dist,
        batch: o.batch,
        max_batch: 5000,
    };
    let seqs = publisher::seed(&pcfg)?;
    // Server.
    let target: SocketAddrV4 = match (&target_flag, server_kind.as_str()) {
        (Some(t), _) => t.parse().map_err(|e| format!("--target: {e}"))?,
        (None, "none") => SocketAddrV4::new(Ipv4Addr::LOCALHOST, port_flag.unwrap_or(3001)),
        (None, _) => SocketAddrV4::new(Ipv4Addr::LOCALHOST, match port_flag { Some(p) if p > 0 => p, _ => free_port()? }),
    };
    let server_cores = parse_cores(&server_core)?;
    let mut server_desc = server_kind.clone();
    match server_kind.as_str() {
        "ringcast" => {
            if !std::path::Path::new(&ringcast_bin).exists() {
                return Err(format!("{ringcast_bin} does not exist: run `cargo build --release` in the repo root (or give --ringcast-bin)"));
            }
            let child = pinned_with_nofile(&mut Command::new(&ringcast_bin), &server_cores)
                .args(["serve", "--listen", &target.to_string(), "--workers", &server_workers.to_string(),
                       "--processes", &server_processes.to_string(),
                       "--redis", &redis_url, "--prefix", &o.prefix])
                .env("RINGCAST_LOG", std::env::var("RINGCAST_LOG").unwrap_or("warn".into()))
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("starting {ringcast_bin}: {e}"))?;
            guard.add(child.id(), "ringcast");
            pin_to(child.id() as i32, &server_cores).map_err(|e| format!("pinning the server: {e}"))?;
            server_pids.push(child.id() as i32);
            server_desc = format!("ringcast serve --workers {server_workers} --processes {server_processes} (pinned to cores {server_core})");
        }
        "node" => {
            let script = format!("{node_dir}/server.js");
            if !std::path::Path::new(&format!("{node_dir}/node_modules")).exists() {
                return Err(format!("{node_dir}/node_modules is missing: run `npm ci` in {node_dir}"));
            }
            let child = pinned_with_nofile(&mut Command::new("node"), &server_cores)
                .arg(&script)
                .env("PORT", target.port().to_string())
                .env("HOST", target.ip().to_string())
                .env("REDIS_URL", &redis_url)
                .env("PREFIX", &o.prefix)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("starting node {script}: {e}"))?;
            guard.add(child.id(), "node");
            pin_to(child.id() as i32, &server_cores).map_err(|e| format!("pinning the server: {e}"))?;
            server_pids.push(child.id() as i32);
            server_desc = format!("node ws + ioredis baseline (pinned to cores {server_core})");
        }
        "none" => {}
        other => return Err(format!("--server must be ringcast, node or none, got `{other}`")),
    }
    wait_until(Duration::from_secs(15), || healthz(target))
        .map_err(|_| format!("the server at {target} did not answer GET /healthz within 15 s"))?;
    if server_kind != "none" {
        // descendants too (ringcast --processes supervisor). /healthz answers as soon as the first child
        // listens: wait for all of them (and their listeners), or their CPU and RSS would be missed.
        if server_kind == "ringcast" && server_processes > 1 {
            let root = server_pids[0];
            let _ = wait_until(Duration::from_secs(30), || descendants(root).len() >= server_processes as usize);
            std::thread::sleep(Duration::from_millis(500));
        }
        let mut all = server_pids.clone();
        for p in descendants(server_pids[0]) {
            if !all.contains(&p) {
                all.push(p);
            }
        }
        server_pids = all;
        // A worker table is sized from its process's soft RLIMIT_NOFILE: say so when that caps the run.
        let servers: Vec<i32> = if server_pids.len() > 1 { server_pids[1..].to_vec() } else { server_pids.clone() };
        let cap: u64 = servers.iter().map(|&p| nofile_soft_of(p).unwrap_or(0) * server_workers as u64).sum();
        eprintln!("server processes {:?}: soft RLIMIT_NOFILE {:?} (≈ {} connections at most with {} worker(s) each)",
                  servers, servers.iter().map(|&p| nofile_soft_of(p)).collect::<Vec<_>>(), cap, server_workers);
        if server_kind == "ringcast" && cap > 0 && cap < o.conns {
            eprintln!("WARNING: --conns {} exceeds the server's connection tables (≈ {cap}): add --server-processes/--server-workers", o.conns);
        }
    }

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

    // Subscriber counts per symbol: all connections, and per client the first `slow` share.
    let sub_dist = Dist::new(&o.sub_dist, o.symbols, o.zipf_s)?;
    let n_procs = o.conns.div_ceil(o.per_client).max(1);
    let mut plan = Vec::new();
    let base = u32::from(Ipv4Addr::new(127, 0, 0, 2));
    let addrs_per_proc = o.per_client.div_ceil(28_000) as u32;
    let mut left = o.conns;
    for i in 0..n_procs {
        let n = left.min(o.per_client);
        left -= n;
        plan.push((i * o.per_client, n, Ipv4Addr::from(base + i as u32 * addrs_per_proc)));
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

    let rss_before = server_rss_kb(&server_pids);
    let slab_before = slab_kb();

    // Client processes.
    let (tx, rx) = mpsc::channel::<(usize, Option<Value>)>();
    let mut procs: Vec<Proc> = Vec::new();
    let hard_timeout = if o.timeout > 0.0 { o.timeout } else { planned_secs(&o) * 2.0 + 60.0 };
    for (i, &(offset, n, src)) in plan.iter().enumerate() {
        let mut child = pinned_with_nofile(&mut Command::new(&self_exe), &o.client_cores)
            .args(["client", "--target", &target.to_string(), "--conns", &n.to_string(),
                   "--offset", &offset.to_string(), "--src-base", &src.to_string(),
                   "--symbols", &o.symbols.to_string(), "--per-conn", &o.per_conn.to_string(),
                   "--sub-dist", &o.sub_dist, "--zipf-s", &o.zipf_s.to_string(),
                   "--seed", &o.seed.to_string(), "--form", &o.form,
                   "--connect-concurrency", &o.connect_concurrency.to_string(),
                   "--churn-frac", &o.churn_frac.to_string(),
                   "--connect-timeout", &connect_timeout.to_string(),
                   "--deadline", &format!("{}", hard_timeout + 10.0)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawning client {i}: {e}"))?;
        guard.add(child.id(), "client");
        pin_to(child.id() as i32, &o.client_cores).map_err(|e| format!("pinning client {i}: {e}"))?;
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send((i, Some(v)));
                }
            }
            let _ = tx.send((i, None));
        });
        procs.push(Proc { child, stdin, conns: n, offset });
    }
    drop(tx);

    let mut run = Run {
        o: &o,
        rx,
        procs: &mut procs,
        shared: shared.clone(),
        server_pids: server_pids.clone(),
        redis_pid,
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
    let connected = run.wait_kind("connected", Duration::from_secs_f64((o.conns as f64 / 500.0).max(30.0) + connect_timeout))?;
    let connect_s = t_connect.elapsed().as_secs_f64();
    let open: u64 = connected.iter().map(|v| v["open"].as_u64().unwrap_or(0)).sum();
    let errors: u64 = connected.iter().map(|v| v["errors"].as_u64().unwrap_or(0)).sum();
    let first = connected.iter().filter_map(|v| v["first_ns"].as_u64()).filter(|&x| x > 0).min().unwrap_or(0);
    let last = connected.iter().filter_map(|v| v["last_ns"].as_u64()).max().unwrap_or(0);
    let span_s = if last > first { (last - first) as f64 / 1e9 } else { connect_s };
    let connect = json!({"requested": o.conns, "open": open, "errors": errors,
        "seconds": span_s, "rate_per_s": if span_s > 0.0 { open as f64 / span_s } else { 0.0 }});
    run.eprint_line(&format!(
        "connected {open}/{} in {span_s:.2} s ({:.0}/s), {errors} errors",
        o.conns, if span_s > 0.0 { open as f64 / span_s } else { 0.0 }
    ));
    if open < o.conns {
        run.warnings.push(format!("only {open} of {} connections opened ({errors} errors)", o.conns));
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
            let per_conn = |a: u64| if open > 0 { (a.saturating_sub(rss_before) as f64) * 1024.0 / open as f64 } else { 0.0 };
            extra = json!({"server_rss_kb_before": rss_before, "server_rss_kb_connected": rss_connected,
                "server_rss_kb_after_hold": rss_after,
                "server_rss_bytes_per_conn": per_conn(rss_after),
                "kernel_slab_bytes_per_conn_pair": if open > 0 { (slab_connected.saturating_sub(slab_before)) as f64 * 1024.0 / open as f64 } else { 0.0 },
            });
        }
        "latency" => {
            run.phase("latency", o.rate, o.warmup, o.duration)?;
        }
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
        _ => unreachable!(),
    }
    shared.set_rate(0.0);

    // Stop clients, collect finals.
    run.broadcast("stop")?;
    let finals = run.wait_kind("final", Duration::from_secs(30)).unwrap_or_default();
    let mut phases = std::mem::take(&mut run.phases);
    warnings.append(&mut run.warnings);
    for p in procs.iter_mut() {
        let _ = p.child.wait();
        guard.forget(p.child.id());
    }
    shared.stop.store(true, Ordering::Relaxed);
    let _ = pub_thread.join();
    let total_published = shared.published.load(Ordering::Relaxed);
    if let Some(e) = shared.last_error.lock().unwrap().clone() {
        warnings.push(format!("publisher errors: {} (last: {e})", shared.errors.load(Ordering::Relaxed)));
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
    let any_rate = phases.iter().any(|p| p["offered_rate"].as_f64().unwrap_or(0.0) > 0.0);
    if any_rate && totals["deliveries"].as_u64().unwrap_or(0) <= totals["snapshots"].as_u64().unwrap_or(0) {
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
    for p in phases.iter_mut() {
        if let Some(w) = p.get("warnings").and_then(|w| w.as_array()) {
            for w in w {
                warnings.push(format!("{}: {}", p["name"].as_str().unwrap_or(""), w.as_str().unwrap_or("")));
            }
        }
    }
    let result = json!({
        "scenario": o.scenario,
        "server": server_desc,
        "server_pids": server_pids,
        "target": target.to_string(),
        "redis": redis_url,
        "config": {"conns": o.conns, "symbols": o.symbols, "per_conn": o.per_conn, "sub_dist": o.sub_dist,
            "pub_dist": o.pub_dist, "form": o.form, "tick_bytes": o.tick_bytes, "rate": o.rate,
            "steps": o.steps, "duration_s": o.duration, "step_duration_s": o.step_duration,
            "warmup_s": o.warmup, "client_processes": n_procs, "client_cores": o.client_cores,
            "churn_frac": o.churn_frac, "churn_rate": o.churn_rate, "slow_frac": o.slow_frac,
            "batch": o.batch, "prefix": o.prefix},
        "connect": connect,
        "phases": phases,
        "totals": totals,
        "published": total_published,
        "extra": extra,
        "warnings": warnings,
        "wall_s": t_begin.elapsed().as_secs_f64(),
    });
    print_summary(&result);
    if !o.out.is_empty() {
        std::fs::write(&o.out, serde_json::to_string_pretty(&result).unwrap())
            .map_err(|e| format!("--out {}: {e}", o.out))?;
        eprintln!("result: {}", o.out);
    }
    if !o.svg.is_empty() {
        let series: Vec<(String, Histogram<u64>)> = result["phases"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| Some((p["name"].as_str()?.to_string(), hist_from_b64(p["latency_hist"].as_str()?)?)))
            .filter(|(_, h)| h.len() > 0)
            .collect();
        let title = format!("ringcast-load {} — {} — {} conns, {} symbols", o.scenario, result["server"].as_str().unwrap_or(""), o.conns, o.symbols);
        std::fs::write(&o.svg, crate::svg::percentile_plot(&title, &series))
            .map_err(|e| format!("--svg {}: {e}", o.svg))?;
        eprintln!("plot: {}", o.svg);
    }
    let _ = o.quiet;
    Ok(())
}

fn procs_len(run: &Run) -> usize {
    run.procs.len()
}

fn planned_secs(o: &Opts) -> f64 {
    let connect = o.conns as f64 / 1000.0 + 10.0;
    let phases = match o.scenario.as_str() {
        "fanout" => o.steps.len() as f64 * (o.step_duration + o.warmup + 2.0),
        "churn" => o.duration * 4.0 / 3.0 + 2.0 * o.warmup + 4.0,
        "slow" => 2.0 * (o.duration + o.warmup + 2.0),
        _ => o.duration + o.warmup + 2.0,
    };
    connect + phases
}

struct Run<'a> {
    o: &'a Opts,
    rx: mpsc::Receiver<(usize, Option<Value>)>,
    procs: &'a mut Vec<Proc>,
    shared: Arc<publisher::Shared>,
    server_pids: Vec<i32>,
    redis_pid: Option<i32>,
    progress: Vec<Value>,
    last_progress_print: Instant,
    deadline: Instant,
    label: String,
    last_deliv: (u64, Instant),
    tty: bool,
    exited: Vec<bool>,
    subs_stable: Vec<u64>,
    subs_slow: Vec<u64>,
    phases: Vec<Value>,
    warnings: Vec<String>,
}

impl Run<'_> {
    fn broadcast(&mut self, cmd: &str) -> Result<(), String> {
        for (i, p) in self.procs.iter_mut().enumerate() {
            if self.exited[i] {
                continue;
            }
            writeln!(p.stdin, "{cmd}").map_err(|e| format!("client {i}: {e}"))?;
            let _ = p.stdin.flush();
        }
        Ok(())
    }

    fn eprint_line(&mut self, s: &str) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{s}");
    }

    /// Handles one message from a client; returns it when it is not a progress line.
    fn handle(&mut self, i: usize, v: Option<Value>) -> Result<Option<Value>, String> {
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

    fn maybe_print_progress(&mut self) {
        let every = if self.tty { 1.0 } else { 5.0 };
        if self.last_progress_print.elapsed().as_secs_f64() < every || self.o.quiet {
            return;
        }
        self.last_progress_print = Instant::now();
        let sum = |k: &str| self.progress.iter().map(|p| p[k].as_u64().unwrap_or(0)).sum::<u64>();
        let deliv = sum("deliveries");
        let dt = self.last_deliv.1.elapsed().as_secs_f64();
        let rate = if dt > 0.0 { deliv.saturating_sub(self.last_deliv.0) as f64 / dt } else { 0.0 };
        self.last_deliv = (deliv, Instant::now());
        let line = format!(
            "[{}] open {}/{} | deliveries {} ({:.0}/s) | lost {} | errors {} | publishing {:.0}/s",
            self.label, sum("open"), self.o.conns, deliv, rate, sum("lost"), sum("errors"), self.shared.rate()
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    fn check_deadline(&self) -> Result<(), String> {
        if Instant::now() > self.deadline {
            return Err("hard timeout reached (--timeout): stopping".into());
        }
        Ok(())
    }

    fn pump_for(&mut self, d: Duration) -> Result<(), String> {
        let end = Instant::now() + d;
        loop {
            self.check_deadline()?;
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            match self.rx.recv_timeout((end - now).min(Duration::from_millis(200))) {
                Ok((i, v)) => {
                    self.handle(i, v)?;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err("all client processes exited".into()),
            }
        }
    }

    /// Waits for one message of `kind` from every client process.
    fn wait_kind(&mut self, kind: &str, limit: Duration) -> Result<Vec<Value>, String> {
        let end = Instant::now() + limit;
        let mut got: Vec<Option<Value>> = vec![None; self.procs.len()];
        while got.iter().any(|g| g.is_none()) {
            self.check_deadline()?;
            let now = Instant::now();
            if now >= end {
                return Err(format!("timed out waiting for `{kind}` from the client processes"));
            }
            match self.rx.recv_timeout((end - now).min(Duration::from_millis(200))) {
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
    fn phase(&mut self, name: &str, rate: f64, warmup: f64, duration: f64) -> Result<Value, String> {
        if self.label == "connect" || !self.label.starts_with("step") {
            self.label = name.to_string();
        }
        self.shared.set_rate(rate);
        self.pump_for(Duration::from_secs_f64(warmup))?;
        self.broadcast("reset")?;
        let cpu0 = server_cpu_ns(&self.server_pids);
        let redis_cpu0 = self.redis_pid.map(|p| server_cpu_ns(&[p]));
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
        let pub1 = self.shared.published.load(Ordering::Relaxed);
        let msgs1 = self.shared.messages.load(Ordering::Relaxed);
        let pubcpu1 = self.shared.cpu_ns.load(Ordering::Relaxed);
        let per1 = self.shared.per_symbol.lock().unwrap().clone();
        let backlog = self.shared.max_backlog.load(Ordering::Relaxed);
        let rss1 = server_rss_kb(&self.server_pids);
        let reports = self.wait_kind("report", Duration::from_secs(30))?;

        let mut hist = new_hist();
        let mut churn_hist = new_hist();
        let mut connect_hist = new_hist();
        let mut c = json!({});
        let mut client_cpu = Vec::new();
        let mut slow_conns = 0u64;
        let mut open = 0u64;
        for r in &reports {
            if let Some(h) = r["hist"].as_str().and_then(hist_from_b64) {
                let _ = hist.add(&h);
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
        let ratio = if expected > 0 { stable as f64 / expected as f64 } else { 1.0 };
        let mut saturated = Value::Null;
        if rate > 0.0 && expected > 0 && !client_saturated {
            let p99_ms = hist.value_at_quantile(0.99) as f64 / 1000.0;
            if ratio < 0.9 {
                saturated = json!(format!("delivered {:.0}% of the expected deliveries", ratio * 100.0));
            } else if c["lost"].as_u64().unwrap_or(0) > 0 {
                saturated = json!(format!("{} ticks lost", c["lost"]));
            } else if p99_ms > self.o.saturation_p99_ms {
                saturated = json!(format!("p99 {p99_ms:.1} ms > {} ms", self.o.saturation_p99_ms));
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
            "churn_latency_us": if churn_hist.len() > 0 { latency_json(&churn_hist) } else { Value::Null },
            "connect_latency_us": if connect_hist.len() > 0 { latency_json(&connect_hist) } else { Value::Null },
            "connects_per_s": c["connects"].as_u64().unwrap_or(0) as f64 / wall,
            "counters": c,
            "open": open,
            "slow_conns": slow_conns,
            "server_cpu_pct": server_cpu_ns as f64 / wall / 1e7,
            "server_cpu_ns_per_delivery": if deliveries > 0 { server_cpu_ns as f64 / deliveries as f64 } else { 0.0 },
            "server_rss_kb": rss1,
            "server_rss_growth_kb": rss1 as i64 - rss0 as i64,
            "redis_cpu_pct": match (redis_cpu0, redis_cpu1) { (Some(a), Some(b)) => json!((b - a) as f64 / wall / 1e7), _ => Value::Null },
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

pub fn latency_json(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "min": h.min(),
        "mean": h.mean(),
        "p50": h.value_at_quantile(0.5),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "p99.9": h.value_at_quantile(0.999),
        "p99.99": h.value_at_quantile(0.9999),
        "max": h.max(),
    })
}

pub fn fmt_us(v: Option<u64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 10_000_000 => format!("{:.1}s", v as f64 / 1e6),
        Some(v) if v >= 10_000 => format!("{:.1}ms", v as f64 / 1e3),
        Some(v) => format!("{v}µs"),
    }
}

fn print_summary(r: &Value) {
    let c = &r["config"];
    println!();
    println!("== ringcast-load: {} ==", r["scenario"].as_str().unwrap_or(""));
    println!("server:   {} at {}", r["server"].as_str().unwrap_or(""), r["target"].as_str().unwrap_or(""));
    println!(
        "load:     {} connections × {} of {} symbols ({}, {} form), {}-byte ticks, {} client process(es) on cores {}",
        c["conns"], c["per_conn"], c["symbols"], c["sub_dist"].as_str().unwrap_or(""), c["form"].as_str().unwrap_or(""),
        c["tick_bytes"], c["client_processes"], c["client_cores"].as_array().map(|a| a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")).unwrap_or_default()
    );
    let cn = &r["connect"];
    println!(
        "connect:  {}/{} open in {:.2} s ({:.0} connections/s), {} errors",
        cn["open"], cn["requested"], cn["seconds"].as_f64().unwrap_or(0.0), cn["rate_per_s"].as_f64().unwrap_or(0.0), cn["errors"]
    );
    println!(
        "{:<12} {:>9} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>5} {:>5} {:>7} {:>9} {:>8}",
        "phase", "offered/s", "deliv/s", "p50", "p90", "p99", "p99.9", "max", "lost", "dup", "ooo", "srv CPU", "ns/deliv", "cli CPU"
    );
    for p in r["phases"].as_array().unwrap() {
        let empty = json!({});
        let l = if p["latency_us"]["count"].as_u64().unwrap_or(0) > 0 { &p["latency_us"] } else { &empty };
        let cli: f64 = p["client_cpu_pct"].as_array().map(|a| a.iter().filter_map(|x| x.as_f64()).fold(0.0, f64::max)).unwrap_or(0.0);
        println!(
            "{:<12} {:>9.0} {:>11.0} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>5} {:>5} {:>6.0}% {:>9.0} {:>7.0}%",
            p["name"].as_str().unwrap_or(""), p["offered_rate"].as_f64().unwrap_or(0.0),
            p["deliveries_per_s"].as_f64().unwrap_or(0.0),
            fmt_us(l["p50"].as_u64()), fmt_us(l["p90"].as_u64()), fmt_us(l["p99"].as_u64()),
            fmt_us(l["p99.9"].as_u64()), fmt_us(l["max"].as_u64()),
            p["counters"]["lost"].as_u64().unwrap_or(0), p["counters"]["duplicated"].as_u64().unwrap_or(0),
            p["counters"]["out_of_order"].as_u64().unwrap_or(0),
            p["server_cpu_pct"].as_f64().unwrap_or(0.0), p["server_cpu_ns_per_delivery"].as_f64().unwrap_or(0.0), cli
        );
        if let Some(cl) = p["churn_latency_us"].as_object()
            && p["connects_per_s"].as_f64().unwrap_or(0.0) > 0.0
        {
            println!(
                "{:<12} churn: {:.0} connects/s, connect p50 {} p99 {}; churning conns' tick latency p50 {} p99 {}",
                "", p["connects_per_s"].as_f64().unwrap_or(0.0),
                fmt_us(p["connect_latency_us"]["p50"].as_u64()), fmt_us(p["connect_latency_us"]["p99"].as_u64()),
                fmt_us(cl.get("p50").and_then(|x| x.as_u64())), fmt_us(cl.get("p99").and_then(|x| x.as_u64()))
            );
        }
    }
    let e = &r["extra"];
    if let Some(b) = e["server_rss_bytes_per_conn"].as_f64() {
        println!(
            "memory:   server RSS {} kB → {} kB: {:.0} bytes per connection (+ kernel ≈ {:.0} bytes per client+server socket pair)",
            e["server_rss_kb_before"], e["server_rss_kb_after_hold"], b, e["kernel_slab_bytes_per_conn_pair"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(s) = e["saturated_at"].as_object() {
        println!("saturation: the server saturated at {} ticks/s ({})", s["rate"], s["reason"].as_str().unwrap_or(""));
    }
    if let Some(g) = e["server_rss_growth_kb"].as_i64() {
        println!("slow readers: server RSS grew {g} kB while they stalled");
    }
    let t = &r["totals"];
    println!(
        "totals:   {} published, {} delivered ({} snapshots), lost {}, duplicated {}, out of order {}, unknown {}, server-closed {}",
        r["published"], t["deliveries"], t["snapshots"], t["lost"], t["duplicated"], t["out_of_order"], t["unknown"], t["server_closed"]
    );
    for w in r["warnings"].as_array().unwrap() {
        println!("WARNING:  {}", w.as_str().unwrap_or(""));
    }
}

// ---- /proc sampling ----

pub fn server_cpu_ns(pids: &[i32]) -> u64 {
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mut total = 0;
    for &pid in pids {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some(p) = s.rfind(')')
        {
            let f: Vec<&str> = s[p + 2..].split_whitespace().collect();
            // after the comm: state is field 3 → index 0; utime 14 → 11, stime 15 → 12
            let ut: u64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0);
            let st: u64 = f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0);
            total += (ut + st) * 1_000_000_000 / tck;
        }
    }
    total
}

pub fn server_rss_kb(pids: &[i32]) -> u64 {
    let mut total = 0;
    for &pid in pids {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            for l in s.lines() {
                if let Some(v) = l.strip_prefix("VmRSS:") {
                    total += v.split_whitespace().next().and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
                }
            }
        }
    }
    total
}

fn slab_kb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Slab:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn descendants(root: i32) -> Vec<i32> {
    let mut out = vec![];
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
                if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    && let Some(i) = s.rfind(')')
                    && s[i + 2..].split_whitespace().nth(1).and_then(|x| x.parse::<i32>().ok()) == Some(p)
                {
                    out.push(pid);
                    frontier.push(pid);
                }
            }
        }
    }
    out
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Result<(), ()> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(())
}

fn healthz(target: SocketAddrV4) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&target.into(), Duration::from_millis(500)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    buf[..n].starts_with(b"HTTP/1.1 200") || buf[..n].starts_with(b"HTTP/1.0 200")
}

static HANDLER: Mutex<Option<Box<dyn Fn() + Send>>> = Mutex::new(None);

extern "C" fn on_signal(_: libc::c_int) {
    // Not async-signal-safe in general, but we only exit afterwards.
    if let Ok(h) = HANDLER.try_lock()
        && let Some(f) = h.as_ref()
    {
        f();
    }
    std::process::exit(130);
}

fn install_signal_handler(f: impl Fn() + Send + 'static) {
    *HANDLER.lock().unwrap() = Some(Box::new(f));
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}
