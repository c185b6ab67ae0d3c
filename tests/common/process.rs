//! Child processes of the behaviour_* tests: other subcommands with captured output, process trees
//! killed by PID, polling with a deadline, tools a test needs from PATH.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::bin;

/// Stdout and stderr of a child, collected on threads as it runs.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// Take `child`'s piped stdout and stderr and collect them (interleaved by line arrival).
    pub fn of(child: &mut Child) -> Captured {
        let out = Captured::default();
        let pipes: Vec<Box<dyn Read + Send>> = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        for mut pipe in pipes {
            let sink = out.0.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
        out
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// `ringcast <args>` with extra environment, stdout and stderr piped (use `Captured::of`).
pub fn ringcast_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A finished command's stdout, then its stderr, as text.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Poll `ready` every 20 ms; panics naming `what` if it is not true within `within`.
pub fn poll_until(within: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The PIDs of `pid`'s children.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![];
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `pid` and all its descendants.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        all.extend(children_of(all[i]));
        i += 1;
    }
    all
}

/// Whether `pid` is a running process (not gone, not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Send `sig` to `pid`.
pub fn kill_pid(pid: u32, sig: i32) {
    ringcast::runtime::signals::kill(pid, sig);
}

/// SIGKILLs every descendant of a process (found when dropped), for processes a test starts indirectly
/// (a supervisor's children, the demo's redis-server/server/feed). Declare it after the parent's handle
/// so it drops first, while the parent still holds them.
pub struct ReapDescendants(pub u32);

impl Drop for ReapDescendants {
    fn drop(&mut self) {
        for pid in process_tree(self.0).into_iter().skip(1) {
            kill_pid(pid, 9);
        }
    }
}

/// The path of `tool` on PATH, or None after the line `{test}: skipped: {tool} not installed
/// ({install}){skipped}` — a failure under CI=true, where tests/run.sh has installed every tool.
pub fn installed_tool(test: &str, tool: &str, install: &str, skipped: &str) -> Option<String> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if found.is_none() {
        let ci = matches!(std::env::var("CI").as_deref(), Ok("true" | "1"));
        assert!(!ci, "{tool} is not installed (CI=true: {install})");
        println!("{test}: skipped: {tool} not installed ({install}){skipped}");
    }
    found
}
