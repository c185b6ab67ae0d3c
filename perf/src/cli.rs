//! The command line of `ringcast-load` (clap, as the server's): one struct per subcommand, every flag
//! with its help and default, and value parsers whose errors name what a good value looks like (clap
//! adds the flag and the value given). perf/README.md lists the same flags with more context.

use clap::{Args, Parser, Subcommand};

mod run;
#[cfg(test)]
mod tests;
mod values;

pub use run::{FleetArgs, RunArgs};
pub use values::CoreList;
use values::*;

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
