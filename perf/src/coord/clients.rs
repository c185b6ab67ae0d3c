//! The client processes: spawned (pinned to the client cores, optionally under
//! RINGCAST_LOAD_CLIENT_WRAP), each with a thread forwarding its JSON lines.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;

use serde_json::Value;

use super::Guard;
use super::opts::Opts;
use crate::common::*;

pub(super) struct Proc {
    pub(super) child: Child,
    pub(super) stdin: ChildStdin,
}

/// What every client process gets besides the options.
pub(super) struct ClientArgs<'a> {
    pub(super) exe: &'a Path,
    pub(super) target: SocketAddrV4,
    pub(super) connect_timeout: f64,
    pub(super) hard_timeout: f64,
    /// --tls: (trusted PEM file, server name)
    pub(super) tls: Option<&'a (String, String)>,
}

pub(super) type Lines = mpsc::Receiver<(usize, Option<Value>)>;

/// Spawns the client processes (pinned to the client cores), each with a thread forwarding its JSON
/// lines.
pub(super) fn spawn_clients(
    o: &Opts,
    guard: &Guard,
    plan: &[(u64, u64, Ipv4Addr)],
    a: &ClientArgs,
) -> Result<(Lines, Vec<Proc>), String> {
    let (tx, rx) = mpsc::channel::<(usize, Option<Value>)>();
    let mut procs: Vec<Proc> = Vec::new();
    let mut tls_args: Vec<&str> = Vec::new();
    if let Some((ca, name)) = a.tls {
        tls_args = vec!["--tls", "--ca", ca, "--server-name", name];
        tls_args.extend(o.client_tls.iter().map(String::as_str));
    }
    for (i, &(offset, n, src)) in plan.iter().enumerate() {
        // RINGCAST_LOAD_CLIENT_WRAP (e.g. `valgrind --tool=callgrind`): a command each client process
        // runs under, for profiling the load generator itself.
        let wrap = std::env::var("RINGCAST_LOAD_CLIENT_WRAP").unwrap_or_default();
        let mut wrap = wrap.split_whitespace();
        let mut cmd = match wrap.next() {
            Some(w) => {
                let mut c = Command::new(w);
                c.args(wrap).arg(a.exe);
                c
            }
            None => Command::new(a.exe),
        };
        let mut child = pinned_with_nofile(&mut cmd, &o.client_cores)
            .args([
                "client",
                "--target",
                &a.target.to_string(),
                "--conns",
                &n.to_string(),
                "--offset",
                &offset.to_string(),
                "--src-base",
                &src.to_string(),
                "--symbols",
                &o.symbols.to_string(),
                "--per-conn",
                &o.per_conn.to_string(),
                "--sub-dist",
                &o.sub_dist,
                "--zipf-s",
                &o.zipf_s.to_string(),
                "--seed",
                &o.seed.to_string(),
                "--form",
                &o.form,
                "--connect-concurrency",
                &o.connect_concurrency.to_string(),
                "--churn-frac",
                &o.churn_frac.to_string(),
                "--connect-timeout",
                &a.connect_timeout.to_string(),
                "--deadline",
                &format!("{}", a.hard_timeout + 10.0),
            ])
            .args(&tls_args)
            .args(if o.scenario == "storm" {
                vec!["--reconnect-policy", &o.reconnect_policy]
            } else {
                vec![]
            })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawning client {i}: {e}"))?;
        guard.add(child.id(), "client");
        pin_to(child.id() as i32, &o.client_cores)
            .map_err(|e| format!("pinning client {i}: {e}"))?;
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
        procs.push(Proc { child, stdin });
    }
    Ok((rx, procs))
}
