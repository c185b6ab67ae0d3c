//! Issue 9's abuse suite: the attacks of its 12 items replayed against ONE server (a real redis-server
//! feed behind a password, tokens required), while a bystander subscriber and a `/healthz` prober
//! measure whether anyone else notices. Asserted per attack window: `/healthz` answers and the
//! bystander's ticks arrive on time, the server's RSS growth stays bounded, the attack's own issue-level
//! outcome holds; and, over the whole run, the captured log (`--log info`) holds no secret.
//!
//! The server runs with default settings except (each needed by an attack; see its function):
//! - `--workers 2`: the default on this 2-core box, made explicit because item 9 needs two workers;
//! - `--max-msgs-per-s 0` (item 3: pongs only pile up when the message rate is unlimited);
//! - `--max-conns-per-ip 8` (item 9: the per-address limit must hold per process);
//! - `--max-conns-per-worker 64` (item 8: the default table is far more sockets than a test may open);
//! - `--slow-grace 2s` (item 12: the default 10 s would double the suite's run time).
//!
//! Latency bound. The issue's bound is 100 ms late. On a loaded 2-core CI machine the bystander's own
//! threads, Redis and the attackers compete for the same cores, so a quiet phase first measures the
//! same figures with no attack running (max bystander lateness, max `/healthz` time); each attack
//! window may then be at most 100 ms worse than that quiet phase. A stalled worker (today's main: whole
//! seconds) or an unanswered probe fails by a wide margin either way.
//!
//! `RINGCAST_TEST_BIN=/work/baseline/ringcast` runs it against another build; it then prints which
//! windows failed and why. `RINGCAST_ABUSE_KEEP_LOG=1` keeps the server's log file.

#[path = "abuse/attacks.rs"]
mod attacks;
mod common;
#[path = "abuse/harness.rs"]
mod harness;
#[path = "abuse/net.rs"]
mod net;

use std::time::{Duration, Instant};

use harness::*;

/// Growth of the server's VmRSS allowed per attack window (peak during the attack − RSS at its start).
/// The attacks would grow today's main by tens to hundreds of MiB; the per-item bounds of a fixed server
/// (backlog 256 KiB per connection, a bounded symbol table, coalesced pongs) stay far below this.
const RSS_BOUND_MIB: f64 = 24.0;
/// Item 10's window: a fixed server still holds up to its symbol-table limit (whose default is not
/// known here): about 370 B per symbol measured on today's main, so this admits a default up to ~100k
/// symbols while today's main grows ~90 MiB for the 250k published.
const SYMBOLS_RSS_BOUND_MIB: f64 = 48.0;
/// Growth allowed over the whole suite (RSS at the end − RSS after the quiet phase): the symbol table
/// plus what the allocator keeps of the other windows' peaks.
const RSS_TOTAL_MIB: f64 = 64.0;

type Attack = fn(&Suite, &mut Window);

/// The attacks in the order they run: (issue item, name, RSS bound in MiB, attack).
#[rustfmt::skip]
const ATTACKS: [(&str, &str, f64, Attack); 12] = [
    ("7", "HTTP strictness", RSS_BOUND_MIB, attacks::http_strictness),
    ("6", "far-future token exp", RSS_BOUND_MIB, attacks::far_future_exp),
    ("5", "per-user messages", RSS_BOUND_MIB, attacks::user_messages),
    ("9", "per-IP limit per process", RSS_BOUND_MIB, attacks::per_ip_limit),
    ("4", "feed down/up (log lines)", RSS_BOUND_MIB, attacks::feed_bounce),
    ("1", "quadratic subscribe", RSS_BOUND_MIB, attacks::quadratic_subscribe),
    ("2", "re-subscribe amplification", RSS_BOUND_MIB, attacks::resubscribe),
    ("3", "ping flood, never read", RSS_BOUND_MIB, attacks::ping_flood),
    ("10", "250k distinct symbols", SYMBOLS_RSS_BOUND_MIB, attacks::symbol_universe),
    ("12", "slow consumer, no later tick", RSS_BOUND_MIB, attacks::slow_grace),
    ("8", "full connection table", RSS_BOUND_MIB, attacks::full_table),
    // Last: on today's main it stops the feed for good.
    ("11", "wrong-type hash key", RSS_BOUND_MIB, attacks::wrong_type_key),
];

#[test]
fn attacks_neither_stall_nor_grow_nor_leak() {
    let began = Instant::now();
    let mut suite = Suite::start(
        &[
            "--workers",
            "2",
            "--max-msgs-per-s",
            "0",
            "--max-conns-per-ip",
            "8",
            "--max-conns-per-worker",
            "64",
            "--slow-grace",
            "2s",
        ],
        attacks::seed,
    );
    suite.start_background();
    suite.window("-", "quiet", RSS_BOUND_MIB, |_, _| {
        std::thread::sleep(Duration::from_secs(2))
    });
    let rss_after_quiet = suite.rss_kb();
    for (item, name, rss_bound, attack) in ATTACKS {
        suite.window(item, name, rss_bound, attack);
    }

    let quiet = &suite.windows[0];
    assert!(
        quiet.failures.is_empty(),
        "the quiet phase failed: {:?}",
        quiet.failures
    );
    let health_bound = ISSUE_BOUND + quiet.health_max.unwrap_or_default();
    let late_bound = ISSUE_BOUND + quiet.late_max;
    suite.judge_latency(health_bound, late_bound);

    let mut failures: Vec<String> = Vec::new();
    eprintln!(
        "item window                          health_max  late_max  missing  rss+MiB  verdict"
    );
    for w in &suite.windows {
        eprintln!(
            "{:>4} {:<32} {:>8}ms {:>7}ms {:>8} {:>8.1}  {}",
            w.item,
            w.name,
            w.health_max
                .map_or("-".into(), |h| h.as_millis().to_string()),
            w.late_max.as_millis(),
            w.missing,
            w.growth_mib(),
            if w.failures.is_empty() {
                "ok".into()
            } else {
                w.failures.join("; ")
            }
        );
        failures.extend(
            w.failures
                .iter()
                .map(|f| format!("item {} ({}): {f}", w.item, w.name)),
        );
    }

    // The server keeps serving: alive, healthy, and a new client still gets a tick.
    if !suite.alive() {
        failures.push("the server process died".into());
    } else if probe_text(suite.addr, "/healthz").is_none() {
        failures.push("/healthz unanswered at the end".into());
    } else if !attacks::fresh_client_gets_a_tick(&suite) {
        failures.push("a new client got no live tick within 2 s at the end".into());
    }
    let total = suite.rss_kb().saturating_sub(rss_after_quiet) as f64 / 1024.0;
    eprintln!("RSS growth over the suite: {total:.1} MiB (bound {RSS_TOTAL_MIB} MiB)");
    if total > RSS_TOTAL_MIB {
        failures.push(format!(
            "RSS grew {total:.1} MiB over the suite (bound {RSS_TOTAL_MIB} MiB)"
        ));
    }
    suite.stop_background();

    // No secret in the log: the Redis password, the auth secret, any token (or its signature).
    let log = std::fs::read_to_string(&suite.log).unwrap_or_default();
    assert!(
        log.contains("listening"),
        "the server's log was not captured:\n{log}"
    );
    let mut secrets = vec![
        ("the Redis password", PASSWORD.to_string()),
        ("the auth secret", SECRET.to_string()),
    ];
    for t in suite.tokens.lock().unwrap().iter() {
        secrets.push(("a token", t.clone()));
        secrets.push((
            "a token's signature",
            t.rsplit('.').next().unwrap().to_string(),
        ));
    }
    for (what, secret) in &secrets {
        if let Some(line) = log.lines().find(|l| l.contains(secret.as_str())) {
            failures.push(format!("the log holds {what}: {line}"));
        }
    }
    eprintln!("suite ran {:.1} s", began.elapsed().as_secs_f64());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `docs/security.md` names only flags and environment variables that `ringcast serve --help` knows, and
/// where a limits table states a flag's default, it is the default `--help` shows. Placeholders (HTML
/// comments) are skipped.
#[test]
fn security_doc_matches_serve_help() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/security.md")).unwrap();
    let mut text = String::new();
    let mut rest = doc.as_str();
    while let Some(at) = rest.find("<!--") {
        text.push_str(&rest[..at]);
        rest = rest[at..]
            .find("-->")
            .map_or("", |end| &rest[at + end + 3..]);
    }
    text.push_str(rest);
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--help"])
        .output()
        .expect("run ringcast serve --help");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    // flag → its default, from --help
    let mut defaults = std::collections::HashMap::new();
    let mut current = String::new();
    for line in help.lines() {
        let t = line.trim_start();
        if t.starts_with("--") {
            current = t.split([' ', ',']).next().unwrap().to_string();
            defaults.entry(current.clone()).or_insert(None);
        }
        if let Some(d) = line
            .split("[default: ")
            .nth(1)
            .and_then(|d| d.split(']').next())
        {
            defaults.insert(current.clone(), Some(d.to_string()));
        }
    }
    assert!(
        defaults.len() > 30,
        "could not read `serve --help`:\n{help}"
    );
    let words = |prefix: &'static str, ok: fn(char) -> bool| {
        let text = &text;
        text.match_indices(prefix)
            .filter(|(i, _)| !text[..*i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '-'))
            .map(|(i, _)| text[i..].chars().take_while(|c| ok(*c)).collect::<String>())
            .filter(|w| w.len() > prefix.len() && !w[prefix.len()..].starts_with('-'))
            .collect::<Vec<String>>()
    };
    let flags = words("--", |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
    });
    let vars = words("RINGCAST_", |c| c.is_ascii_uppercase() || c == '_');
    assert!(
        flags.len() > 20 && !vars.is_empty(),
        "found no flags in the doc"
    );
    let mut wrong: Vec<String> = flags
        .iter()
        .filter(|f| !defaults.contains_key(f.as_str()))
        .map(|f| format!("{f} is not a flag of `ringcast serve`"))
        .collect();
    wrong.extend(
        vars.iter()
            .filter(|v| !help.contains(&format!("{v}=")) && !help.contains(&format!("{v}]")))
            .map(|v| format!("{v} is not an environment variable of `ringcast serve`")),
    );
    // Table rows "| `--flag` … | default | …": the default cell must show --help's default.
    for row in text.lines().filter(|l| l.starts_with("| `--")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let flag = cells[1]
            .trim_start_matches('`')
            .split(['`', ' '])
            .next()
            .unwrap();
        if let Some(Some(d)) = defaults.get(flag)
            && !cells[2].contains(&format!("`{d}`"))
        {
            wrong.push(format!(
                "{flag}: the doc says {:?}, --help says `{d}`",
                cells[2]
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/security.md disagrees with `ringcast serve --help`:\n{}",
        wrong.join("\n")
    );
}
