//! `--via-haproxy`: HAProxy between the clients and the server under test, started from the project's
//! `deploy/haproxy.cfg` (rewritten by `crate::haproxy_cfg`: a free front port on 127.0.0.1, the started
//! server as the one backend, `send-proxy-v2`, `/readyz` checks), pinned to `--haproxy-core`.
//!
//! Each HAProxy process holds two descriptors per client (client side and server side), and a process
//! here may open 20,000: so at most 9,000 clients per process, and `--haproxy-processes` (default: enough
//! for `--conns`) processes share the front port through `SO_REUSEPORT` (HAProxy's default on Linux),
//! the kernel spreading the connections among them. All are stopped by PID at the end of the run.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::Guard;
use super::sys::{free_port, healthz, wait_until};
use crate::cli::FleetArgs;
use crate::common::*;

/// Clients per HAProxy process (two descriptors each, under the 20,000-descriptor limit).
pub(super) const CLIENTS_PER_PROCESS: u64 = 9_000;

/// The started HAProxy processes.
pub(super) struct Haproxy {
    /// Where the clients connect.
    pub(super) front: SocketAddrV4,
    pub(super) pids: Vec<i32>,
    /// For the result: command, core, processes, maxconn, config.
    pub(super) json: Value,
}

/// The server flags that go with it: PROXY v2 from this HAProxy only.
pub(super) fn server_args() -> Vec<String> {
    ["--proxy-protocol", "--trusted-proxies", "127.0.0.1/32"]
        .map(String::from)
        .to_vec()
}

/// Starts HAProxy in front of `backend` and waits until `/healthz` answers through it.
pub(super) fn start(
    f: &FleetArgs,
    conns: u64,
    backend: SocketAddrV4,
    guard: &Guard,
) -> Result<Haproxy, String> {
    let procs = u64::from(f.haproxy_processes.unwrap_or(0))
        .max(conns.div_ceil(CLIENTS_PER_PROCESS))
        .max(1);
    let per_proc = conns.div_ceil(procs);
    if per_proc > CLIENTS_PER_PROCESS {
        return Err(format!(
            "--via-haproxy: {conns} connections over {procs} HAProxy process(es) is {per_proc} each, more than \
             {CLIENTS_PER_PROCESS} (two descriptors per client under the 20,000 limit): give --haproxy-processes {}",
            conns.div_ceil(CLIENTS_PER_PROCESS)
        ));
    }
    // SO_REUSEPORT does not split evenly: leave room, within the descriptor limit.
    let maxconn = (per_proc + per_proc / 4 + 100).min(9_500) as u32;
    let manifest = env!("CARGO_MANIFEST_DIR");
    let deploy = format!("{manifest}/../deploy/haproxy.cfg");
    let text = std::fs::read_to_string(&deploy).map_err(|e| format!("{deploy}: {e}"))?;
    let front = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port()?);
    let cfg_text =
        crate::haproxy_cfg::rewrite(&text, &front.to_string(), &[backend.to_string()], maxconn)?;
    let dir = guard.temp_dir("haproxy")?;
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(&cfg, &cfg_text).map_err(|e| format!("{}: {e}", cfg.display()))?;
    let check = Command::new(&f.haproxy_bin)
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "--via-haproxy: cannot run {} ({e}): apt-get install -y haproxy, or give --haproxy-bin",
                f.haproxy_bin
            )
        })?;
    if !check.status.success() {
        return Err(format!(
            "--via-haproxy: haproxy -c refused the rewritten deploy/haproxy.cfg: {}{}",
            String::from_utf8_lossy(&check.stdout).trim(),
            String::from_utf8_lossy(&check.stderr).trim()
        ));
    }
    let cores = parse_cores(&f.haproxy_core)?;
    let mut pids = Vec::new();
    for _ in 0..procs {
        let child = pinned_with_nofile(&mut Command::new(&f.haproxy_bin), &cores)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", f.haproxy_bin))?;
        guard.add(child.id(), "haproxy");
        pids.push(child.id() as i32);
    }
    wait_until(Duration::from_secs(15), || healthz(front, false)).map_err(|_| {
        format!("HAProxy at {front} did not answer GET /healthz (from the server at {backend}) within 15 s")
    })?;
    eprintln!(
        "haproxy: {procs} process(es) {pids:?} on cores {} at {front} → {backend} (send-proxy-v2, maxconn {maxconn} each)",
        f.haproxy_core
    );
    Ok(Haproxy {
        front,
        pids,
        json: json!({"front": front.to_string(), "backend": backend.to_string(),
            "processes": procs, "core": f.haproxy_core, "maxconn_per_process": maxconn,
            "config": cfg_text}),
    })
}
