use clap::Parser;
use ringcast::config::{Cli, Command};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    ringcast::alloc::configure();
    let cli = Cli::try_parse().unwrap_or_else(|err| {
        let argv: Vec<String> = std::env::args().collect();
        match ringcast::config::env_source_note(&err, &argv) {
            Some(note) => {
                // clap's first line, then which variable the value came from, then the rest.
                let text = err.render().to_string();
                let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
                eprintln!("{first}\n{note}\n{rest}");
                std::process::exit(err.exit_code());
            }
            None => err.exit(),
        }
    });
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
    };
    if let Err(message) = result {
        tracing::error!("{message}");
        eprintln!("ringcast: {message}");
        std::process::exit(1);
    }
}
