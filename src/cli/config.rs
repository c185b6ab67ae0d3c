//! `ringcast config --print [--config FILE] [-- SERVE FLAGS…]`: the configuration `ringcast serve` would run
//! with here (flags > environment > file > defaults), secrets masked, each value saying where it came
//! from. `ringcast config --check FILE`: every unknown key and bad value of a config file, with its line.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgGroup, Args};

use super::CliError;
use crate::config::file::{self, ConfigFile, FileError, StartError};

/// `ringcast config`
#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("what").required(true).args(["print", "check"])))]
pub struct ConfigArgs {
    /// Print the effective configuration of `ringcast serve` (as a config file; secrets masked).
    #[arg(long)]
    pub print: bool,
    /// Check a config file: unknown keys and bad values, each with its line; exit status 2 if any.
    #[arg(long, value_name = "FILE", conflicts_with = "print")]
    pub check: Option<PathBuf>,
    /// With `--print`: the config file `serve` would read.
    #[arg(long, env = "RINGCAST_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// With `--print`: `serve` flags to take into account, after `--`.
    #[arg(last = true, value_name = "SERVE FLAGS")]
    pub serve_args: Vec<OsString>,
}

/// Run `ringcast config`; returns the exit code.
pub fn main(args: ConfigArgs) -> i32 {
    match &args.check {
        Some(path) => super::finish(check(path)),
        None => print(&args),
    }
}

fn serve_argv(config: Option<&PathBuf>, rest: &[OsString]) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec!["ringcast".into(), "serve".into()];
    if let Some(path) = config {
        argv.push("--config".into());
        argv.push(path.into());
    }
    argv.extend(rest.iter().cloned());
    argv
}

fn print(args: &ConfigArgs) -> i32 {
    let argv = serve_argv(args.config.as_ref(), &args.serve_args);
    let resolved = match file::resolve(&argv) {
        Ok(r) => r,
        Err(e) => e.exit(&argv),
    };
    print!("{}", file::effective(&resolved));
    let crate::config::Command::Serve(mut cfg) = resolved.cli.command else {
        unreachable!("serve")
    };
    super::finish(cfg.validate().map_err(CliError::Usage))
}

/// Check `path` on its own, then with this environment as `serve` would read it.
fn check(path: &PathBuf) -> Result<(), CliError> {
    let loaded = ConfigFile::load(path).map_err(|e| CliError::Usage(e.to_string()))?;
    let argv = serve_argv(Some(path), &[]);
    let whole = |message: String| {
        CliError::Usage(
            FileError {
                path: path.clone(),
                problems: vec![file::Problem {
                    line: None,
                    message,
                }],
            }
            .to_string(),
        )
    };
    let resolved = match file::resolve(&argv) {
        Ok(r) => r,
        Err(StartError::File(e)) => return Err(CliError::Usage(e.to_string())),
        Err(StartError::Clap(e)) => return Err(whole(file::clap_reason(&e))),
    };
    let crate::config::Command::Serve(mut cfg) = resolved.cli.command else {
        unreachable!("serve")
    };
    cfg.validate().map_err(whole)?;
    println!(
        "{}: {} setting{}, no problems",
        path.display(),
        loaded.settings.len(),
        if loaded.settings.len() == 1 { "" } else { "s" }
    );
    Ok(())
}
