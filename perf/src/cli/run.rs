//! `ringcast-load run`: the coordinator's flags (scenario, load, server, publisher, storm, stall, fleet).

use clap::Args;

use super::TlsArgs;
use super::values::*;

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
