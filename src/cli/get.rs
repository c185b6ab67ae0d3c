//! `ringcast get EFERT,LUCK`: the seed's `ticker.get`. Prints the stored tick of each symbol, one JSON
//! per line, exactly as stored; `null` (and a note on stderr) for a symbol with no tick.

use std::io::Write;

use clap::Args;

use super::{CliError, RedisArgs, split_symbols};

/// `ringcast get SYMBOLS... | --all`
#[derive(Args, Debug, Clone)]
pub struct GetArgs {
    /// Symbols, comma-separated and/or as several arguments (`EFERT,LUCK HBL`).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub symbols: Vec<String>,
    /// Print every stored tick (sorted by symbol).
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub redis: RedisArgs,
}

/// Run `ringcast get`; exit code 0 if every symbol was found, 1 otherwise.
pub fn main(args: GetArgs) -> i32 {
    match run(&args) {
        Ok(missing) if missing.is_empty() => 0,
        Ok(missing) => {
            eprintln!(
                "ringcast: no tick for {} in {}",
                missing.join(", "),
                args.redis.keys().ticks
            );
            1
        }
        Err(e) => super::finish(Err(e)),
    }
}

/// Print the ticks; returns the symbols that had none.
fn run(args: &GetArgs) -> Result<Vec<String>, CliError> {
    let mut target = args.redis.target()?;
    let key = target.channel();
    let mut out = std::io::stdout().lock();
    let write_error = |e: std::io::Error| CliError::Other(format!("cannot write output: {e}"));
    if args.all {
        let mut entries = target.all()?;
        entries.sort();
        for (_, value) in &entries {
            out.write_all(value).map_err(write_error)?;
            out.write_all(b"\n").map_err(write_error)?;
        }
        if entries.is_empty() {
            eprintln!("ringcast: {key} is empty");
        }
        return Ok(Vec::new());
    }
    let symbols = split_symbols(&args.symbols);
    if symbols.is_empty() {
        return Err(CliError::Usage("no symbols given".into()));
    }
    let values = target.latest(&symbols)?;
    let mut missing = Vec::new();
    for (symbol, value) in symbols.iter().zip(values) {
        match value {
            Some(v) => out.write_all(&v).map_err(write_error)?,
            None => {
                out.write_all(b"null").map_err(write_error)?;
                missing.push(symbol.clone());
            }
        }
        out.write_all(b"\n").map_err(write_error)?;
    }
    out.flush().map_err(write_error)?;
    Ok(missing)
}
