//! Starting what the run needs: Redis (`--start-redis`) and the server (`--server ringcast|node`),
//! with wss:// (`--tls`): a throwaway certificate from certs/make-dev-cert.sh for the ringcast server
//! this run starts, trusted by the clients.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::Guard;
use super::sys::{descendants, free_port, healthz, wait_until};
use crate::cli::RunArgs;
use crate::common::*;
use crate::{publisher, tls};

/// The server side of the run, from the flags.
pub(super) struct ServerOpts {
    pub(super) kind: String,
    pub(super) core: String,
    pub(super) workers: u32,
    pub(super) processes: u32,
    pub(super) ringcast_bin: String,
    pub(super) node_dir: String,
    pub(super) pids: Vec<i32>,
    pub(super) target: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) start_redis: bool,
    pub(super) redis_url: String,
    pub(super) tls: Option<TlsOpts>,
    /// More `ringcast serve` flags (`--redis-cluster …`, `--proxy-protocol …`).
    pub(super) extra_args: Vec<String>,
    /// The server reads a PROXY header first (`--proxy-protocol`): the `/healthz` probe sends one.
    pub(super) proxy_protocol: bool,
    /// Start ringcast with `--join` (a replacement sharing the port with the server it replaces).
    pub(super) join: bool,
}

/// `--tls`: what the clients trust, and the certificate the started server presents.
pub(super) struct TlsOpts {
    /// `--ca FILE` (None: the certificate generated for the server this run starts).
    pub(super) ca: Option<String>,
    /// `--server-name` (SNI and the name the certificate must carry), default `localhost`.
    pub(super) server_name: String,
    /// `--tls-cert FILE --tls-key FILE` for the started ringcast instead of a generated pair.
    pub(super) cert_key: Option<(String, String)>,
}

impl ServerOpts {
    pub(super) fn from_args(a: &RunArgs) -> Result<ServerOpts, String> {
        let manifest = env!("CARGO_MANIFEST_DIR");
        let pids = a
            .server_pid
            .as_ref()
            .map(|p| p.0.clone())
            .unwrap_or_default();
        let tls = a.tls.tls.then(|| TlsOpts {
            ca: a.tls.ca.clone(),
            server_name: a.tls.server_name.clone(),
            // clap has checked that they come together.
            cert_key: a.tls_cert.clone().zip(a.tls_key.clone()),
        });
        let default_kind = if !pids.is_empty() { "none" } else { "ringcast" };
        let kind = a.server.clone().unwrap_or(default_kind.to_string());
        if let Some(t) = &tls {
            // Refused before anything starts.
            match kind.as_str() {
                "node" => {
                    return Err("--tls: the node baseline (perf/baselines/node-ws) is the seed system, which speaks ws:// only; \
                                use --tls with --server ringcast, or with --server none --target HOST:PORT --ca FILE against a wss server you started".into());
                }
                "ringcast" => {}
                _ if t.ca.is_none() => {
                    return Err("--tls against a server this run does not start needs --ca FILE (the PEM certificate to trust)".into());
                }
                _ => {}
            }
        }
        Ok(ServerOpts {
            join: false,
            kind,
            core: a.server_core.clone(),
            workers: a.server_workers,
            processes: a.server_processes,
            ringcast_bin: a
                .ringcast_bin
                .clone()
                .unwrap_or_else(|| format!("{manifest}/../target/release/ringcast")),
            node_dir: a
                .node_dir
                .clone()
                .unwrap_or_else(|| format!("{manifest}/baselines/node-ws")),
            pids,
            target: a.target.clone(),
            port: a.port,
            start_redis: a.start_redis,
            redis_url: a.redis.clone(),
            tls,
            extra_args: Vec::new(),
            proxy_protocol: false,
        })
    }
}

/// Redis: started on a free port (pinned to the client cores), or the one at `--redis`.
/// Returns the URL and the pid of the one started.
pub(super) fn redis(
    s: &ServerOpts,
    guard: &Guard,
    cores: &[usize],
) -> Result<(String, Option<i32>), String> {
    if !s.start_redis {
        publisher::connect(&s.redis_url)
            .map_err(|e| format!("{e} (give --redis URL or --start-redis)"))?;
        return Ok((s.redis_url.clone(), None));
    }
    let port = free_port()?;
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--loglevel",
            "warning",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("--start-redis: cannot run redis-server from PATH: {e}"))?;
    guard.add(child.id(), "redis-server");
    let _ = pin_to(child.id() as i32, cores);
    let url = format!("redis://127.0.0.1:{port}");
    wait_until(Duration::from_secs(10), || publisher::connect(&url).is_ok())
        .map_err(|_| format!("redis-server on port {port} did not come up"))?;
    Ok((url, Some(child.id() as i32)))
}

/// The server under test, up and answering `/healthz`.
pub(super) struct Started {
    pub(super) target: SocketAddrV4,
    pub(super) pids: Vec<i32>,
    pub(super) desc: String,
    /// `--tls`: the clients' trust file and server name, and the `tls` object of the result.
    pub(super) tls: Option<(String, String)>,
    pub(super) tls_json: Value,
}

pub(super) fn start(
    s: &ServerOpts,
    guard: &Guard,
    redis_url: &str,
    prefix: &str,
    conns: u64,
) -> Result<Started, String> {
    let target: SocketAddrV4 = match (&s.target, s.kind.as_str()) {
        (Some(t), _) => t.parse().map_err(|e| format!("--target: {e}"))?,
        (None, "none") => SocketAddrV4::new(Ipv4Addr::LOCALHOST, s.port.unwrap_or(3001)),
        (None, _) => SocketAddrV4::new(
            Ipv4Addr::LOCALHOST,
            match s.port {
                Some(p) if p > 0 => p,
                _ => free_port()?,
            },
        ),
    };
    let cores = parse_cores(&s.core)?;
    let mut pids = s.pids.clone();
    let mut desc = s.kind.clone();
    // --tls: which certificate the server presents, which one the clients trust.
    let mut server_tls: Vec<String> = Vec::new();
    let mut tls_json = json!({"enabled": s.tls.is_some()});
    let mut trust = None;
    if let Some(t) = &s.tls {
        match s.kind.as_str() {
            "node" => unreachable!("refused in from_args"),
            "ringcast" => {
                let (cert, key, how) = match &t.cert_key {
                    Some((c, k)) => (c.clone(), k.clone(), format!("{c} (--tls-cert)")),
                    None => {
                        let (c, k) = make_dev_cert(guard)?;
                        (c, k, "throwaway ECDSA P-256 localhost certificate from certs/make-dev-cert.sh".to_string())
                    }
                };
                server_tls = vec!["--tls-cert".into(), cert.clone(), "--tls-key".into(), key];
                trust = Some(t.ca.clone().unwrap_or(cert));
                tls_json["server_cert"] = json!(how);
            }
            _ => {
                trust = t.ca.clone();
            }
        }
        tls_json["ca"] = json!(trust);
        tls_json["server_name"] = json!(t.server_name);
    }
    match s.kind.as_str() {
        "ringcast" => {
            let bin = &s.ringcast_bin;
            if !std::path::Path::new(bin).exists() {
                return Err(format!(
                    "{bin} does not exist: run `cargo build --release` in the repo root (or give --ringcast-bin)"
                ));
            }
            let child = pinned_with_nofile(&mut Command::new(bin), &cores)
                .args([
                    "serve",
                    "--listen",
                    &target.to_string(),
                    "--workers",
                    &s.workers.to_string(),
                    "--processes",
                    &s.processes.to_string(),
                    "--redis",
                    redis_url,
                    "--prefix",
                    prefix,
                ])
                .args(&server_tls)
                .args(&s.extra_args)
                .args(s.join.then_some("--join"))
                .env(
                    "RINGCAST_LOG",
                    std::env::var("RINGCAST_LOG").unwrap_or("warn".into()),
                )
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("starting {bin}: {e}"))?;
            guard.add_with_grace(child.id(), "ringcast", stop_grace(&s.extra_args, conns));
            pin_to(child.id() as i32, &cores).map_err(|e| format!("pinning the server: {e}"))?;
            pids.push(child.id() as i32);
            desc = format!(
                "ringcast serve --workers {} --processes {}{} (pinned to cores {})",
                s.workers,
                s.processes,
                if s.tls.is_some() {
                    " --tls-cert/--tls-key"
                } else {
                    ""
                },
                s.core
            );
        }
        "node" => {
            let dir = &s.node_dir;
            let script = format!("{dir}/server.js");
            if !std::path::Path::new(&format!("{dir}/node_modules")).exists() {
                return Err(format!(
                    "{dir}/node_modules is missing: run `npm ci` in {dir}"
                ));
            }
            let child = pinned_with_nofile(&mut Command::new("node"), &cores)
                .arg(&script)
                .env("PORT", target.port().to_string())
                .env("HOST", target.ip().to_string())
                .env("REDIS_URL", redis_url)
                .env("PREFIX", prefix)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("starting node {script}: {e}"))?;
            guard.add(child.id(), "node");
            pin_to(child.id() as i32, &cores).map_err(|e| format!("pinning the server: {e}"))?;
            pids.push(child.id() as i32);
            desc = format!("node ws + ioredis baseline (pinned to cores {})", s.core);
        }
        "none" => {}
        other => {
            return Err(format!(
                "--server must be ringcast, node or none, got `{other}`"
            ));
        }
    }
    let tls = match (&s.tls, trust) {
        (Some(t), Some(ca)) => Some((ca, t.server_name.clone())),
        _ => None,
    };
    let probe = match &tls {
        Some((ca, name)) => Some(tls::Tls::new(ca, name, false, None)?),
        None => None,
    };
    let scheme = if probe.is_some() { "https" } else { "http" };
    let mut last = String::new();
    wait_until(Duration::from_secs(15), || match &probe {
        Some(p) => tls::healthz(p, target).map_err(|e| last = e).is_ok(),
        None => healthz(target, s.proxy_protocol),
    })
    .map_err(|_| {
        let why = if last.is_empty() {
            String::new()
        } else {
            format!(" (last attempt: {last})")
        };
        format!(
            "the server at {target} did not answer GET {scheme}://{target}/healthz within 15 s{why}"
        )
    })?;
    if s.kind != "none" {
        pids = all_server_pids(s, pids, conns);
    }
    Ok(Started {
        target,
        pids,
        desc,
        tls,
        tls_json,
    })
}

/// The started server and its descendants (ringcast --processes supervisor). /healthz answers as soon
/// as the first child listens: wait for all of them (and their listeners), or their CPU and RSS would
/// be missed. Warns when the worker tables (sized from the soft RLIMIT_NOFILE) cap the run.
fn all_server_pids(s: &ServerOpts, mut pids: Vec<i32>, conns: u64) -> Vec<i32> {
    if s.kind == "ringcast" && s.processes > 1 {
        let root = pids[0];
        let _ = wait_until(Duration::from_secs(30), || {
            descendants(root).len() >= s.processes as usize
        });
        std::thread::sleep(Duration::from_millis(500));
    }
    for p in descendants(pids[0]) {
        if !pids.contains(&p) {
            pids.push(p);
        }
    }
    let servers: Vec<i32> = if pids.len() > 1 {
        pids[1..].to_vec()
    } else {
        pids.clone()
    };
    let cap: u64 = servers
        .iter()
        .map(|&p| nofile_soft_of(p).unwrap_or(0) * s.workers as u64)
        .sum();
    eprintln!(
        "server processes {:?}: soft RLIMIT_NOFILE {:?} (≈ {} connections at most with {} worker(s) each)",
        servers,
        servers
            .iter()
            .map(|&p| nofile_soft_of(p))
            .collect::<Vec<_>>(),
        cap,
        s.workers
    );
    if s.kind == "ringcast" && cap > 0 && cap < conns {
        eprintln!(
            "WARNING: --conns {conns} exceeds the server's connection tables (≈ {cap}): add --server-processes/--server-workers"
        );
    }
    pids
}

/// A throwaway self-signed localhost certificate (certs/make-dev-cert.sh, openssl) in a temporary
/// directory removed at the end of the run. Returns (cert.pem, key.pem).
/// How long the server gets to exit after SIGTERM before the harness SIGKILLs what is left of it:
/// its own bound (`--drain-window` + `--close-timeout` + 1 s, from its flags or environment as the
/// server reads them) plus 10 s and 1 s per 20,000 connections (a supervisor of 64 processes holding
/// 1M connections takes tens of seconds to close them and exit).
fn stop_grace(extra_args: &[String], conns: u64) -> Duration {
    let setting = |flag: &str, env: &str, default: f64| {
        extra_args
            .iter()
            .position(|a| a == flag)
            .and_then(|i| extra_args.get(i + 1))
            .cloned()
            .or_else(|| {
                let prefix = format!("{flag}=");
                extra_args
                    .iter()
                    .find_map(|a| a.strip_prefix(&prefix).map(str::to_string))
            })
            .or_else(|| std::env::var(env).ok())
            .and_then(|v| parse_secs(&v))
            .unwrap_or(default)
    };
    let drain = setting("--drain-window", "RINGCAST_DRAIN_WINDOW", 10.0);
    let close = setting("--close-timeout", "RINGCAST_CLOSE_TIMEOUT", 5.0);
    Duration::from_secs_f64(drain + close + 1.0 + 10.0 + conns as f64 / 20_000.0)
}

fn make_dev_cert(guard: &Guard) -> Result<(String, String), String> {
    let script = format!("{}/../certs/make-dev-cert.sh", env!("CARGO_MANIFEST_DIR"));
    let dir = guard.temp_dir("tls")?;
    let out = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("--tls: running {script}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "--tls: {script} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !cert.exists() || !key.exists() {
        return Err(format!(
            "--tls: {script} wrote no cert.pem/key.pem in {}",
            dir.display()
        ));
    }
    Ok((
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    ))
}
