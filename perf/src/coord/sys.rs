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
    pids: Mutex<Vec<(i32, String)>>,
    dirs: Mutex<Vec<PathBuf>>,
}
impl Guard {
    pub(super) fn add(&self, pid: u32, what: &str) {
        self.pids
            .lock()
            .unwrap()
            .push((pid as i32, what.to_string()));
    }
    pub(super) fn forget(&self, pid: u32) {
        self.pids.lock().unwrap().retain(|(p, _)| *p != pid as i32);
    }
    pub(super) fn stop_all(&self) {
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
