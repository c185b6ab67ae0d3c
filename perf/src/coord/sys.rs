//! Process plumbing for the coordinator: what it started (stopped by pid on every way out), /proc
//! sampling of the server, ports, waiting, signals, the plain `/healthz` probe.

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Everything we started, stopped by pid on every way out (and the temporary directories we made,
/// removed once those processes are gone).
#[derive(Default)]
pub(super) struct Guard {
    pids: Mutex<Vec<Started>>,
    dirs: Mutex<Vec<PathBuf>>,
}

/// One process we started: how long `stop_all` waits after SIGTERM before it SIGKILLs the survivors.
struct Started {
    pid: i32,
    what: String,
    grace: Duration,
}

/// How long a process without a drain of its own gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

impl Guard {
    pub(super) fn add(&self, pid: u32, what: &str) {
        self.add_with_grace(pid, what, GRACE);
    }
    /// A process that drains on SIGTERM (the server): `stop_all` waits `grace` for it and its
    /// descendants to exit before it SIGKILLs the survivors.
    pub(super) fn add_with_grace(&self, pid: u32, what: &str, grace: Duration) {
        self.pids.lock().unwrap().push(Started {
            pid: pid as i32,
            what: what.to_string(),
            grace,
        });
    }
    pub(super) fn forget(&self, pid: u32) {
        self.pids.lock().unwrap().retain(|s| s.pid != pid as i32);
    }
    /// Stops everything we started, newest first (clients, then the server, then Redis), each
    /// process tree gone before the next: see [`stop_tree`].
    pub(super) fn stop_all(&self) {
        let mut pids = self.pids.lock().unwrap();
        for s in pids.iter().rev() {
            stop_tree(s.pid, &s.what, s.grace, s.grace > GRACE);
        }
        pids.clear();
        for d in self.dirs.lock().unwrap().drain(..) {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    /// A new private directory under the system temp dir, removed by `stop_all`.
    pub(super) fn temp_dir(&self, what: &str) -> Result<PathBuf, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "ringcast-load-{}-{nanos:x}-{what}",
            std::process::id()
        ));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        self.dirs.lock().unwrap().push(dir.clone());
        Ok(dir)
    }
}
impl Drop for Guard {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Stops the process tree rooted at our child `root` (a `--processes` supervisor and its workers):
/// collects its descendants first, SIGTERMs the root (which forwards the drain to its workers), waits
/// up to `grace` for every one of them to exit, then SIGKILLs every survivor and waits until each is
/// reaped (the root) or gone from /proc (the others, which are not our children). Returns only once
/// none of them is alive. `report`: print how long the tree took to exit.
pub(super) fn stop_tree(root: i32, what: &str, grace: Duration, report: bool) {
    let t = Instant::now();
    let mut tree = vec![Proc::of(root)];
    tree.extend(descendants(root).into_iter().map(Proc::of));
    // SAFETY: kill(2) on our unreaped child (its pid cannot have been reused).
    unsafe { libc::kill(root, libc::SIGTERM) };
    if report {
        eprintln!(
            "stopping {what} (pid {root}, {} processes): SIGTERM, waiting up to {:.0} s",
            tree.len(),
            grace.as_secs_f64()
        );
    }
    let all_gone = |tree: &mut Vec<Proc>| {
        tree.retain(|p| !p.gone(root));
        tree.is_empty()
    };
    while !all_gone(&mut tree) && t.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = tree.len();
    if killed > 0 {
        // Workers the supervisor started since (a restart) count too.
        for p in descendants(root) {
            if !tree.iter().any(|q| q.pid == p) {
                tree.push(Proc::of(p));
            }
        }
        kill_and_wait_from(tree, root, what);
    }
    if report || killed > 0 {
        eprintln!(
            "{what} (pid {root}) exited {:.2} s after SIGTERM{}",
            t.elapsed().as_secs_f64(),
            if killed > 0 {
                format!(
                    " ({killed} processes SIGKILLed after {:.0} s)",
                    grace.as_secs_f64()
                )
            } else {
                String::new()
            }
        );
    }
}

/// The descendants of our child `root` now (a `--processes` supervisor's workers), for
/// [`kill_and_wait`] once it is gone.
pub(super) fn descendants_of(root: i32) -> Vec<Proc> {
    descendants(root).into_iter().map(Proc::of).collect()
}

/// SIGKILLs each of `procs` still alive (none of them our child) and waits until all are gone.
pub(super) fn kill_and_wait(procs: Vec<Proc>, what: &str) {
    kill_and_wait_from(procs, 0, what);
}

/// SIGKILLs each of `procs` still alive and waits until all are gone (`root`, our child, reaped), for
/// at most 60 s (then a warning naming the survivors).
fn kill_and_wait_from(mut procs: Vec<Proc>, root: i32, what: &str) {
    for p in &procs {
        p.kill();
    }
    let t = Instant::now();
    loop {
        procs.retain(|p| !p.gone(root));
        if procs.is_empty() {
            return;
        }
        if t.elapsed() > Duration::from_secs(60) {
            eprintln!(
                "warning: {what}: {} processes still alive 60 s after SIGKILL: {:?}",
                procs.len(),
                procs.iter().map(|p| p.pid).collect::<Vec<_>>()
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A process of a tree we stop, known by pid and start time (so a reused pid is not mistaken for it).
pub(super) struct Proc {
    pid: i32,
    start: Option<u64>,
}
impl Proc {
    fn of(pid: i32) -> Proc {
        Proc {
            pid,
            start: stat_field(pid, 19),
        }
    }
    /// Exited: reaped (`root`, our child) or no longer in /proc as the same live process (the others;
    /// a zombie whose parent has not reaped it yet has exited too).
    fn gone(&self, root: i32) -> bool {
        if self.pid == root {
            let mut st = 0;
            // SAFETY: waitpid(2) on our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut st, libc::WNOHANG) };
            return r != 0;
        }
        let state = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| s[s.rfind(')')? + 2..].chars().next());
        match state {
            None | Some('Z') | Some('X') => true,
            Some(_) => stat_field(self.pid, 19) != self.start,
        }
    }
    fn kill(&self) {
        if stat_field(self.pid, 19) == self.start {
            // SAFETY: kill(2) on a process of the tree we started, checked by its start time.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

/// Field `i` (0-based after the command name: 0 is the state, 19 the start time) of /proc/PID/stat.
fn stat_field(pid: i32, i: usize) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 2..]
        .split_whitespace()
        .nth(i)?
        .parse()
        .ok()
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
    status_kb(pids, "VmRSS:")
}

/// The servers' RSS once it held still (kB): sampled every 100 ms until 5 samples in a row agree,
/// for at most 5 s (then the last sample).
pub fn settled_rss_kb(pids: &[i32]) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut last = server_rss_kb(pids);
    let mut same = 1;
    while same < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = server_rss_kb(pids);
        same = if now == last { same + 1 } else { 1 };
        last = now;
    }
    last
}

/// The servers' anonymous resident memory (heap, stacks, rings; `RssAnon`): VmRSS without the
/// file-backed pages (the binary's code and read-only data, shared libraries), which the kernel maps in
/// 64 KiB fault-around windows whenever a code path first runs, so they move VmRSS by a fixed 100+ kB
/// from one run to the next whatever the number of connections.
pub fn server_rss_anon_kb(pids: &[i32]) -> u64 {
    status_kb(pids, "RssAnon:")
}

/// The sum over `pids` of one kB field of `/proc/PID/status`.
fn status_kb(pids: &[i32], field: &str) -> u64 {
    let mut total = 0;
    for &pid in pids {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            for l in s.lines() {
                if let Some(v) = l.strip_prefix(field) {
                    total += v
                        .split_whitespace()
                        .next()
                        .and_then(|x| x.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
    }
    total
}

pub(super) fn slab_kb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Slab:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

pub(super) fn descendants(root: i32) -> Vec<i32> {
    let mut out = vec![];
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    && let Some(i) = s.rfind(')')
                    && s[i + 2..]
                        .split_whitespace()
                        .nth(1)
                        .and_then(|x| x.parse::<i32>().ok())
                        == Some(p)
                {
                    out.push(pid);
                    frontier.push(pid);
                }
            }
        }
    }
    out
}

pub(super) fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

pub(super) fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Result<(), ()> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(())
}

/// `GET /healthz` answered 200. `proxy_header`: first a PROXY v1 `UNKNOWN` header (a trusted proxy's
/// health check, for a server run with `--proxy-protocol`).
pub(super) fn healthz(target: SocketAddrV4, proxy_header: bool) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&target.into(), Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let proxy = if proxy_header {
        "PROXY UNKNOWN\r\n"
    } else {
        ""
    };
    if s.write_all(
        format!("{proxy}GET /healthz HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .is_err()
    {
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

pub(super) fn install_signal_handler(f: impl Fn() + Send + 'static) {
    *HANDLER.lock().unwrap() = Some(Box::new(f));
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Listening TCP sockets on `port` (`/proc/net/tcp` and `tcp6`, state 0A): how many listeners the
/// servers sharing the port hold.
pub(super) fn listeners_on(port: u16) -> usize {
    let local = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .map(|path| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 3 && f[1].ends_with(&local) && f[3] == "0A"
                })
                .count()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree that ignores SIGTERM (a supervisor whose workers outlive its grace): every process of
    /// it is gone when `stop_tree` returns, the ones that are not our children included.
    #[test]
    fn stop_tree_kills_every_descendant_that_outlives_the_grace() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "trap '' TERM; sleep 30 & sleep 30 & wait"])
            .spawn()
            .unwrap();
        let root = child.id() as i32;
        wait_until(Duration::from_secs(5), || descendants(root).len() >= 2).unwrap();
        let tree = descendants_of(root);
        let t = Instant::now();
        stop_tree(root, "test tree", Duration::from_millis(300), true);
        let _ = child.wait(); // already reaped by stop_tree
        assert!(t.elapsed() < Duration::from_secs(10));
        for p in &tree {
            assert!(p.gone(root), "pid {} still alive", p.pid);
        }
    }
}
