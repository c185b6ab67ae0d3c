//! `/metrics` of a `--processes` group, as docs/runtime.md states it: whichever process a scrape reaches
//! answers for the whole group, each series labelled `process`; counters never go backwards between
//! scrapes (a restarted process's series start again from 0, after its series went away); the totals are
//! what the clients saw; the histograms are well formed, and the publish→send one counts each tick
//! carrying a `ts` once per process that sent it.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

/// One scrape: every sample (`name{labels}` → value) and every family's type.
#[derive(Debug, Default, Clone)]
struct Scrape {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let body = text.split_once("\r\n\r\n").map_or(text, |(_, b)| b);
        let mut s = Scrape::default();
        for line in body.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(
                    s.types.insert(name.into(), kind.into()).is_none(),
                    "family {name} typed twice"
                );
            } else if !line.starts_with('#') && !line.is_empty() {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let value: f64 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("bad sample: {line}"));
                assert!(
                    s.samples.insert(series.into(), value).is_none(),
                    "series twice: {line}"
                );
            }
        }
        s
    }

    /// The family a sample belongs to, and its type.
    fn kind(&self, series: &str) -> &str {
        let name = series.split('{').next().unwrap();
        if let Some(k) = self.types.get(name) {
            return k;
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix)
                && let Some(k) = self.types.get(base)
            {
                return k;
            }
        }
        panic!("sample of no family: {series}")
    }

    /// Sum of `name` over every label set matching all of `labels`.
    fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.samples
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name))
            .filter(|(k, _)| labels.iter().all(|l| k.contains(l)))
            .map(|(_, v)| v)
            .sum()
    }

    fn processes(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .samples
            .keys()
            .filter_map(|k| {
                let rest = k.split_once("process=\"")?.1;
                Some(rest.split('"').next()?.to_string())
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Every histogram series: buckets cumulative in `le` order, `+Inf` equal to `_count`.
    fn check_histograms(&self) {
        for (family, _) in self.types.iter().filter(|(_, k)| *k == "histogram") {
            let mut per_series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            let prefix = format!("{family}_bucket{{");
            for (k, v) in &self.samples {
                let Some(labels) = k.strip_prefix(&prefix) else {
                    continue;
                };
                let (before, after) = labels.split_once("le=\"").expect("le label");
                let (le, rest) = after.split_once('"').unwrap();
                let le: f64 = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                let key = format!("{before}{}", rest.trim_start_matches(','));
                per_series.entry(key).or_default().push((le, *v));
            }
            assert!(!per_series.is_empty(), "{family}: no buckets");
            for (key, mut buckets) in per_series {
                buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
                assert!(buckets.len() > 5, "{family}{{{key}: {buckets:?}");
                assert!(
                    buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                    "{family}{{{key}: buckets not cumulative: {buckets:?}"
                );
                let (le, inf) = *buckets.last().unwrap();
                assert!(le.is_infinite(), "{family}{{{key}: no +Inf bucket");
                let labels = key.trim_end_matches('}').trim_end_matches(',');
                let count = self.samples[&format!("{family}_count{{{labels}}}")];
                assert_eq!(inf, count, "{family}{{{key}: +Inf != _count");
                assert!(
                    self.samples
                        .contains_key(&format!("{family}_sum{{{labels}}}"))
                );
            }
        }
    }
}

/// `GET /metrics`, retried a few times: a scrape that reaches a process as it is killed is reset.
fn scrape(addr: SocketAddr) -> Scrape {
    use std::io::Write;
    for _ in 0..10 {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if write!(s, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").is_err() {
            continue;
        }
        let resp = read_to_close(&mut s);
        if status_of(&resp) == 200 {
            return Scrape::parse(&String::from_utf8_lossy(&resp));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no /metrics answer from {addr} in 10 tries");
}

/// Counters (and histogram buckets, sums, counts) of `now` against `before`: none went back, except the
/// series of `restarted` (a process known to have been replaced in between).
fn check_monotonic(before: &Scrape, now: &Scrape, restarted: Option<&str>) {
    for (series, &v) in &now.samples {
        let kind = now.kind(series);
        if kind != "counter" && kind != "histogram" {
            continue;
        }
        if restarted.is_some_and(|p| series.contains(&format!("process=\"{p}\""))) {
            continue;
        }
        if let Some(&old) = before.samples.get(series) {
            assert!(v >= old, "{series} went back from {old} to {v}");
        }
    }
}

/// Scrapes `addr` every 30 ms until stopped, checking every scrape against the previous one.
struct Scraper {
    stop: Arc<AtomicBool>,
    restarted: Arc<Mutex<Option<String>>>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Scraper {
    fn start(addr: SocketAddr) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let restarted: Arc<Mutex<Option<String>>> = Arc::default();
        let (s, r) = (stop.clone(), restarted.clone());
        let thread = std::thread::spawn(move || {
            let mut last = scrape(addr);
            let mut n = 1;
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(30));
                let now = scrape(addr);
                now.check_histograms();
                check_monotonic(&last, &now, r.lock().unwrap().as_deref());
                last = now;
                n += 1;
            }
            n
        });
        Scraper {
            stop,
            restarted,
            thread: Some(thread),
        }
    }

    /// Stop; how many scrapes were checked (panics with the scraper's failure).
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().unwrap().join() {
            Ok(n) => n,
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}

/// Removes a directory when dropped.
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn process_index(pid: u32) -> String {
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    env.split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(b"RINGCAST_PROCESS_INDEX="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .expect("RINGCAST_PROCESS_INDEX in the child's environment")
}

#[test]
fn a_process_group_answers_one_consistent_metrics_with_histograms() {
    let redis = start_redis();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen = addr.to_string();
    let url = redis.url();
    let child = ringcast_command(
        &[
            "--log",
            "warn",
            "serve",
            "--listen",
            &listen,
            "--processes",
            "2",
            "--workers",
            "1",
            "--redis",
            &url,
            "--prefix",
            "mg:",
            "--ping-interval",
            "1s",
            "--drain-window",
            "1s",
            "--close-timeout",
            "1s",
        ],
        &[],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let mut server = Server::adopt(child, addr);
    let _reap = ReapDescendants(server.pid());
    let supervisor = server.pid();
    // Where the supervisor keeps the snapshots (src/server/group.rs: /dev/shm, else $TMPDIR).
    let base = match std::path::Path::new("/dev/shm").is_dir() {
        true => std::path::PathBuf::from("/dev/shm"),
        false => std::env::temp_dir(),
    };
    let dir = base.join(format!("ringcast-{supervisor}-metrics"));
    // Removed even if the test fails (the supervisor is then SIGKILLed and cannot clean up).
    let _cleanup = RemoveDir(dir.clone());
    poll_until(Duration::from_secs(10), "2 processes serving", || {
        children_of(supervisor).len() == 2
            && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    });
    poll_until(
        Duration::from_secs(10),
        "both processes' feeds up, in one scrape",
        || {
            let s = scrape(addr);
            s.processes() == ["0", "1"] && s.sum("ringcast_feed_snapshots_total", &[]) >= 2.0
        },
    );
    let scraper = Scraper::start(addr);

    // Clients on both processes (SO_REUSEPORT spreads them by address), all subscribed to one symbol.
    const CLIENTS: usize = 16;
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| server.ws()).collect();
    for c in &mut clients {
        send_text(c, "MG");
        assert_eq!(read_reply(c)["type"], "subscribed");
    }
    let mut con = redis_con(&url);
    const WITH_TS: usize = 20;
    const WITHOUT_TS: usize = 5;
    for n in 0..WITH_TS + WITHOUT_TS {
        let tick = if n < WITH_TS {
            format!(r#"{{"symbol":"MG","n":{n},"ts":{}}}"#, now_ms())
        } else {
            format!(r#"{{"symbol":"MG","n":{n}}}"#)
        };
        publish_tick(&mut con, "mg:", &tick);
        for c in clients.iter_mut() {
            assert_eq!(read_text(c), tick);
        }
    }

    // Every scrape (whichever process answers) converges to the clients' totals.
    let deliveries = (CLIENTS * (WITH_TS + WITHOUT_TS)) as f64;
    poll_until(
        Duration::from_secs(5),
        "the totals the clients saw, in a scrape",
        || {
            let s = scrape(addr);
            s.sum("ringcast_connections_open", &[]) == CLIENTS as f64
                && s.sum("ringcast_deliveries_total", &[]) == deliveries
                && s.sum("ringcast_connection_backlog_bytes_count", &[]) >= CLIENTS as f64
        },
    );
    let s = scrape(addr);
    let on = |p: &str| s.sum("ringcast_connections_open", &[&format!("process=\"{p}\"")]);
    assert!(
        on("0") > 0.0 && on("1") > 0.0,
        "clients on both processes: {} and {}",
        on("0"),
        on("1")
    );
    for p in ["0", "1"] {
        let label = format!("process=\"{p}\"");
        assert_eq!(
            s.sum("ringcast_feed_ticks_total", &[&label]),
            (WITH_TS + WITHOUT_TS) as f64,
            "each process's own feed"
        );
        assert_eq!(
            s.sum("ringcast_publish_to_send_seconds_count", &[&label]),
            WITH_TS as f64,
            "one observation per tick with ts per process (one worker each, with subscribers)"
        );
    }
    let sum = s.sum("ringcast_publish_to_send_seconds_sum", &[]);
    assert!(
        (0.0..2.0 * WITH_TS as f64).contains(&sum),
        "publish→send delays on one box are short: {sum} s in all"
    );
    s.check_histograms();

    // A killed process comes back: its series start again from 0; the other process's never go back.
    let victim = children_of(supervisor)[0];
    let index = process_index(victim);
    let survivor_accepted = |s: &Scrape, p: &str| {
        s.sum(
            "ringcast_connections_accepted_total",
            &[&format!("process=\"{p}\"")],
        )
    };
    let other = if index == "0" { "1" } else { "0" };
    let before = survivor_accepted(&scrape(addr), other);
    *scraper.restarted.lock().unwrap() = Some(index.clone());
    std::thread::sleep(Duration::from_millis(2000)); // the supervisor restarts only children past 2 s
    kill_pid(victim, libc::SIGKILL);
    poll_until(
        Duration::from_secs(10),
        "the killed process replaced, in the group's scrape",
        || {
            let now = children_of(supervisor);
            let s = scrape(addr);
            now.len() == 2
                && !now.contains(&victim)
                && s.processes() == ["0", "1"]
                && s.sum(
                    "ringcast_deliveries_total",
                    &[&format!("process=\"{index}\"")],
                ) == 0.0
        },
    );
    assert!(survivor_accepted(&scrape(addr), other) >= before);
    let scrapes = scraper.finish();
    assert!(scrapes > 20, "only {scrapes} scrapes checked");

    // SIGTERM: the group stops and its snapshot directory goes with it.
    assert!(dir.is_dir(), "{}", dir.display());
    drop(clients);
    server.signal("TERM");
    assert!(
        server.wait_exit(Duration::from_secs(10)).is_some(),
        "the group stops on SIGTERM"
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
}
