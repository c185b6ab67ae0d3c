//! `ringcast retire SYMBOL...`: a symbol is gone (the seed's open question: Redis cannot expire one hash
//! field). Per symbol, in one MULTI/EXEC: HDEL it from `{prefix}ticks` and PUBLISH
//! `{"op":"retire","symbol":"X"}` on `{prefix}control`; servers then tell its subscribers
//! `{"type":"retired","symbol":"X"}` and forget it.

use clap::Args;

use super::{CliError, RedisArgs, split_symbols};
use crate::ingest::valid_symbol;

/// `ringcast retire SYMBOL...`
#[derive(Args, Debug, Clone)]
pub struct RetireArgs {
    /// Symbols to retire, comma-separated and/or as several arguments.
    #[arg(required = true)]
    pub symbols: Vec<String>,
    #[command(flatten)]
    pub redis: RedisArgs,
}

/// Run `ringcast retire`; returns the exit code.
pub fn main(args: RetireArgs) -> i32 {
    super::finish(run(&args))
}

fn run(args: &RetireArgs) -> Result<(), CliError> {
    let symbols = split_symbols(&args.symbols);
    let bad: Vec<&String> = symbols.iter().filter(|s| !valid_symbol(s)).collect();
    if !bad.is_empty() || symbols.is_empty() {
        return Err(CliError::Usage(format!(
            "not a symbol: {:?} (1-32 printable ASCII characters, no spaces, commas or quotes); nothing was retired",
            bad
        )));
    }
    let mut target = args.redis.target()?;
    for symbol in &symbols {
        let r = target.retire(symbol)?;
        println!(
            "retired {symbol}: {} {}; {} server{} notified on {}",
            if r.deleted {
                "removed from"
            } else {
                "was not in"
            },
            r.hash,
            r.receivers,
            if r.receivers == 1 { "" } else { "s" },
            r.channel
        );
    }
    Ok(())
}
