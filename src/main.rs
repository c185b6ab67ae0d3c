use ringcast::config::Command;
use ringcast::config::file;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    ringcast::alloc::configure();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Flags, environment variables and (for `serve`) the `--config` file; a bad value exits here, with a
    // message naming the flag, the variable or the file's line, and the value.
    let cli = match file::resolve(&argv) {
        Ok(resolved) => resolved.cli,
        Err(e) => e.exit(&argv),
    };
    let filter =
        tracing_subscriber::EnvFilter::try_new(&cli.log).expect("checked by parse_log_filter");
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Serve(cfg) => ringcast::server::serve(*cfg),
        Command::Publish(args) => std::process::exit(ringcast::cli::publish::main(args)),
        Command::Get(args) => std::process::exit(ringcast::cli::get::main(args)),
        Command::Retire(args) => std::process::exit(ringcast::cli::retire::main(args)),
        Command::Feed(args) => std::process::exit(ringcast::cli::feed::main(args)),
        Command::Demo(args) => std::process::exit(ringcast::cli::demo::main(args)),
        Command::Config(args) => std::process::exit(ringcast::cli::config::main(args)),
    };
    if let Err(message) = result {
        // Once, on stderr (where the log goes too): not also as a log line.
        eprintln!("ringcast: {message}");
        std::process::exit(1);
    }
}
