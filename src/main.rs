use clap::Parser;
use ringcast::config::{Cli, Command};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|e| {
        eprintln!(
            "ringcast: --log (RINGCAST_LOG): `{}` is not a log level or filter: {e}",
            cli.log
        );
        std::process::exit(2);
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Serve(cfg) => ringcast::server::serve(cfg),
    };
    if let Err(message) = result {
        tracing::error!("{message}");
        eprintln!("ringcast: {message}");
        std::process::exit(1);
    }
}
