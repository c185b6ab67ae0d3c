//! `deploy/grafana-dashboard.json` and `deploy/prometheus-alerts.yml` (with its unit tests,
//! `deploy/prometheus-alerts.test.yml`) name only metrics a real `ringcast serve` exports: a server fed by
//! a real redis-server is scraped, and every `ringcast_…` name in the dashboard's queries and in the rule
//! files must be in the scrape (a `_bucket`/`_sum`/`_count` name counts when its base is a histogram or
//! summary there). The dashboard must parse as JSON and cover what an operator needs; the rules must be
//! well formed (every rule: a comment, alert, expr, for, labels.severity, annotations.summary and
//! description) and, when promtool is installed (Debian package `prometheus`; tests/run.sh installs it),
//! pass `promtool check rules` and `promtool test rules`. Without promtool that part prints
//! `deploy_monitoring: skipped: …` and passes (with CI=true it fails).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

/// Every `ringcast_…` identifier in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.match_indices("ringcast_")
        .filter(|(i, _)| {
            // Not the tail of a longer identifier.
            !text[..*i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(|(i, _)| {
            let rest = &text[i..];
            let end = rest
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .unwrap_or(rest.len());
            rest[..end].to_string()
        })
        .collect()
}

/// Every string value under a key named `key`, anywhere in `value`.
fn strings_under(value: &serde_json::Value, key: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::String(s) if k == key => out.push(s.clone()),
                    _ => strings_under(v, key, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                strings_under(item, key, out);
            }
        }
        _ => {}
    }
}

/// The metric names of a Prometheus text exposition, and the names `# TYPE`d histogram or summary.
fn scraped(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut names = BTreeSet::new();
    let mut aggregates = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            names.insert(name.to_string());
            if kind == "histogram" || kind == "summary" {
                aggregates.insert(name.to_string());
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    (names, aggregates)
}

fn exported(name: &str, names: &BTreeSet<String>, aggregates: &BTreeSet<String>) -> bool {
    names.contains(name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| aggregates.contains(base))
        })
}

#[test]
fn dashboard_and_alert_rules_name_only_metrics_a_real_scrape_has() {
    let (_redis, server) = fed_server("2", "dmon:", &[]);
    let (status, text) = server.get("/metrics");
    assert_eq!(status, 200, "{text}");
    let body = text.split_once("\r\n\r\n").map_or(&*text, |(_, b)| b);
    let (names, aggregates) = scraped(body);
    assert!(
        names.contains("ringcast_feed_up") && names.len() > 30,
        "a fed server's scrape: {names:?}"
    );

    let dashboard: serde_json::Value = serde_json::from_str(&read("grafana-dashboard.json"))
        .expect("deploy/grafana-dashboard.json is JSON");
    let mut queries = Vec::new();
    for key in ["expr", "definition"] {
        strings_under(&dashboard, key, &mut queries);
    }
    let in_dashboard: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    let mut sources = vec![("deploy/grafana-dashboard.json", in_dashboard.clone())];
    for file in ["prometheus-alerts.yml", "prometheus-alerts.test.yml"] {
        sources.push((file, metric_names(&read(file))));
    }
    let mut unknown = Vec::new();
    for (file, used) in &sources {
        assert!(used.len() >= 5, "{file} names only {used:?}");
        for name in used {
            if !exported(name, &names, &aggregates) {
                unknown.push(format!("{file}: {name}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics that ringcast serve does not export: {unknown:#?}\nscrape:\n{body}"
    );

    // What the dashboard must show (docs/load-balancing.md, "Monitoring and sizing").
    let needed = [
        "ringcast_connections_open",
        "ringcast_connections_accepted_total",
        "ringcast_deliveries_total",
        "ringcast_backlog_bytes",
        "ringcast_slow_consumers_total",
        "ringcast_conflated_frames_total",
        "ringcast_dropped_frames_total",
        "ringcast_refusals_total",
        "ringcast_feed_up",
        "ringcast_handshakes_failed_total",
        "ringcast_tls_handshakes_total",
        "ringcast_tls_resumed_total",
        "ringcast_draining",
        "ringcast_worker_busy_nanoseconds_total",
    ];
    let missing: Vec<_> = needed
        .iter()
        .filter(|n| !in_dashboard.contains(**n))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard does not graph {missing:?}"
    );
    assert!(
        queries
            .iter()
            .any(|q| q.contains("by (code)") && q.contains("ringcast_refusals_total")),
        "the dashboard shows refusals by code"
    );
    assert!(
        queries.iter().any(|q| q.contains("by (instance)")),
        "the dashboard shows series per instance"
    );
}

#[test]
fn dashboard_panels_are_described_and_uniquely_numbered() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("grafana-dashboard.json")).unwrap();
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut graphs = 0;
    for panel in panels {
        let id = panel["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        let title = panel["title"].as_str().expect("panel title");
        if panel["type"] == "row" {
            continue;
        }
        graphs += 1;
        let described = panel["description"].as_str().is_some_and(|d| d.len() > 20);
        assert!(described, "panel {title:?} has no description");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or("");
            assert!(expr.contains("ringcast_"), "panel {title:?}: {target}");
        }
        for key in ["x", "y", "w", "h"] {
            assert!(
                panel["gridPos"][key].is_u64(),
                "panel {title:?} gridPos.{key}"
            );
        }
    }
    assert!(graphs >= 12, "only {graphs} panels");
}

#[test]
fn alert_rules_are_well_formed_and_pass_promtool() {
    let rules = read("prometheus-alerts.yml");
    let lines: Vec<&str> = rules.lines().collect();
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].trim_start().starts_with("- alert:"))
        .collect();
    assert!(starts.len() >= 6, "only {} alert rules", starts.len());
    let mut names = BTreeSet::new();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(lines.len());
        let block = &lines[start..end];
        let name = block[0].trim_start()["- alert:".len()..].trim();
        assert!(names.insert(name), "alert {name} twice");
        let indent = block[0].len() - block[0].trim_start().len();
        let field = |key: &str, at: usize| {
            block
                .iter()
                .any(|l| l.len() - l.trim_start().len() == at && l.trim_start().starts_with(key))
        };
        for key in ["expr:", "for:", "labels:", "annotations:"] {
            assert!(field(key, indent + 2), "alert {name}: no {key}");
        }
        for key in ["severity:", "summary:", "description:"] {
            assert!(field(key, indent + 4), "alert {name}: no {key}");
        }
        assert!(
            lines[start - 1].trim_start().starts_with('#'),
            "alert {name} is not commented"
        );
    }

    let Some(promtool) = promtool() else { return };
    for args in [
        ["check", "rules", "prometheus-alerts.yml"],
        ["test", "rules", "prometheus-alerts.test.yml"],
    ] {
        let (ok, out) = run_bounded(&promtool, &args, Duration::from_secs(60));
        assert!(ok, "promtool {}:\n{out}", args.join(" "));
    }
}

/// The path of promtool, or None after a skip line (a failure under CI=true).
fn promtool() -> Option<String> {
    installed_tool(
        "deploy_monitoring",
        "promtool",
        "apt-get install -y --no-install-recommends prometheus",
        "; the rules were checked for their structure only",
    )
}

/// Run `program args` in deploy/, killed (by PID) if it has not finished within `within`; whether it
/// succeeded, and its output.
fn run_bounded(program: &str, args: &[&str], within: Duration) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(deploy(""))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let deadline = Instant::now() + within;
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return (out.status.success(), output_text(&out));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{program} {} did not finish within {within:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
