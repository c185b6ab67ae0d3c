//! Pieces shared by the coordinator and the client processes: durations, RNG, symbol names, subscriptions,
//! clocks, histograms.

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

/// Seconds from `10`, `10s`, `500ms`, `2m`, `1h`.
pub fn parse_secs(v: &str) -> Option<f64> {
    let v = v.trim();
    let (num, mul) = if let Some(n) = v.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = v.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (v, 1.0)
    };
    num.parse::<f64>().ok().map(|x| x * mul)
}

/// splitmix64: small, fast, good enough for choosing symbols and mask keys.
#[derive(Clone)]
pub struct Rng(pub u64);
impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut r = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
        r.next();
        r
    }
    #[inline]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub fn symbol_name(id: u32) -> String {
    format!("SYM{id:05}")
}

/// Parses `SYM00042` → 42.
#[inline]
pub fn symbol_id(name: &[u8]) -> Option<u32> {
    let digits = name.strip_prefix(b"SYM")?;
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    let mut v = 0u32;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

/// How symbols are chosen: uniformly or with a Zipf (s = 1) skew toward low ids.
pub enum Dist {
    Uniform(u32),
    Zipf(Vec<f64>), // cumulative distribution
}

impl Dist {
    pub fn new(kind: &str, symbols: u32, exponent: f64) -> Result<Dist, String> {
        match kind {
            "uniform" => Ok(Dist::Uniform(symbols)),
            "zipf" => {
                let mut cdf = Vec::with_capacity(symbols as usize);
                let mut acc = 0.0;
                for i in 0..symbols {
                    acc += 1.0 / ((i + 1) as f64).powf(exponent);
                    cdf.push(acc);
                }
                for c in cdf.iter_mut() {
                    *c /= acc;
                }
                Ok(Dist::Zipf(cdf))
            }
            other => Err(format!(
                "distribution must be uniform or zipf, got `{other}`"
            )),
        }
    }
    pub fn symbols(&self) -> u32 {
        match self {
            Dist::Uniform(s) => *s,
            Dist::Zipf(c) => c.len() as u32,
        }
    }
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> u32 {
        match self {
            Dist::Uniform(s) => rng.below(*s as u64) as u32,
            Dist::Zipf(cdf) => {
                let u = rng.unit();
                cdf.partition_point(|&c| c < u).min(cdf.len() - 1) as u32
            }
        }
    }
}

/// The K distinct symbols connection `global_idx` subscribes to (sorted). Deterministic, so the
/// coordinator can compute how many subscribers each symbol has without asking the clients.
pub fn subscriptions(global_idx: u64, k: u32, dist: &Dist, seed: u64) -> Vec<u32> {
    let s = dist.symbols();
    let k = k.min(s);
    if k == s {
        return (0..s).collect();
    }
    let mut rng = Rng::new(seed.wrapping_mul(0x100_0000_01B3) ^ global_idx);
    let mut out: Vec<u32> = Vec::with_capacity(k as usize);
    let mut tries = 0;
    while out.len() < k as usize {
        let c = if tries < 64 * k {
            dist.sample(&mut rng)
        } else {
            rng.below(s as u64) as u32
        };
        tries += 1;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out.sort_unstable();
    out
}

pub fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time (user + system) of this process, in ns.
pub fn self_cpu_ns() -> u64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Latency histogram: µs, 1 µs – 60 s, 3 significant figures.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

pub fn hist_to_b64(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut buf)
        .expect("serialize histogram");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

pub fn hist_from_b64(s: &str) -> Option<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(bytes))
        .ok()?;
    Some(h)
}

/// Pins the calling thread (or a child before exec) to a core list like "1" or "0,2-3".
pub fn parse_cores(list: &str) -> Result<Vec<usize>, String> {
    let mut v = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: usize = a.parse().map_err(|_| format!("bad core list `{list}`"))?;
            let b: usize = b.parse().map_err(|_| format!("bad core list `{list}`"))?;
            v.extend(a..=b);
        } else {
            v.push(
                part.parse()
                    .map_err(|_| format!("bad core list `{list}`"))?,
            );
        }
    }
    if v.is_empty() {
        return Err(format!("empty core list `{list}`"));
    }
    Ok(v)
}

/// Make `cmd`'s process start pinned to `cores` (set between fork and exec, so every thread it creates and
/// every process it forks — e.g. the ringcast `--processes` supervisor's children — inherits the mask;
/// `pin_to(pid)` after `spawn()` races with threads and children created before it runs), with its soft
/// RLIMIT_NOFILE raised to the hard limit (the server sizes each worker's direct-descriptor table from
/// its soft limit; inheriting a low shell soft limit silently caps connections).
pub fn pinned_with_nofile<'a>(
    cmd: &'a mut std::process::Command,
    cores: &[usize],
) -> &'a mut std::process::Command {
    use std::os::unix::process::CommandExt;
    let cores = cores.to_vec();
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system calls
    // on stack data (sched_setaffinity, getrlimit, setrlimit).
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &c in &cores {
                libc::CPU_SET(c, &mut set);
            }
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut r: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
                r.rlim_cur = r.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            }
            Ok(())
        })
    }
}

/// Soft RLIMIT_NOFILE of a running process (from /proc/PID/limits), if readable.
pub fn nofile_soft_of(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let l = s.lines().find(|l| l.starts_with("Max open files"))?;
    l.split_whitespace().nth(3)?.parse().ok()
}

pub fn pin_to(pid: i32, cores: &[usize]) -> std::io::Result<()> {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cores {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
