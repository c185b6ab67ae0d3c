//! ringcast-load: load generator and benchmark harness for Ringcast (see perf/README.md).

mod client;
mod common;
mod coord;
mod publisher;
mod selftest;
mod svg;
mod tick;
mod tls;
mod ws;

const USAGE: &str = "usage:
  ringcast-load run --scenario idle|fanout|latency|churn|slow [--server ringcast|node|none] [--start-redis] ...
  ringcast-load client ...   (spawned by `run`)
  ringcast-load plot RESULT.json [MORE.json ...] OUT.svg
  ringcast-load selftest [--conns 200 --batch 64 --duration 3]   (client capacity, no server)
See perf/README.md for every flag.";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let flags = match common::Flags::parse(&args[1..]) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ringcast-load: {e}");
            std::process::exit(2);
        }
    };
    let r = match cmd.as_str() {
        "run" => coord::main(&flags),
        "client" => client::main(&flags),
        "plot" => plot(&flags),
        "selftest" => selftest::main(&flags),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    };
    if let Err(e) = r {
        eprintln!("ringcast-load: {e}");
        std::process::exit(1);
    }
}

/// Re-draws the plot from a result file (or several: `plot a.json b.json ... out.svg`, one curve per phase
/// per file, e.g. ringcast vs the node baseline).
fn plot(flags: &common::Flags) -> Result<(), String> {
    let p = &flags.positional;
    if p.len() < 2 {
        return Err("plot RESULT.json [RESULT2.json ...] OUT.svg".into());
    }
    let mut series = Vec::new();
    let many = p.len() > 2;
    for f in &p[..p.len() - 1] {
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
    std::fs::write(
        &p[p.len() - 1],
        svg::percentile_plot("ringcast-load latency", &series),
    )
    .map_err(|e| e.to_string())
}
