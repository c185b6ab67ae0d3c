//! The command line of `ringcast-load` (clap, as the server's): one struct per subcommand, every flag
//! with its help and default, and value parsers whose errors name what a good value looks like (clap
//! adds the flag and the value given). perf/README.md lists the same flags with more context.

use clap::{Args, Parser, Subcommand};

use crate::common::{parse_cores, parse_secs};

#[derive(Parser, Debug)]
#[command(
    name = "ringcast-load",
    version,
    about = "Load generator and benchmark harness for the Ringcast WebSocket edge server",
    after_help = "`ringcast-load help SUBCOMMAND` or `ringcast-load SUBCOMMAND --help` for its flags; \
                  perf/README.md explains the scenarios and what is measured."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// The coordinator: starts Redis and the server if asked, spawns client processes, publishes,
    /// measures the scenario's phases, prints a summary and writes --out (JSON) and --svg (plot).
    Run(Box<RunArgs>),
    /// One client process (spawned by `run` and `selftest`): up to ~19,000 WebSocket connections on
    /// one epoll loop; JSON reports on stdout, commands on stdin.
    Client(Box<ClientArgs>),
    /// Redraws the latency percentile plot from result files (several files: one figure).
    Plot(PlotArgs),
    /// Client capacity with no real server: frames/s one client process takes in from an in-process
    /// blaster.
    Selftest(SelftestArgs),
}

/// The TLS flags shared by `run` (passed on to its clients) and `client`.
#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// wss:// instead of ws://.
    #[arg(long)]
    pub tls: bool,
    /// PEM certificate(s) the clients trust (`run` with --server ringcast: the certificate it
    /// generated, or --tls-cert).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub ca: Option<String>,
    /// SNI and the name the server's certificate must carry.
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    pub server_name: String,
    /// Each connection keeps its own session-ticket store, so reconnects (churn) resume.
    #[arg(long, requires = "tls")]
    pub tls_resume: bool,
    /// Key-exchange groups the clients offer, in order (X25519MLKEM768, x25519, secp256r1, ...;
    /// default: rustls' own).
    #[arg(long, value_name = "LIST", requires = "tls")]
    pub tls_groups: Option<String>,
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct RunArgs {
    /// What to run (perf/README.md, "Scenarios").
    #[arg(long, default_value = "latency", value_parser = ["idle", "fanout", "latency", "churn", "slow", "storm"])]
    pub scenario: String,

    // --- load
    /// Connections, at most 1,000,000 (default per scenario: idle, fanout, latency 10000; churn 5000;
    /// slow 2000).
    #[arg(long, value_name = "N", value_parser = conns)]
    pub conns: Option<u64>,
    /// Symbols published (SYM00000, SYM00001, ...).
    #[arg(long, value_name = "S", default_value_t = 100, value_parser = count::<u32>)]
    pub symbols: u32,
    /// Symbols each connection subscribes to.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = count::<u32>)]
    pub per_conn: u32,
    /// How each connection chooses its symbols.
    #[arg(long, default_value = "uniform", value_parser = ["uniform", "zipf"])]
    pub sub_dist: String,
    /// Zipf exponent for --sub-dist zipf and --pub-dist zipf.
    #[arg(long, value_name = "S", default_value_t = 1.0, value_parser = non_negative)]
    pub zipf_s: f64,
    /// How the publisher chooses the symbol of each tick.
    #[arg(long, default_value = "roundrobin", value_parser = ["roundrobin", "zipf"])]
    pub pub_dist: String,
    /// Subscribe as `SYM00001,SYM00002` (plain) or `{"op":"subscribe","symbols":[...]}` (json).
    #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
    pub form: String,
    /// Bytes per tick (padded).
    #[arg(long, value_name = "BYTES", default_value_t = 100, value_parser = count::<usize>)]
    pub tick_bytes: usize,
    /// Ticks per second published (default per scenario: latency 1000; churn, slow 500; idle,
    /// fanout 0).
    #[arg(long, value_name = "PER_S", value_parser = non_negative)]
    pub rate: Option<f64>,
    /// fanout: the offered rates, ticks/s, one step each.
    #[arg(long, value_name = "LIST", default_value = "100,1000,5000,10000,20000,50000", value_parser = rate_list)]
    pub steps: RateList,
    /// fanout: duration of each step.
    #[arg(long, value_name = "DURATION", default_value = "5", value_parser = duration)]
    pub step_duration: f64,
    /// fanout: run every step, even past saturation.
    #[arg(long)]
    pub all_steps: bool,
    /// fanout: a step whose p99 is above this saturates the server.
    #[arg(long, value_name = "MS", default_value_t = 100.0, value_parser = non_negative)]
    pub saturation_p99_ms: f64,
    /// Measured duration (default per scenario: idle 10s, fanout 5s, latency 20s, churn 15s, slow 10s).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub duration: Option<f64>,
    /// Publishing before the measured phase.
    #[arg(long, value_name = "DURATION", default_value = "1", value_parser = duration)]
    pub warmup: f64,
    /// churn: share of the connections that close and reconnect (default: churn 0.2, others 0).
    #[arg(long, value_name = "FRACTION", value_parser = fraction)]
    pub churn_frac: Option<f64>,
    /// churn: reconnects per second.
    #[arg(long, value_name = "PER_S", default_value_t = 500.0, value_parser = non_negative)]
    pub churn_rate: f64,
    /// slow: share of each client's connections that stop reading.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.1, value_parser = fraction)]
    pub slow_frac: f64,
    /// storm: how the server goes: term (SIGTERM: it drains, closing clients with 1012 over its
    /// --drain-window, set RINGCAST_DRAIN_WINDOW for the started server) or kill (SIGKILL).
    #[arg(long, default_value = "term", value_parser = ["term", "kill"])]
    pub storm_signal: String,
    /// storm: how clients reconnect: ringcast (client/ringcast.js: 1012 within [0, 1 s), else
    /// [w/4, w), w = 1 s·1.5^n, cap 30 s), seed (uniform 3-8 s), full-jitter ([0, 1 s·2^n), cap 30 s).
    #[arg(long, default_value = "ringcast", value_parser = ["ringcast", "seed", "full-jitter"])]
    pub reconnect_policy: String,
    /// storm, with --storm-signal term: handover (at the mark start the replacement with `serve --join`
    /// on the same port, wait until it listens, then SIGTERM the old one, as a rolling restart does) or
    /// after-exit (SIGTERM, wait for the old one to exit, then start the replacement; the figures before
    /// the drain handover were measured so). SIGKILL is always followed by after-exit.
    #[arg(long, default_value = "handover", value_parser = ["handover", "after-exit"])]
    pub storm_restart: String,
    /// storm: from the signal, how long every connection has to come back before the report.
    #[arg(long, value_name = "DURATION", default_value = "60", value_parser = duration)]
    pub storm_timeout: f64,
    /// storm: wait between the old server's exit and the new one's start.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = duration)]
    pub storm_down: f64,
    /// Seed of the subscriptions and the publisher's choices.
    #[arg(long, default_value_t = 1, value_parser = count::<u64>)]
    pub seed: u64,
    /// One PUBLISH per tick instead of one per millisecond with every due tick.
    #[arg(long)]
    pub no_batch: bool,
    /// latency: stall the server's core this long mid-run and report when latency is back
    /// (perf/README.md, "Recovery from a stall").
    #[arg(long, value_name = "MS", value_parser = positive_ms)]
    pub stall: Option<f64>,
    /// latency --stall: when the stall begins, counted from the start of the measured phase
    /// [default: a third of --duration, at most 3 s].
    #[arg(long, value_name = "DURATION", value_parser = duration, requires = "stall")]
    pub stall_at: Option<f64>,
    /// latency --stall: SIGSTOP/SIGCONT the server processes (stop), or a SCHED_FIFO busy loop on
    /// each --server-core (hog: a host stall, no signal).
    #[arg(long, default_value = "stop", value_parser = ["stop", "hog"], requires = "stall")]
    pub stall_kind: String,

    // --- clients
    /// Cores the client processes are pinned to (`1`, `0,2-3`).
    #[arg(long, value_name = "LIST", default_value = "1", value_parser = core_list)]
    pub client_cores: CoreList,
    /// Connections per client process, 1..=19000.
    #[arg(long, value_name = "N", default_value_t = crate::coord::MAX_PER_PROCESS, value_parser = per_client)]
    pub conns_per_client: u64,
    /// Connects in flight per client process (lower it with dozens of client processes against one
    /// server core).
    #[arg(long, value_name = "N", default_value_t = 2000, value_parser = count::<u64>)]
    pub connect_concurrency: u64,
    /// A connect (TCP, TLS, upgrade) slower than this counts as an error.
    #[arg(long, value_name = "DURATION", default_value = "10", value_parser = duration)]
    pub connect_timeout: f64,
    #[command(flatten)]
    pub tls: TlsArgs,

    // --- server and redis
    /// The server to start: ringcast, the node baseline, or none (one started elsewhere: --target,
    /// --server-pid). Default: ringcast, or none with --server-pid.
    #[arg(long, value_parser = ["ringcast", "node", "none"])]
    pub server: Option<String>,
    /// Core list the started server is pinned to.
    #[arg(long, value_name = "LIST", default_value = "0", value_parser = core_list_text)]
    pub server_core: String,
    /// --workers of the started ringcast.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = count::<u32>)]
    pub server_workers: u32,
    /// --processes of the started ringcast.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = count::<u32>)]
    pub server_processes: u32,
    /// Pid(s) of a server started elsewhere, to sample its CPU and memory (`1234` or `1234,1235`).
    #[arg(long, value_name = "PID[,PID...]", value_parser = pid_list)]
    pub server_pid: Option<PidList>,
    /// Address of the server (default: 127.0.0.1 and the started server's port, or 127.0.0.1:3001).
    #[arg(long, value_name = "HOST:PORT")]
    pub target: Option<String>,
    /// Port of the started server (default: a free one).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// The ringcast binary to start [default: ../target/release/ringcast from perf/].
    #[arg(long, value_name = "PATH")]
    pub ringcast_bin: Option<String>,
    /// Directory of the node baseline [default: perf/baselines/node-ws].
    #[arg(long, value_name = "DIR")]
    pub node_dir: Option<String>,
    /// With --server ringcast --tls: serve this certificate (PEM) instead of a generated one.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "tls_key"])]
    pub tls_cert: Option<String>,
    /// The private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "tls_cert"])]
    pub tls_key: Option<String>,
    /// Start a redis-server of this run's own on a free port (else use --redis).
    #[arg(long)]
    pub start_redis: bool,
    /// The Redis to publish to (without --start-redis).
    #[arg(long, value_name = "URL", default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
    /// Key and channel prefix.
    #[arg(long, default_value = "perf:")]
    pub prefix: String,
    #[command(flatten)]
    pub fleet: FleetArgs,

    // --- run
    /// Hard limit of the whole run (default: twice the planned time + 60 s).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub timeout: Option<f64>,
    /// Result file [default: ringcast-load-SCENARIO.json].
    #[arg(long, value_name = "FILE")]
    pub out: Option<String>,
    /// Latency percentile plot [default: ringcast-load-SCENARIO.svg].
    #[arg(long, value_name = "FILE")]
    pub svg: Option<String>,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
}

/// A load balancer and a Redis Cluster in the run (issue 12; perf/README.md, "Through HAProxy; Redis
/// Cluster").
#[derive(Args, Debug, Clone, Default)]
pub struct FleetArgs {
    /// Clients connect through HAProxy (deploy/haproxy.cfg rewritten for the run: its front on a free
    /// port, the started server as the backend, send-proxy-v2); the server runs with --proxy-protocol
    /// --trusted-proxies 127.0.0.1/32.
    #[arg(long)]
    pub via_haproxy: bool,
    /// Core list HAProxy is pinned to.
    #[arg(long, value_name = "LIST", default_value = "1", value_parser = core_list_text, requires = "via_haproxy")]
    pub haproxy_core: String,
    /// HAProxy processes sharing the front port (SO_REUSEPORT); each holds two descriptors per client,
    /// so at most 9,000 clients each under the 20,000-descriptor limit [default: enough for --conns].
    #[arg(long, value_name = "N", value_parser = positive::<u32>, requires = "via_haproxy")]
    pub haproxy_processes: Option<u32>,
    /// The HAProxy binary [default: haproxy on PATH].
    #[arg(
        long,
        value_name = "PATH",
        default_value = "haproxy",
        requires = "via_haproxy"
    )]
    pub haproxy_bin: String,
    /// Start a Redis Cluster of N masters (no replicas) on the client cores instead of one Redis; the
    /// server reads it with --redis-cluster, the publisher writes each symbol's shard with HSET + SPUBLISH
    /// (0: one plain Redis, PUBLISH).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = masters)]
    pub redis_cluster_masters: u32,
    /// With --redis-cluster-masters: the feed's shards (the server's --feed-shards).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = positive::<u32>)]
    pub feed_shards: u32,
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct ClientArgs {
    /// The server.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:3001", value_parser = ipv4_port)]
    pub target: std::net::SocketAddrV4,
    /// Host header [default: --target].
    #[arg(long)]
    pub host: Option<String>,
    /// Request path of the upgrade.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Connections of this process.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = count::<u64>)]
    pub conns: u64,
    /// Index of this process's first connection among all (for its subscriptions).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = count::<u64>)]
    pub offset: u64,
    /// First source address; the next one after every --per-addr connections.
    #[arg(long, value_name = "IP", default_value = "127.0.0.2")]
    pub src_base: std::net::Ipv4Addr,
    /// Connections per source address.
    #[arg(long, value_name = "N", default_value_t = 28_000, value_parser = count::<u64>)]
    pub per_addr: u64,
    /// Symbols published.
    #[arg(long, value_name = "S", default_value_t = 100, value_parser = count::<u32>)]
    pub symbols: u32,
    /// Symbols each connection subscribes to.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = count::<u32>)]
    pub per_conn: u32,
    /// How each connection chooses its symbols.
    #[arg(long, default_value = "uniform", value_parser = ["uniform", "zipf"])]
    pub sub_dist: String,
    /// Zipf exponent.
    #[arg(long, value_name = "S", default_value_t = 1.0, value_parser = non_negative)]
    pub zipf_s: f64,
    /// Seed of the subscriptions.
    #[arg(long, default_value_t = 1, value_parser = count::<u64>)]
    pub seed: u64,
    /// Subscribe form.
    #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
    pub form: String,
    /// Connects in flight.
    #[arg(long, value_name = "N", default_value_t = 2000, value_parser = count::<usize>)]
    pub connect_concurrency: usize,
    /// Share of the connections that churn when told to.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0, value_parser = fraction)]
    pub churn_frac: f64,
    /// The process exits after this, whatever happens.
    #[arg(long, value_name = "DURATION", default_value = "600", value_parser = duration)]
    pub deadline: f64,
    /// A connect slower than this counts as an error.
    #[arg(long, value_name = "DURATION", default_value = "10", value_parser = duration)]
    pub connect_timeout: f64,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Every connection that ends connects again after this policy's delay (the storm scenario):
    /// ringcast (client/ringcast.js), seed (uniform 3-8 s), full-jitter.
    #[arg(long, value_name = "POLICY", value_parser = ["ringcast", "seed", "full-jitter"])]
    pub reconnect_policy: Option<String>,
}

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// Result files of `run` (its --out); several: one figure, one curve per phase per file.
    #[arg(value_name = "RESULT.json", num_args = 1.., required = true)]
    pub results: Vec<String>,
    /// The SVG to write.
    #[arg(value_name = "OUT.svg", required = true)]
    pub out: String,
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct SelftestArgs {
    /// Connections of the client process.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = count::<u64>)]
    pub conns: u64,
    /// How long the blaster writes.
    #[arg(long, value_name = "DURATION", default_value = "3", value_parser = duration)]
    pub duration: f64,
    /// Frames per blaster write.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = positive::<usize>)]
    pub batch: usize,
    /// Cores of the client process.
    #[arg(long, value_name = "LIST", default_value = "1", value_parser = core_list)]
    pub client_cores: CoreList,
    /// Cores of the blaster threads.
    #[arg(long, value_name = "LIST", default_value = "0", value_parser = core_list)]
    pub blaster_cores: CoreList,
}

/// A core list (`1`, `0,2-3`).
#[derive(Debug, Clone)]
pub struct CoreList(pub Vec<usize>);
/// Ticks/s per fanout step.
#[derive(Debug, Clone)]
pub struct RateList(pub Vec<f64>);
/// Server pids.
#[derive(Debug, Clone)]
pub struct PidList(pub Vec<i32>);

/// Milliseconds > 0 (`100`, `2.5`).
fn positive_ms(v: &str) -> Result<f64, String> {
    match v.trim().replace('_', "").parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err("not a number of milliseconds > 0: give one such as 100".into()),
    }
}

/// A whole number ≥ 0; `_` separators allowed (`10_000`).
fn count<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.trim().replace('_', "").parse().map_err(|_| {
        if v.trim_start().starts_with('-') {
            "must not be negative: give a whole number ≥ 0, such as 10000 or 10_000".to_string()
        } else {
            "not a whole number: give one such as 10000 or 10_000".to_string()
        }
    })
}

fn positive<T: std::str::FromStr + Default + PartialEq>(v: &str) -> Result<T, String> {
    let n: T = count(v)?;
    if n == T::default() {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

fn conns(v: &str) -> Result<u64, String> {
    let n: u64 = count(v)?;
    if n > 1_000_000 {
        return Err("at most 1,000,000 (the harness's limit)".into());
    }
    Ok(n)
}

fn masters(v: &str) -> Result<u32, String> {
    match count::<u32>(v)? {
        n if n <= 16 => Ok(n),
        _ => Err("must be 0..=16 (0: one plain Redis; 1 or 3 as measured)".into()),
    }
}

fn per_client(v: &str) -> Result<u64, String> {
    let max = crate::coord::MAX_PER_PROCESS;
    match count::<u64>(v)? {
        n if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be 1..={max} (the descriptor limit of one process)"
        )),
    }
}

/// A number ≥ 0 (`0.5`, `1000`, `10_000`).
fn non_negative(v: &str) -> Result<f64, String> {
    match v.trim().replace('_', "").parse::<f64>() {
        Ok(x) if x >= 0.0 && x.is_finite() => Ok(x),
        Ok(_) => Err("must be a number ≥ 0, such as 0.5 or 1000".into()),
        Err(_) => Err("not a number: give one such as 0.5 or 1000".into()),
    }
}

fn fraction(v: &str) -> Result<f64, String> {
    match non_negative(v) {
        Ok(x) if x <= 1.0 => Ok(x),
        _ => Err("must be a fraction from 0 to 1, such as 0.2".into()),
    }
}

/// Seconds: `10`, `10s`, `500ms`, `2m`, `1h`.
fn duration(v: &str) -> Result<f64, String> {
    match parse_secs(v) {
        Some(s) if s >= 0.0 && s.is_finite() => Ok(s),
        _ => Err("not a duration: give one such as 10 (seconds), 10s, 500ms, 2m or 1h".into()),
    }
}

fn ipv4_port(v: &str) -> Result<std::net::SocketAddrV4, String> {
    v.parse()
        .map_err(|_| "not an IPv4 address and port: give one such as 127.0.0.1:3001".into())
}

fn core_list(v: &str) -> Result<CoreList, String> {
    parse_cores(v)
        .map(CoreList)
        .map_err(|_| "not a core list: give one such as 1, 0,2 or 0-3".into())
}

/// A core list kept as written (it is also shown in the summary).
fn core_list_text(v: &str) -> Result<String, String> {
    core_list(v).map(|_| v.to_string())
}

fn rate_list(v: &str) -> Result<RateList, String> {
    let steps = v
        .split(',')
        .filter(|s| !s.is_empty())
        .map(non_negative)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "not a list of rates: give ticks/s per step, such as 100,1000,10_000")?;
    if steps.is_empty() {
        return Err("needs at least one rate, such as 100,1000,10000".into());
    }
    Ok(RateList(steps))
}

fn pid_list(v: &str) -> Result<PidList, String> {
    v.split(',')
        .map(|p| p.trim().parse::<i32>().ok().filter(|&p| p > 0))
        .collect::<Option<Vec<_>>>()
        .map(PidList)
        .ok_or_else(|| "not a pid list: give one such as 1234 or 1234,1235".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ringcast-load").chain(line.split_whitespace()))
    }

    #[test]
    fn numbers_take_separators_and_durations_take_units() {
        let Cmd::Run(r) = parse("run --conns 10_000 --duration 2m --warmup 500ms --timeout 1h")
            .unwrap()
            .cmd
        else {
            panic!("not run")
        };
        assert_eq!(r.conns, Some(10_000));
        assert_eq!(r.duration, Some(120.0));
        assert_eq!(r.warmup, 0.5);
        assert_eq!(r.timeout, Some(3600.0));
    }

    #[test]
    fn fleet_flags_parse() {
        let Cmd::Run(r) = parse(
            "run --scenario fanout --via-haproxy --haproxy-core 1 --haproxy-processes 2 \
             --haproxy-bin /usr/sbin/haproxy --redis-cluster-masters 3 --feed-shards 8",
        )
        .unwrap()
        .cmd
        else {
            panic!("not run")
        };
        let f = &r.fleet;
        assert!(f.via_haproxy);
        assert_eq!(
            (
                f.haproxy_core.as_str(),
                f.haproxy_processes,
                f.haproxy_bin.as_str()
            ),
            ("1", Some(2), "/usr/sbin/haproxy")
        );
        assert_eq!((f.redis_cluster_masters, f.feed_shards), (3, 8));
        let Cmd::Run(r) = parse("run").unwrap().cmd else {
            panic!("not run")
        };
        assert!(!r.fleet.via_haproxy);
        assert_eq!(
            (r.fleet.redis_cluster_masters, r.fleet.feed_shards),
            (0, 16)
        );
        assert_eq!(r.fleet.haproxy_processes, None);
        // The HAProxy options mean nothing without --via-haproxy.
        for line in ["run --haproxy-processes 2", "run --haproxy-core 1"] {
            let e = parse(line).unwrap_err().to_string();
            assert!(e.contains("--via-haproxy"), "`{line}` → {e}");
        }
    }

    #[test]
    fn bad_values_name_the_flag_the_value_and_a_good_value() {
        for (line, flag, want) in [
            ("run --conns abc", "--conns", "such as 10000"),
            ("run --rate -5", "--rate", "≥ 0"),
            ("run --duration 5x", "--duration", "10s, 500ms"),
            ("run --churn-frac 2", "--churn-frac", "from 0 to 1"),
            ("run --client-cores a-b", "--client-cores", "0-3"),
            ("run --server-core x", "--server-core", "0-3"),
            ("run --steps 100,x", "--steps", "100,1000"),
            (
                "run --conns-per-client 0",
                "--conns-per-client",
                "1..=19000",
            ),
            ("run --server-pid 12x", "--server-pid", "1234,1235"),
            ("client --target localhost", "--target", "127.0.0.1:3001"),
            ("selftest --batch 0", "--batch", "at least 1"),
            (
                "run --redis-cluster-masters 17",
                "--redis-cluster-masters",
                "0..=16",
            ),
            ("run --feed-shards 0", "--feed-shards", "at least 1"),
            (
                "run --via-haproxy --haproxy-processes 0",
                "--haproxy-processes",
                "at least 1",
            ),
        ] {
            let e = parse(line).unwrap_err().to_string();
            let value = line.rsplit(' ').next().unwrap();
            assert!(
                e.contains(flag) && e.contains(value) && e.contains(want),
                "`{line}` → {e}"
            );
        }
    }

    /// The commands the docs quote (perf/README.md, perf/RESULTS.md, perf/smoke.sh, docs/): every flag
    /// they use is one of the subcommand's, and the commands written out in full parse.
    #[test]
    fn the_commands_the_docs_quote_still_work() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let mut files = vec![
            format!("{root}/perf/README.md"),
            format!("{root}/perf/RESULTS.md"),
            format!("{root}/perf/smoke.sh"),
        ];
        for e in std::fs::read_dir(format!("{root}/docs")).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "md") {
                files.push(path.display().to_string());
            }
        }
        let cmd = Cli::command();
        let (mut checked, mut parsed) = (0, 0);
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap().replace("\\\n", " ");
            for line in text.lines() {
                // `C="--flags ..."` in RESULTS.md: flags of `run` used as `$L run $C ...`.
                let (sub, tail) = if let Some(c) = line.strip_prefix("C=\"") {
                    ("run", c.trim_end_matches('"'))
                } else if let Some((_, t)) = ["ringcast-load ", "$L "]
                    .iter()
                    .find_map(|p| line.split_once(p))
                    .filter(|(_, t)| {
                        t.starts_with("run ")
                            || t.starts_with("plot ")
                            || t.starts_with("selftest ")
                    })
                {
                    t.split_once(' ').unwrap()
                } else {
                    continue;
                };
                // The command ends at the end of a code span, a comment or a table cell.
                let tail = tail.split(['`', '#', ')']).next().unwrap();
                let sc = cmd.find_subcommand(sub).unwrap();
                for word in tail.split_whitespace() {
                    let Some(name) = word.strip_prefix("--") else {
                        continue;
                    };
                    let name = name
                        .split('=')
                        .next()
                        .unwrap()
                        .trim_end_matches([',', '.', ']', '"', ':']);
                    assert!(
                        name == "help" || sc.get_arguments().any(|a| a.get_long() == Some(name)),
                        "{file}: `ringcast-load {sub}` has no flag --{name}: {line}"
                    );
                    checked += 1;
                }
                // Code lines (not prose wrapped mid-command) written out in full.
                let first = line.split_whitespace().next().unwrap_or("");
                let code = first == "$L" || first.trim_end_matches('"').ends_with("ringcast-load");
                let whole =
                    !tail.contains(['$', '|', '[', '<', '"', '\u{2026}']) && !tail.contains("...");
                if code && whole && sub == "run" {
                    let argv = ["ringcast-load", sub]
                        .into_iter()
                        .chain(tail.split_whitespace());
                    if let Err(e) = Cli::try_parse_from(argv) {
                        panic!("{file}: {line}\n{e}");
                    }
                    parsed += 1;
                }
            }
        }
        assert!(
            checked > 100 && parsed > 3,
            "{checked} flags checked, {parsed} commands parsed"
        );
    }
}
