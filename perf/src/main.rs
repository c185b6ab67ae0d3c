//! ringcast-load: load generator and benchmark harness for Ringcast (see perf/README.md).

mod cli;
mod client;
mod cluster;
mod common;
mod coord;
mod haproxy_cfg;
mod publisher;
mod selftest;
mod svg;
mod tick;
mod tls;
mod ws;

use clap::Parser;
use cli::{Cli, Cmd};

fn main() {
    // clap prints usage errors (naming the flag, the value and what it takes) and exits 2.
    let cli = Cli::parse();
    let r = match &cli.cmd {
        Cmd::Run(a) => coord::main(a),
        Cmd::Client(a) => client::main(a),
        Cmd::Plot(a) => plot(&a.results, &a.out),
        Cmd::Selftest(a) => selftest::main(a),
    };
    if let Err(e) = r {
        eprintln!("ringcast-load: {e}");
        std::process::exit(1);
    }
}

/// Re-draws the plot from a result file (or several: `plot a.json b.json ... out.svg`, one curve per phase
/// per file, e.g. ringcast vs the node baseline).
fn plot(results: &[String], out: &str) -> Result<(), String> {
    let mut series = Vec::new();
    let many = results.len() > 1;
    for f in results {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?)
                .map_err(|e| format!("{f}: {e}"))?;
        for ph in v["phases"].as_array().cloned().unwrap_or_default() {
            let Some(h) = ph["latency_hist"].as_str().and_then(common::hist_from_b64) else {
                continue;
            };
            let name = ph["name"].as_str().unwrap_or("").to_string();
            let label = if many {
                format!(
                    "{} {}",
                    v["server"]
                        .as_str()
                        .unwrap_or(f)
                        .split(' ')
                        .next()
                        .unwrap_or(""),
                    name
                )
            } else {
                name
            };
            series.push((label, h));
        }
    }
    std::fs::write(out, svg::percentile_plot("ringcast-load latency", &series))
        .map_err(|e| format!("{out}: {e}"))
}
