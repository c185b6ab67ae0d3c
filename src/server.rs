//! `ringcast serve`: bind one `SO_REUSEPORT` listener per worker, start the workers pinned to their
//! cores, and stop them on SIGTERM/SIGINT. With `--processes N`, a supervisor starts N such processes
//! sharing the port instead.

mod group;
mod metrics;

use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::admission::{MessageLimit, SharedAcceptRate, SharedPerIp};
use crate::config::{self, ServeConfig};
use crate::fanout;
use crate::ingest::{self, IngestConfig, IngestStats};
use crate::runtime::core::{App, SlowPolicy, WorkerSettings};
use crate::runtime::driver::{Feed, Worker};
use crate::runtime::listener;
use crate::runtime::signals::{self, Signal};
use crate::runtime::wake::Control;
use crate::tls::{TlsConfig, TlsReloader};
use group::{Group, GroupDir};
use metrics::Metrics;

pub fn serve(mut cfg: ServeConfig) -> Result<(), String> {
    cfg.validate()?;
    crate::runtime::kernel::check()?;
    signals::block();
    if !cfg.join {
        // Our own `--processes` children are started with RINGCAST_JOIN=true: they share the port.
        listener::ensure_free(cfg.listen)?;
    }
    if cfg.processes > 1 {
        return supervise(&cfg);
    }
    let controls = (0..cfg.workers)
        .map(|id| Control::new().map_err(|e| format!("cannot create worker {id}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let ingest_stats = (!cfg.echo).then(|| Arc::new(IngestStats::default()));
    let group = Group::from_env();
    let metrics = Arc::new(Metrics {
        workers: controls.iter().map(|c| c.stats.clone()).collect(),
        ingest: ingest_stats.clone(),
        group: group.clone(),
    });
    // In a `--processes` group: publish our snapshot for the siblings' scrapes (the first one now, so a
    // scrape never misses a process that is already serving).
    let metrics_stop = Arc::new(AtomicBool::new(false));
    let publisher = match group {
        Some(group) => {
            let m = metrics.clone();
            group
                .publish(&m.render_local())
                .map_err(|e| format!("cannot publish metrics for the group: {e}"))?;
            Some(
                group
                    .start_publishing(move || m.render_local(), metrics_stop.clone())
                    .map_err(|e| format!("cannot spawn the metrics thread: {e}"))?,
            )
        }
        None => None,
    };
    let settings = Arc::new(worker_settings(&cfg, metrics));
    let admission_epoch = Instant::now();
    // Workers ask ingest for the stored latest tick of a symbol they evicted (`--max-symbols`).
    let (fetch_tx, fetch_rx) = std::sync::mpsc::channel();
    let nofile = crate::runtime::uring::raise_nofile_limit();
    let (_, per_worker) = crate::runtime::core::table_size(cfg.max_conns_per_worker, nofile);
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => {
            let paths = TlsConfig {
                ticket_keys: cfg.tls_ticket_keys.clone(),
                groups: cfg.tls_groups.clone(),
                ..TlsConfig::new(cert.clone(), key.clone())
            };
            let reloader = TlsReloader::new(&paths).map_err(|e| format!("{}: {e}", e.flag()))?;
            tracing::info!(
                ticket_keys = ?paths.ticket_keys,
                groups = ?paths.groups,
                "TLS: session tickets from {}",
                if paths.ticket_keys.is_some() { "the key file" } else { "random keys of this process" }
            );
            Some(Arc::new(reloader))
        }
        _ => None,
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut listeners = Vec::with_capacity(cfg.workers);
    for _ in 0..cfg.workers {
        listeners.push(
            listener::bind(cfg.listen, cfg.send_buffer)
                .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?,
        );
    }
    let mut threads = Vec::new();
    let mut feeds = Vec::new();
    for (id, listener) in listeners.into_iter().enumerate() {
        let control = controls[id].clone();
        let feed = if cfg.echo {
            None
        } else {
            let (tx, rx) = fanout::channel(control.clone());
            feeds.push(tx);
            Some(Feed {
                events: rx,
                fetch: fetch_tx.clone(),
            })
        };
        let settings = settings.clone();
        let tls = tls.clone();
        let core = id % cores;
        // The worker is built on its own thread (its ring and buffers never cross threads); start-up
        // errors come back through `ready`.
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
        let thread = std::thread::Builder::new()
            .name(format!("ringcast-w{id}"))
            .spawn(move || {
                if let Err(e) = crate::runtime::uring::pin_to_cpu(core) {
                    tracing::warn!(worker = id, core, error = %e, "cannot pin worker to its core");
                }
                let worker = match Worker::new(
                    id,
                    listener,
                    settings,
                    control,
                    feed,
                    tls,
                    admission_epoch,
                ) {
                    Ok(w) => w,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(format!("cannot start worker {id} (io_uring): {e}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                if let Err(e) = worker.run() {
                    tracing::error!(worker = id, error = %e, "worker failed");
                }
            })
            .map_err(|e| format!("cannot spawn worker thread: {e}"))?;
        ready_rx
            .recv()
            .map_err(|_| format!("worker {id} died during start-up"))??;
        threads.push(thread);
    }
    let ingest_stop = Arc::new(AtomicBool::new(false));
    let ingest = match ingest_stats {
        None => None,
        Some(stats) => {
            let ingest_cfg = IngestConfig {
                max_tick_bytes: cfg.max_tick_bytes,
                ..cfg.feed.ingest_config()
            };
            Some(
                ingest::start_with_fetches(
                    ingest_cfg,
                    feeds,
                    Some(fetch_rx),
                    stats,
                    ingest_stop.clone(),
                )
                .map_err(|e| e.to_string())?,
            )
        }
    };
    tracing::info!(
        listen = %cfg.listen,
        workers = cfg.workers,
        connections_per_worker = per_worker,
        echo = cfg.echo,
        tls = tls.is_some(),
        pid = std::process::id(),
        "listening"
    );
    let stop = loop {
        match signals::wait_timeout(CERT_CHECK) {
            Some(signal @ (Signal::Terminate | Signal::Interrupt)) => break signal,
            Some(Signal::Reload) => match &tls {
                Some(tls) => reload_certificate(tls, "SIGHUP"),
                None => tracing::info!("SIGHUP: no TLS certificate to reload"),
            },
            Some(Signal::Child) => {}
            None => {
                if let Some(tls) = &tls
                    && tls.changed_on_disk()
                {
                    reload_certificate(tls, "certificate files changed");
                }
            }
        }
    };
    shut_down_gracefully(&controls, &threads, &cfg, stop);
    tracing::info!("stopping");
    ingest_stop.store(true, Ordering::Release);
    if let Some(ingest) = ingest {
        let _ = ingest.join();
    }
    for c in &controls {
        c.stop();
    }
    for t in threads {
        let _ = t.join();
    }
    metrics_stop.store(true, Ordering::Release);
    if let Some(p) = publisher {
        let _ = p.join();
    }
    Ok(())
}

/// The workers' settings from the configuration (the core sees plain settings, not the configuration).
fn worker_settings(cfg: &ServeConfig, metrics: Arc<Metrics>) -> WorkerSettings {
    WorkerSettings {
        app: if cfg.echo { App::Echo } else { App::Ticker },
        limits: cfg.limits(),
        head_limits: cfg.head_limits(),
        handshake_timeout_ms: cfg.handshake_timeout.as_millis() as u64,
        max_conns: cfg.max_conns_per_worker,
        recv_buffers: cfg.recv_buffers,
        recv_buffer_size: cfg.recv_buffer_size as usize,
        max_symbols_per_conn: cfg.max_symbols_per_conn,
        max_symbols: cfg.max_symbols as usize,
        fetch_latest: !cfg.echo,
        slow_policy: match cfg.slow_policy {
            config::SlowPolicy::Conflate => SlowPolicy::Conflate,
            config::SlowPolicy::Drop => SlowPolicy::Drop,
            config::SlowPolicy::Close => SlowPolicy::Close,
        },
        slow_grace_ms: cfg.slow_grace.as_millis() as u64,
        ping_interval_s: cfg.ping_interval.as_secs().max(1) as u32,
        idle_timeout_s: cfg.idle_timeout.as_secs().max(2) as u32,
        shutdown_window_ms: cfg.drain_window.as_millis() as u64,
        max_backlog: cfg.max_backlog,
        metrics,
        gate: cfg.gate(),
        max_conns_per_ip: cfg.max_conns_per_ip,
        proxy_protocol: cfg.proxy_protocol,
        trusted_proxies: cfg.trusted_proxies.clone().unwrap_or_default(),
        per_ip: SharedPerIp::default(),
        accept_rate: (cfg.handshake_rate > 0).then(|| SharedAcceptRate::new(cfg.handshake_rate, 0)),
        coalesce_us: cfg.coalesce_delay.as_micros() as u64,
        message_limit: (cfg.max_msgs_per_s > 0 && !cfg.echo)
            .then(|| MessageLimit::per_second(cfg.max_msgs_per_s)),
    }
}

/// How often the certificate files are checked for changes.
const CERT_CHECK: Duration = Duration::from_secs(5);

/// Load the certificate again; new connections use it, open ones keep theirs. A bad new certificate
/// keeps the old one serving.
fn reload_certificate(tls: &TlsReloader, why: &str) {
    match tls.reload() {
        Ok(()) => tracing::info!(
            why,
            generation = tls.generation(),
            "TLS certificate reloaded"
        ),
        Err(e) => {
            tracing::error!(why, error = %e, "TLS certificate NOT reloaded; still serving the previous one")
        }
    }
}

/// How long the drain lasts at most after SIGINT (Ctrl-C): a terminal user wants the prompt back.
pub const INTERRUPT_DRAIN: Duration = Duration::from_secs(1);

/// Graceful shutdown: health checks report draining, new upgrades get 503, open clients are closed with
/// 1012 spread over the drain window. Returns when every worker is done, at the deadline, or on a second
/// SIGTERM/SIGINT. After SIGINT the deadline is [`INTERRUPT_DRAIN`]: the clients the spread has not reached
/// by then see their TCP connection close.
fn shut_down_gracefully(
    controls: &[Arc<Control>],
    threads: &[std::thread::JoinHandle<()>],
    cfg: &ServeConfig,
    signal: Signal,
) {
    let full = cfg.drain_window + cfg.close_timeout + Duration::from_secs(1);
    let limit = if signal == Signal::Interrupt {
        tracing::info!(
            at_most = ?INTERRUPT_DRAIN,
            "SIGINT: stopping (Ctrl-C again to stop at once; SIGTERM drains over --drain-window)"
        );
        INTERRUPT_DRAIN.min(full)
    } else {
        tracing::info!(window = ?cfg.drain_window, "SIGTERM: draining (send SIGTERM again to stop at once)");
        full
    };
    for c in controls {
        c.begin_shutdown();
    }
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && !threads.iter().all(|t| t.is_finished()) {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        if let Some(again) = signals::wait_timeout(wait).filter(|s| s.is_stop()) {
            tracing::warn!(signal = ?again, "second stop signal: stopping without waiting for the drain");
            return;
        }
    }
}

/// Run `cfg.processes` copies of this server (same arguments, one process each) and keep them running;
/// forward SIGTERM/SIGINT/SIGHUP to them.
fn supervise(cfg: &ServeConfig) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let args = child_args();
    // Where the children publish their metrics, so any of them answers /metrics for the group.
    let metrics_dir = GroupDir::create()
        .map_err(|e| format!("cannot create the group's metrics directory: {e}"))?;
    let spawn = |index: u32| -> Result<Child, String> {
        let mut cmd = Command::new(&exe);
        cmd.args(&args)
            .env("RINGCAST_PROCESSES", "1")
            // The port is checked (or joining was asked for) by the supervisor; siblings share it.
            .env("RINGCAST_JOIN", "true")
            .env(group::INDEX_ENV, index.to_string())
            .env(group::DIR_ENV, metrics_dir.path());
        // The children inherit our blocked signal mask through exec; they block the same set themselves.
        // A supervisor killed with SIGKILL cannot pass a signal on: the kernel sends them SIGTERM (a
        // drain) when it dies, so no orphan keeps serving the port next to a restarted group.
        crate::cli::process::die_with_parent(&mut cmd);
        cmd.spawn()
            .map_err(|e| format!("cannot start server process {index}: {e}"))
    };
    let mut children: Vec<(Child, Instant)> = Vec::new();
    for index in 0..cfg.processes {
        children.push((spawn(index)?, Instant::now()));
    }
    tracing::info!(processes = cfg.processes, listen = %cfg.listen, "supervising server processes");
    let result = loop {
        match signals::wait() {
            Signal::Terminate => break Ok(libc::SIGTERM),
            Signal::Interrupt => break Ok(libc::SIGINT),
            Signal::Reload => children
                .iter()
                .for_each(|(c, _)| signals::kill(c.id(), libc::SIGHUP)),
            Signal::Child => {
                let mut failed = None;
                for (index, (child, started)) in children.iter_mut().enumerate() {
                    let Ok(Some(status)) = child.try_wait() else {
                        continue;
                    };
                    if started.elapsed() < Duration::from_secs(2) {
                        failed = Some(format!(
                            "server process {index} exited right after start ({status})"
                        ));
                        break;
                    }
                    tracing::error!(index, %status, "server process exited; restarting it");
                    // Its series go until its replacement publishes them again, from 0 (a counter
                    // reset of that `process` series, which rate() and increase() expect).
                    metrics_dir.forget(index as u32);
                    match spawn(index as u32) {
                        Ok(new) => *child = new,
                        Err(e) => tracing::error!(index, error = %e, "restart failed"),
                    }
                    *started = Instant::now();
                }
                if let Some(err) = failed {
                    break Err(err);
                }
            }
        }
    };
    // The children stop the way we were asked to: SIGTERM drains, SIGINT is quick.
    let stop = *result.as_ref().unwrap_or(&libc::SIGTERM);
    for (child, _) in &children {
        signals::kill(child.id(), stop);
    }
    for (child, _) in &mut children {
        let _ = child.wait();
    }
    result.map(|_| ())
}

/// Our own arguments without `--processes N`.
fn child_args() -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for arg in std::env::args().skip(1) {
        if skip {
            skip = false;
            continue;
        }
        if arg == "--processes" {
            skip = true;
            continue;
        }
        if arg.starts_with("--processes=") {
            continue;
        }
        out.push(arg);
    }
    out
}
