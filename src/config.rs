//! Configuration: every flag also reads an environment variable (`RINGCAST_*`) and, for `serve`, a key of
//! the `--config` file ([`file`]); a bad value is refused at start-up with a message naming the flag, the
//! variable (or the file's line) and the value. `docs/config.md`'s table and `deploy/ringcast.toml` are
//! generated from these definitions ([`reference`]).

pub mod file;
pub mod reference;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::admission::trusted::{BadCidr, TrustedProxies};
use crate::protocol::Limits;
use crate::protocol::handshake::HeadLimits;
use crate::secret::Secret;

#[derive(Parser, Debug)]
#[command(
    name = "ringcast",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("RINGCAST_GIT_REV"), ")"),
    about = "WebSocket edge server on io_uring for live market ticks"
)]
pub struct Cli {
    /// Log level or filter (error, warn, info, debug, trace, off, or per module such as `info,ringcast=debug`).
    #[arg(long, global = true, env = "RINGCAST_LOG", default_value = "info", value_parser = parse_log_filter)]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the WebSocket server.
    Serve(Box<ServeConfig>),
    /// Publish ticks (the seed's `ticker.set([...])`): store each in `{prefix}ticks` and publish them.
    Publish(crate::cli::publish::PublishArgs),
    /// Print the stored tick of symbols (the seed's `ticker.get("EFERT,LUCK")`).
    Get(crate::cli::get::GetArgs),
    /// Retire symbols: delete their ticks and tell the servers.
    Retire(crate::cli::retire::RetireArgs),
    /// Publish simulated ticks (`--demo`): a stand-in exchange for demos and load.
    Feed(crate::cli::feed::FeedArgs),
    /// Run everything locally: Redis (started if needed), the server and the demo feed.
    Demo(crate::cli::demo::DemoArgs),
    /// Show the configuration `serve` would run with (`--print`), or check a config file (`--check FILE`).
    Config(crate::cli::config::ConfigArgs),
}

/// `ringcast serve`. `Debug` prints no secret: `--auth-secret` and `--metrics-token` are [`Secret`]s and
/// the Redis URL's password is masked.
#[derive(Args, Debug, Clone)]
pub struct ServeConfig {
    /// TOML file of settings (deploy/ringcast.toml is an example): each key is a flag's long name
    /// (`max-backlog = 262144` for `--max-backlog`); a flag or an environment variable wins over the file.
    #[arg(long, env = "RINGCAST_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Address to listen on: a port (`3001`, on every IPv4 address), or an address and port
    /// (`127.0.0.1:3001`, `[::]:3001`).
    #[arg(long, env = "RINGCAST_LISTEN", default_value = "0.0.0.0:3001", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Worker threads per process, one per core, each pinned to its core (0 = one per available core).
    #[arg(long, env = "RINGCAST_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Server processes sharing the port with SO_REUSEPORT (each with its own workers and its own Redis
    /// subscriber): the way past a per-process descriptor or memory limit.
    #[arg(long, env = "RINGCAST_PROCESSES", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub processes: u32,
    /// Share the port with servers already listening on it (SO_REUSEPORT: the kernel then spreads new
    /// connections over all of them). A restart without a gap: start the new server with `--join`, then
    /// SIGTERM the old one, which stops listening at once. Without it, `serve` refuses a port another
    /// process holds.
    #[arg(long, env = "RINGCAST_JOIN")]
    pub join: bool,
    /// Conformance profile: echo every data message back (for the Autobahn|Testsuite).
    #[arg(long, env = "RINGCAST_ECHO")]
    pub echo: bool,
    /// Most WebSocket connections one worker holds; past it upgrades get 503 + Retry-After while
    /// `/healthz` and `/metrics` are still answered (64 extra descriptor slots per worker are kept for
    /// them). Capped by RLIMIT_NOFILE.
    #[arg(long, env = "RINGCAST_MAX_CONNS_PER_WORKER", default_value_t = 1 << 20)]
    pub max_conns_per_worker: u32,
    /// Largest HTTP request head, in bytes (431 beyond).
    #[arg(long, env = "RINGCAST_MAX_HEAD_BYTES", default_value_t = HeadLimits::DEFAULT.max_head_bytes as u32, value_parser = clap::value_parser!(u32).range(256..=1 << 20))]
    pub max_head_bytes: u32,
    /// Most HTTP request headers (431 beyond).
    #[arg(long, env = "RINGCAST_MAX_HEADERS", default_value_t = HeadLimits::DEFAULT.max_headers as u32, value_parser = clap::value_parser!(u32).range(8..=1024))]
    pub max_headers: u32,
    /// Time allowed to complete the HTTP upgrade (slowloris protection), e.g. `10s`, `500ms`.
    #[arg(long, env = "RINGCAST_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// Largest frame payload accepted from a client, in bytes (close 1009 beyond, decided from the header).
    /// Default 64 KiB (clients only send commands), 64 MiB in the `--echo` conformance profile.
    #[arg(long, env = "RINGCAST_MAX_FRAME")]
    pub max_frame: Option<u64>,
    /// Largest message accepted from a client, in bytes (close 1009 beyond). Default 64 KiB, 64 MiB with
    /// `--echo`.
    #[arg(long, env = "RINGCAST_MAX_MESSAGE")]
    pub max_message: Option<usize>,
    /// Most fragments in one client message (close 1008 beyond). Default 1024, 131072 with `--echo`.
    #[arg(long, env = "RINGCAST_MAX_FRAGMENTS")]
    pub max_fragments: Option<u32>,
    /// How long to wait for the client's Close after ours, and for the client to close TCP after the
    /// close exchange, e.g. `5s`.
    #[arg(long, env = "RINGCAST_CLOSE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub close_timeout: Duration,
    /// Where ticks come from (`--redis`, `--prefix`).
    #[command(flatten)]
    pub feed: crate::cli::RedisArgs,
    /// Largest tick or per-user message accepted from the feed, in bytes (larger ones are counted and
    /// dropped).
    #[arg(long, env = "RINGCAST_MAX_TICK_BYTES", default_value_t = crate::ingest::tick::DEFAULT_MAX_TICK_BYTES)]
    pub max_tick_bytes: usize,
    /// Most symbols each worker keeps the latest tick of. A tick of a new symbol when full evicts the least
    /// recently ticked symbol nobody subscribes to (a later subscriber still gets its latest value, read
    /// from Redis); if every symbol has subscribers, the tick is refused and counted.
    #[arg(long, env = "RINGCAST_MAX_SYMBOLS", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_symbols: u32,
    /// Most symbols one connection may subscribe to.
    #[arg(long, env = "RINGCAST_MAX_SYMBOLS_PER_CONN", default_value_t = 256)]
    pub max_symbols_per_conn: usize,
    /// Bytes a connection may have waiting to be sent before the slow-consumer policy applies.
    #[arg(long, env = "RINGCAST_MAX_BACKLOG", default_value_t = 256 * 1024)]
    pub max_backlog: usize,
    /// What happens to a client over its backlog: `conflate` (only the latest tick of each symbol waits),
    /// `drop` (new ticks are dropped) or `close` (closed at once with 1013).
    #[arg(
        long,
        env = "RINGCAST_SLOW_POLICY",
        value_enum,
        default_value = "conflate"
    )]
    pub slow_policy: SlowPolicy,
    /// How long a client may stay over its backlog before it is closed with 1013, e.g. `10s`.
    #[arg(long, env = "RINGCAST_SLOW_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub slow_grace: Duration,
    /// Ping a connection that has sent nothing for this long, e.g. `25s`.
    #[arg(long, env = "RINGCAST_PING_INTERVAL", default_value = "25s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Close a connection that has sent nothing (not even a pong) for this long, e.g. `60s`.
    #[arg(long, env = "RINGCAST_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// On SIGTERM, the process stops listening at once (new connections go to a server that joined the
    /// port, or are refused) and closes its clients with 1012 spread over this window (so they reconnect
    /// without a storm); it exits when they are gone, or at the window plus the close timeout.
    #[arg(long, env = "RINGCAST_DRAIN_WINDOW", default_value = "10s", value_parser = parse_duration)]
    pub drain_window: Duration,
    /// Per-socket coalescing: frames queued to a socket wait up to this long (e.g. `1ms`, `5ms`) so one
    /// send carries several; trades that much latency for fewer system calls (see docs/coalescing.md).
    /// `0ms` (default) sends at every loop iteration.
    #[arg(long, env = "RINGCAST_COALESCE_DELAY", default_value = "0ms", value_parser = parse_duration)]
    pub coalesce_delay: Duration,
    /// Kernel send buffer per connection, in bytes (SO_SNDBUF; 0 = the kernel's autotuning). Smaller
    /// values save kernel memory on idle sockets and make a slow client's backlog visible sooner.
    #[arg(long, env = "RINGCAST_SEND_BUFFER", default_value_t = 0)]
    pub send_buffer: u32,
    /// Certificate chain (PEM) for wss://; with `--tls-key`. Reloaded on SIGHUP and when the file changes.
    #[arg(long, env = "RINGCAST_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM: ECDSA, RSA or Ed25519) for wss://; with `--tls-cert`.
    #[arg(long, env = "RINGCAST_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Session-ticket keys shared by every server of the name, so TLS sessions resume across restarts and
    /// hosts: 80 random bytes per key (`openssl rand 80`), newest first; the first encrypts, the others only
    /// decrypt. Reloaded like the certificate. Default: random keys per process.
    #[arg(long, env = "RINGCAST_TLS_TICKET_KEYS", requires = "tls_cert")]
    pub tls_ticket_keys: Option<std::path::PathBuf>,
    /// Key-exchange groups accepted for wss:// (comma-separated: X25519MLKEM768, SECP256R1MLKEM768, x25519,
    /// secp256r1, secp384r1, MLKEM768); the client's preference picks among them.
    #[arg(long, env = "RINGCAST_TLS_GROUPS", default_value = crate::tls::DEFAULT_GROUPS, value_parser = crate::tls::KxGroups::parse)]
    pub tls_groups: crate::tls::KxGroups,
    /// HS256 secret(s) for client tokens (comma-separated, newest first, each ≥ 32 bytes); enables auth:
    /// upgrades without a valid token are refused (`--auth-refusal`). Tokens come from `?token=`, a
    /// cookie or the subprotocol.
    #[arg(long, env = "RINGCAST_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<Secret>,
    /// Required `aud` claim of client tokens.
    #[arg(long, env = "RINGCAST_AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,
    /// How an upgrade with a missing, invalid or expired token is refused: `close` = 101 then close 4001
    /// (expired) or 4003 (missing or invalid), which a browser can read; `http` = 401 Unauthorized.
    #[arg(
        long,
        env = "RINGCAST_AUTH_REFUSAL",
        value_enum,
        default_value = "close"
    )]
    pub auth_refusal: crate::auth::AuthRefusal,
    /// Clock-skew allowance on token times; an expired connection is closed (4001) this long after `exp`.
    #[arg(long, env = "RINGCAST_AUTH_LEEWAY", default_value = "30s", value_parser = parse_duration)]
    pub auth_leeway: Duration,
    /// How long before its token expires a client is warned (`{"type":"auth","status":"expiring"}`).
    #[arg(long, env = "RINGCAST_AUTH_WARNING", default_value = "60s", value_parser = parse_duration)]
    pub auth_warning: Duration,
    /// Allowed `Origin`s (comma-separated: `https://ticker.example.com`, `https://*.example.com`, `*`);
    /// others get 403. Default: any.
    #[arg(long, env = "RINGCAST_ORIGINS")]
    pub origins: Option<String>,
    /// Refuse upgrades without an `Origin` header (non-browser clients) when `--origins` is set.
    #[arg(long, env = "RINGCAST_REQUIRE_ORIGIN")]
    pub require_origin: bool,
    /// Most open connections per client address (IPv6 grouped by /64), per process (over all its
    /// workers); 0 = no limit (503 + Retry-After beyond).
    #[arg(long, env = "RINGCAST_MAX_CONNS_PER_IP", default_value_t = 0)]
    pub max_conns_per_ip: u32,
    /// Expect a PROXY protocol header (v1 or v2, as HAProxy's `send-proxy-v2` sends it) at the start of
    /// every connection, before the HTTP request or the TLS ClientHello, and use the client address it
    /// names for per-address limits and logs. Only peers in `--trusted-proxies` may connect: a
    /// connection from elsewhere, or without a valid header, is logged and closed.
    #[arg(long, env = "RINGCAST_PROXY_PROTOCOL")]
    pub proxy_protocol: bool,
    /// Load balancers whose word on the client's address is believed (comma-separated address blocks:
    /// `10.0.0.0/8,192.0.2.7,::1`): their PROXY protocol header (`--proxy-protocol`) and their
    /// `X-Forwarded-For` (the rightmost address in it that is not itself a trusted proxy). Default: none.
    #[arg(long, env = "RINGCAST_TRUSTED_PROXIES", value_name = "CIDR,...", value_parser = parse_trusted_proxies)]
    pub trusted_proxies: Option<TrustedProxies>,
    /// Most WebSocket upgrades per second per process (over all its workers; bursts of one second's
    /// worth); 0 = no limit (503 + Retry-After beyond).
    #[arg(long, env = "RINGCAST_HANDSHAKE_RATE", default_value_t = 0)]
    pub handshake_rate: u32,
    /// Most messages per second a client may send (bursts of one second's worth); 0 = no limit (1008).
    #[arg(long, env = "RINGCAST_MAX_MSGS_PER_S", default_value_t = 20)]
    pub max_msgs_per_s: u32,
    /// Do not serve the live ticker page (`GET /`) and `/ringcast.js` (404); the WebSocket upgrade on `/`
    /// works either way.
    #[arg(long, env = "RINGCAST_NO_PAGE")]
    pub no_page: bool,
    /// Token required to read `/metrics` (`Authorization: Bearer …` or `?token=`); default: open.
    #[arg(long, env = "RINGCAST_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret>,
    /// Receive buffers per worker (a power of two; shared by all its connections).
    #[arg(long, env = "RINGCAST_RECV_BUFFERS", default_value_t = 512)]
    pub recv_buffers: u16,
    /// Size of each receive buffer, in bytes.
    #[arg(long, env = "RINGCAST_RECV_BUFFER_SIZE", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(512..=1 << 20))]
    pub recv_buffer_size: u32,
}

impl ServeConfig {
    /// Checks that span several flags or depend on the machine. Returns a message naming the bad value.
    pub fn validate(&mut self) -> Result<(), String> {
        if !self.recv_buffers.is_power_of_two() || self.recv_buffers > 32768 {
            return Err(format!(
                "--recv-buffers (RINGCAST_RECV_BUFFERS) must be a power of two up to 32768, got {}",
                self.recv_buffers
            ));
        }
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        if self.workers == 0 {
            self.workers = cores;
        }
        if self.workers > 1024 {
            return Err(format!(
                "--workers (RINGCAST_WORKERS) must be at most 1024, got {}",
                self.workers
            ));
        }
        let defaults = if self.echo {
            Limits::ECHO
        } else {
            Limits::DEFAULT
        };
        let max_frame = *self.max_frame.get_or_insert(defaults.max_frame);
        let max_message = *self.max_message.get_or_insert(defaults.max_message);
        self.max_fragments.get_or_insert(defaults.max_fragments);
        if max_frame == 0 || max_message == 0 {
            return Err("--max-frame and --max-message must be greater than 0".into());
        }
        if self.ping_interval.is_zero() || self.idle_timeout <= self.ping_interval {
            return Err(format!(
                "--idle-timeout ({:?}) must be longer than --ping-interval ({:?}), which must be > 0",
                self.idle_timeout, self.ping_interval
            ));
        }
        if let Some(secret) = &self.auth_secret {
            crate::auth::AuthConfig::parse_secrets(secret.expose())
                .map_err(|e| format!("--auth-secret (RINGCAST_AUTH_SECRET): {e}"))?;
        }
        if let Some(origins) = &self.origins {
            crate::auth::OriginPolicy::parse(origins)
                .map_err(|e| format!("--origins (RINGCAST_ORIGINS): {e}"))?;
        }
        if self.proxy_protocol && self.trusted_proxies.is_none() {
            return Err(
                "--proxy-protocol (RINGCAST_PROXY_PROTOCOL) needs --trusted-proxies \
                (RINGCAST_TRUSTED_PROXIES): the load balancers' addresses, e.g. 10.0.0.0/8"
                    .into(),
            );
        }
        if self.max_conns_per_worker == 0 {
            return Err(
                "--max-conns-per-worker (RINGCAST_MAX_CONNS_PER_WORKER) must be greater than 0"
                    .into(),
            );
        }
        Ok(())
    }

    /// The upgrade checks (origin, token, metrics access); call after `validate`.
    pub fn gate(&self) -> crate::http::Gate {
        let origins = match &self.origins {
            Some(list) => crate::auth::OriginPolicy::parse(list)
                .expect("validated")
                .with_require_origin(self.require_origin),
            None => crate::auth::OriginPolicy::allow_all(),
        };
        let auth = self
            .auth_secret
            .as_ref()
            .map(|secrets| crate::auth::AuthConfig {
                secrets: crate::auth::AuthConfig::parse_secrets(secrets.expose())
                    .expect("validated"),
                audience: self.auth_audience.clone(),
                leeway_s: self.auth_leeway.as_secs(),
                expiry_warning_s: self.auth_warning.as_secs(),
                refusal: self.auth_refusal,
                ..crate::auth::AuthConfig::default()
            });
        crate::http::Gate {
            origins,
            auth,
            metrics_token: self.metrics_token.as_ref().map(|t| t.expose().to_string()),
            page: !self.no_page,
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_frame: self.max_frame.unwrap_or(Limits::DEFAULT.max_frame),
            max_message: self.max_message.unwrap_or(Limits::DEFAULT.max_message),
            max_fragments: self.max_fragments.unwrap_or(Limits::DEFAULT.max_fragments),
            close_timeout_ms: self.close_timeout.as_millis() as u64,
        }
    }

    pub fn head_limits(&self) -> HeadLimits {
        HeadLimits {
            max_head_bytes: self.max_head_bytes as usize,
            max_headers: self.max_headers as usize,
        }
    }
}

/// The slow-consumer policy (`--slow-policy`); `server` maps it to the core's own
/// `runtime::core::SlowPolicy`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowPolicy {
    Conflate,
    Drop,
    Close,
}

/// `--trusted-proxies`: address blocks separated by commas.
pub fn parse_trusted_proxies(text: &str) -> Result<TrustedProxies, String> {
    let list: TrustedProxies = text.parse().map_err(|e: BadCidr| e.to_string())?;
    if list.is_empty() {
        return Err("no address block given".into());
    }
    Ok(list)
}

/// `250ms`, `10s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().map_err(|_| {
        format!("`{text}` is not a duration: a whole number and a unit, e.g. 250ms, 10s, 5m, 1h")
    })?;
    let seconds = |factor: u64| {
        n.checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("`{text}` is too long"))
    };
    match unit {
        "us" | "µs" => Ok(Duration::from_micros(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => Err(format!(
            "`{text}`: unknown unit `{unit}` (use ms, s, m or h, e.g. 250ms, 10s, 5m, 1h)"
        )),
    }
}

/// `--listen`: a bare port (`3001` or `:3001`, every IPv4 address) or an address and port.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let port = text.strip_prefix(':').unwrap_or(text);
    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        return port
            .parse::<u16>()
            .map(|p| SocketAddr::from(([0, 0, 0, 0], p)))
            .map_err(|_| format!("`{text}` is not a port (0-65535)"));
    }
    text.parse().map_err(|_| {
        format!(
            "`{text}` is not an address to listen on: give a port (3001), an IPv4 address and \
             port (127.0.0.1:3001, 0.0.0.0:3001) or an IPv6 one ([::]:3001); host names are not resolved"
        )
    })
}

/// The log levels a filter may name.
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// `--log`: a level, or comma-separated directives each a level or `target=level`
/// (`info,ringcast=debug`). A bare word that is not a level (`verbose`) is refused rather than read as
/// a module name, which would silently log nothing of Ringcast's.
pub fn parse_log_filter(text: &str) -> Result<String, String> {
    let levels = LOG_LEVELS.join(", ");
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) if !target.is_empty() => level,
            _ => directive,
        };
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "`{directive}` is not a log level ({levels}) or a `module=level` filter \
                 (e.g. `info,ringcast=debug`)"
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(text)
        .map_err(|e| format!("`{text}` is not a log filter: {e}"))?;
    Ok(text.to_string())
}

/// For clap's error about a bad value (not its other errors): the text of its `kind` context (the value,
/// or the flag as `--workers <WORKERS>`).
fn bad_value_context(err: &clap::Error, kind: clap::error::ContextKind) -> Option<&str> {
    use clap::error::{ContextValue, ErrorKind};
    if !matches!(
        err.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    match err.get(kind)? {
        ContextValue::String(text) => Some(text),
        _ => None,
    }
}

/// A negative number given to a flag that takes a count or size: say so, instead of clap's "invalid
/// digit found in string".
pub fn negative_number_note(err: &clap::Error) -> Option<String> {
    let value = bad_value_context(err, clap::error::ContextKind::InvalidValue)?;
    let rest = value.trim().strip_prefix('-')?;
    rest.parse::<f64>().ok()?;
    Some(format!(
        "  (`{value}` is negative: this flag takes a number of 0 or more)"
    ))
}

/// clap's message for a bad value names the flag and the value; when the value came from the flag's
/// environment variable (the flag is not in `argv`), this is the line that names the variable too.
pub fn env_source_note(err: &clap::Error, argv: &[String]) -> Option<String> {
    use clap::CommandFactory;
    let arg = bad_value_context(err, clap::error::ContextKind::InvalidArg)?;
    // "--workers <WORKERS>" → "--workers"
    let flag = arg.split_whitespace().next()?;
    let long = flag.strip_prefix("--")?;
    let given = argv
        .iter()
        .any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    if given {
        return None;
    }
    let cli = Cli::command();
    let var = std::iter::once(&cli)
        .chain(cli.get_subcommands())
        .flat_map(|c| c.get_arguments())
        .find(|a| a.get_long() == Some(long))?
        .get_env()?
        .to_string_lossy()
        .into_owned();
    Some(format!(
        "  (the value of {flag} comes from the environment variable {var})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("10d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("99999999999999999h").is_err());
        assert!(
            parse_duration("abc")
                .unwrap_err()
                .contains("not a duration")
        );
    }

    /// The defaults of `serve` are the library's defaults (`Limits`, `HeadLimits`, ingest): written once.
    #[test]
    fn serve_defaults_are_the_library_defaults() {
        let Command::Serve(mut cfg) = Cli::try_parse_from(["ringcast", "serve"]).unwrap().command
        else {
            panic!("not serve")
        };
        assert_eq!(cfg.limits(), Limits::DEFAULT);
        assert_eq!(cfg.head_limits(), HeadLimits::default());
        assert_eq!(
            cfg.max_tick_bytes,
            crate::ingest::IngestConfig::default().max_tick_bytes
        );
        let ingest = cfg.feed.ingest_config();
        let lib = crate::ingest::IngestConfig::default();
        assert_eq!(
            (ingest.redis_url, ingest.prefix),
            (lib.redis_url, lib.prefix)
        );
        cfg.validate().unwrap();
        assert_eq!(cfg.limits(), Limits::DEFAULT);
        cfg.echo = true;
        (cfg.max_frame, cfg.max_message, cfg.max_fragments) = (None, None, None);
        cfg.validate().unwrap();
        assert_eq!(cfg.limits(), Limits::ECHO);
    }

    #[test]
    fn debug_prints_no_secret() {
        let cli = Cli::try_parse_from([
            "ringcast",
            "serve",
            "--redis",
            "redis://user:hunter2-redis@host:6379/0",
            "--metrics-token",
            "hunter2-metrics",
            "--auth-secret",
            "hunter2-auth-0123456789abcdef0123456789",
        ])
        .unwrap();
        let Command::Serve(mut cfg) = cli.command else {
            panic!("not serve")
        };
        cfg.validate().unwrap();
        let text = format!("{cfg:?} {:?} {:?}", cfg.gate(), cfg.feed.ingest_config());
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("redis://user:***@host:6379/0"), "{text}");
    }

    #[test]
    fn bad_values_name_the_flag() {
        let err = Cli::try_parse_from(["ringcast", "serve", "--listen", "nowhere"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--listen") && err.contains("nowhere"), "{err}");
        let mut cfg = match Cli::try_parse_from(["ringcast", "serve", "--recv-buffers", "100"])
            .unwrap()
            .command
        {
            Command::Serve(c) => c,
            other => panic!("parsed as {other:?}"),
        };
        assert!(
            cfg.validate()
                .unwrap_err()
                .contains("RINGCAST_RECV_BUFFERS")
        );
    }

    #[test]
    fn a_bad_value_from_the_environment_names_the_variable() {
        let err = Cli::try_parse_from(["ringcast", "serve", "--workers", "x"]).unwrap_err();
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            env_source_note(&err, &argv(&["ringcast", "serve", "--workers", "x"])),
            None,
            "the flag was given: clap's message is enough"
        );
        let note = env_source_note(&err, &argv(&["ringcast", "serve"])).unwrap();
        assert!(
            note.contains("--workers") && note.contains("RINGCAST_WORKERS"),
            "{note}"
        );
        let other = Cli::try_parse_from(["ringcast", "serve", "--nope"]).unwrap_err();
        assert_eq!(env_source_note(&other, &argv(&["ringcast", "serve"])), None);
    }
}
