//! The tables users rely on say what the code does: close codes, their meanings and reasons
//! (docs/protocol.md against `CloseCode::SENT` and the closes src/ makes), refused tokens (docs/auth.md
//! against `AuthError`), client error codes (docs/protocol.md against src/fanout/command.rs and the auth
//! refresh), and every flag, environment variable and default (docs/config.md against
//! `ringcast serve --help`). The markdown tables are parsed; a row missing, extra or different fails.
//! Across docs/*.md and the README: every flag named exists, every default quoted next to a flag is the
//! one `--help` shows, and every metric named is one the server exports.

mod common;
mod doc_check;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ringcast::protocol::CloseCode;

use doc_check::help::{client_bench_flags, help, serve_help};
use doc_check::sources::*;
use doc_check::*;

#[test]
fn close_codes_table_is_the_list_the_server_sends() {
    let doc = read("docs/protocol.md");
    let rows = table(&doc, "| code | meaning | reason sent | when |");
    let documented: BTreeMap<u16, (String, String)> = rows
        .iter()
        .map(|row| {
            let code = row[0]
                .parse()
                .unwrap_or_else(|_| panic!("docs/protocol.md close code row {row:?}"));
            (code, (row[1].clone(), row[2].clone()))
        })
        .collect();
    assert_eq!(documented.len(), rows.len(), "a close code listed twice");
    let listed: BTreeMap<u16, String> = CloseCode::SENT
        .iter()
        .map(|(code, meaning)| (code.0, meaning.to_string()))
        .collect();
    let meanings: BTreeMap<u16, String> = documented
        .iter()
        .map(|(code, (meaning, _))| (*code, meaning.clone()))
        .collect();
    assert_eq!(
        meanings, listed,
        "docs/protocol.md 'Close codes' (left) against CloseCode::SENT (right): code and meaning"
    );

    // CloseCode::SENT is what src/ uses: no code used that it lacks, none it lists unused (1000 is the
    // echo of the client's own close).
    let mut used = close_codes_used();
    used.insert(CloseCode::NORMAL.0);
    let listed: BTreeSet<u16> = listed.keys().copied().collect();
    assert_eq!(
        listed, used,
        "CloseCode::SENT (left) against the close codes used in src/ (right)"
    );

    // Each row's reasons are the ones sent with its code, both ways.
    let sent = close_reasons_sent();
    assert_eq!(
        listed,
        sent.keys().copied().collect::<BTreeSet<u16>>(),
        "CloseCode::SENT (left) against the codes src/ sends with a reason (right)"
    );
    for (code, (_, cell)) in &documented {
        let patterns = reason_patterns(cell);
        let reasons = &sent[code];
        for reason in reasons {
            assert!(
                patterns.iter().any(|p| reason_matches(p, reason)),
                "close {code}: src/ sends reason {reason:?}, docs/protocol.md lists {patterns:?}"
            );
        }
        for pattern in &patterns {
            assert!(
                reasons.iter().any(|r| reason_matches(pattern, r)),
                "close {code}: docs/protocol.md lists reason {pattern:?}, src/ sends {reasons:?}"
            );
        }
    }
}

#[test]
fn refused_token_table_is_the_auth_error_mapping() {
    let doc = read("docs/auth.md");
    let documented: BTreeMap<String, (u16, String)> =
        table(&doc, "| error (log reason) | close code | close reason |")
            .iter()
            .map(|row| {
                let reason = reason_patterns(&row[0]).remove(0);
                let code = row[1].trim_matches('*').parse().expect("close code");
                (reason, (code, reason_patterns(&row[2]).remove(0)))
            })
            .collect();
    let errors = upgrade_auth_errors();
    assert_eq!(
        documented.keys().cloned().collect::<BTreeSet<_>>(),
        errors.iter().map(|e| e.reason().to_string()).collect(),
        "docs/auth.md 'Refused tokens' (left) against the AuthErrors of an upgrade (right)"
    );
    for e in errors {
        let (code, pattern) = &documented[e.reason()];
        assert_eq!(*code, e.close_code().0, "docs/auth.md: {}", e.reason());
        assert!(
            reason_matches(pattern, &e.description()),
            "docs/auth.md: {} is closed with {:?}, documented {pattern:?}",
            e.reason(),
            e.description()
        );
    }
}

#[test]
fn error_codes_table_lists_every_error_a_client_can_get() {
    let doc = read("docs/protocol.md");
    let documented: BTreeSet<String> = table(&doc, "| error | when |")
        .iter()
        .map(|row| unquote(&row[0]).to_string())
        .collect();
    // CommandError::code() in src/fanout/command.rs: `CommandError::X… => "code"`.
    let command = read("src/fanout/command.rs");
    let code_fn = command
        .split("pub fn code(&self)")
        .nth(1)
        .expect("CommandError::code")
        .split("\n    }\n")
        .next()
        .unwrap();
    let mut sent: BTreeSet<String> = between(code_fn, "=> \"", '"')
        .into_iter()
        .map(String::from)
        .collect();
    assert!(
        sent.contains("bad_request"),
        "CommandError::code read: {sent:?}"
    );
    // Other error messages built elsewhere (`"error": "code"`), e.g. a refused auth refresh.
    for (_, code) in server_sources() {
        sent.extend(
            between(&code, "\"error\": \"", '"')
                .into_iter()
                .map(String::from),
        );
    }
    assert_eq!(
        documented, sent,
        "docs/protocol.md error codes (left) against the codes src/ sends (right)"
    );
}

#[test]
fn docs_name_only_flags_that_exist() {
    let mut known: BTreeSet<String> = BTreeSet::new();
    for sub in ["serve", "publish", "get", "retire", "feed", "demo"] {
        let flags = help(sub);
        assert!(
            !flags.is_empty(),
            "no flags parsed from ringcast {sub} --help"
        );
        known.extend(flags.keys().map(|f| flag_name(f).to_string()));
    }
    // Flags of other programs the docs show: `cargo build --release`, `redis-server --save ''`.
    known.extend(["--release", "--save"].map(String::from));
    // Flags the client benchmarks read (`args.name` / `args["name"]` in client/bench/*.mjs).
    known.extend(client_bench_flags());
    let mut unknown = BTreeSet::new();
    for (path, text) in user_docs() {
        for span in quoted(&text) {
            if span.starts_with("--") {
                let flag = flag_name(span);
                if !known.contains(flag) {
                    unknown.insert(format!("{path}: {flag}"));
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "flags in the docs that no ringcast subcommand has: {unknown:?}"
    );
}

#[test]
fn docs_quote_defaults_as_serve_help_does() {
    let defaults: BTreeMap<String, String> = serve_help()
        .into_iter()
        .filter_map(|(flag, (_, default))| Some((flag_name(&flag).to_string(), default?)))
        .collect();
    let mut checked = 0;
    let mut wrong = Vec::new();
    let mut check = |path: &str, flag: &str, value: &str| {
        let Some(default) = defaults.get(flag) else {
            wrong.push(format!(
                "{path}: {flag} has no default in serve --help, the doc says {value:?}"
            ));
            return;
        };
        if default != value {
            wrong.push(format!(
                "{path}: {flag} default {value:?}, serve --help says {default:?}"
            ));
        }
        checked += 1;
    };
    // docs/security.md: `| limit | default | protects against |` tables, one flag (or `a` / `b`) per row
    // and its default in quotes first (units or remarks may follow).
    let security = read("docs/security.md");
    let mut rest = security.as_str();
    while let Some(i) = rest.find("| limit | default |") {
        let rows = table(&rest[i..], "| limit | default |");
        rest = &rest[i + 1..];
        for row in rows {
            let flags: Vec<&str> = row[0].split(" / ").map(unquote).collect();
            if !flags
                .iter()
                .all(|f| f.starts_with("--") && !f.contains(['`', ' ']))
            {
                continue;
            }
            let head = row[1].split('(').next().unwrap();
            let values: Vec<&str> = quoted(head).collect();
            if values.len() == flags.len() {
                for (flag, value) in flags.iter().zip(values) {
                    check("docs/security.md", flag, value);
                }
            }
        }
    }
    // Prose: "`--flag …` (env `X`, default `V`)" or "`--flag` / `X`, default `V`" in one clause.
    for (path, text) in user_docs() {
        if path == "docs/config.md" {
            continue; // its table is checked flag by flag against --help
        }
        for line in text.lines() {
            for (i, _) in line.match_indices("default `") {
                let before = &line[..i];
                let Some(start) = before.rfind("`--") else {
                    continue;
                };
                let clause = &before[start..];
                if clause.len() > 80 || clause.contains(['.', '|', ';']) {
                    continue;
                }
                let flag = flag_name(clause[1..].split('`').next().unwrap());
                let value = line[i + "default `".len()..].split('`').next().unwrap();
                check(&path, flag, value);
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert!(checked >= 15, "defaults checked: {checked}");
}

#[test]
fn docs_name_only_metrics_the_server_exports() {
    // A metric name is a string in src/ that /metrics writes: `"ringcast_…"` or `# HELP ringcast_…`.
    let mut exported = BTreeSet::new();
    for (_, code) in server_sources() {
        for prefix in ["\"ringcast_", "# HELP ringcast_"] {
            for name in idents_after(&code, prefix) {
                exported.insert(format!("ringcast_{name}"));
            }
        }
    }
    // Not a metric: the default name of the token cookie (docs/auth.md).
    let cookie = ringcast::auth::AuthConfig::default().cookie_name;
    exported.remove(&cookie);
    assert!(
        exported.len() > 30,
        "metric names found in src/: {exported:?}"
    );
    let mut unknown = BTreeSet::new();
    for (path, text) in user_docs() {
        for name in idents_after(&text, "ringcast_") {
            let name = format!("ringcast_{name}");
            // A histogram's series: `<name>_bucket`, `_sum`, `_count`.
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| exported.contains(*base));
            if name != cookie && !exported.contains(&name) && base.is_none() {
                unknown.insert(format!("{path}: {name}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics named in the docs that the server does not export: {unknown:?}"
    );
}

#[test]
fn config_table_matches_serve_help_flag_by_flag() {
    let doc = read("docs/config.md");
    let mut help = serve_help();
    help.remove("--help");
    // --log applies to every subcommand: documented in a sentence under the table.
    let (log_env, log_default) = help.remove("--log <LOG>").expect("--log in --help");
    let log_line = format!(
        "`--log LEVEL` / `{}` (default `{}`)",
        log_env.unwrap(),
        log_default.unwrap()
    );
    assert!(doc.contains(&log_line), "docs/config.md lacks {log_line:?}");
    let documented: BTreeMap<String, (Option<String>, Option<String>)> =
        table(&doc, "| flag | environment | default |")
            .iter()
            .map(|row| {
                let cell = |i: usize| match unquote(&row[i]) {
                    "—" | "" => None,
                    v => Some(v.to_string()),
                };
                (unquote(&row[0]).to_string(), (cell(1), cell(2)))
            })
            .collect();
    let missing: Vec<_> = help
        .keys()
        .filter(|f| !documented.contains_key(*f))
        .collect();
    let extra: Vec<_> = documented
        .keys()
        .filter(|f| !help.contains_key(*f))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/config.md: flags missing {missing:?}, flags no longer in --help {extra:?}"
    );
    for (flag, (env, default)) in &help {
        assert_eq!(
            &documented[flag],
            &(env.clone(), default.clone()),
            "docs/config.md {flag}: (env, default) documented (left) against --help (right)"
        );
    }
}

/// docs/config.md's table and deploy/ringcast.toml are what `ringcast::config::reference` generates from
/// the flag definitions; `RINGCAST_REGENERATE=1` rewrites them instead of failing.
#[test]
fn config_table_and_example_file_are_generated_from_the_flags() {
    use ringcast::config::reference::{TABLE_BEGIN, TABLE_END, example_file, markdown_table};
    let regenerate = std::env::var_os("RINGCAST_REGENERATE").is_some();
    let doc = read("docs/config.md");
    let (before, rest) = doc
        .split_once(TABLE_BEGIN)
        .expect("docs/config.md: the generated table's begin marker");
    let (table_now, after) = rest
        .split_once(TABLE_END)
        .expect("docs/config.md: the generated table's end marker");
    let table = format!("\n{}", markdown_table());
    let example = example_file();
    let example_path = Path::new(ROOT).join("deploy/ringcast.toml");
    if regenerate {
        std::fs::write(
            Path::new(ROOT).join("docs/config.md"),
            format!("{before}{TABLE_BEGIN}{table}{TABLE_END}{after}"),
        )
        .unwrap();
        std::fs::create_dir_all(example_path.parent().unwrap()).unwrap();
        std::fs::write(&example_path, &example).unwrap();
        return;
    }
    assert!(
        table_now == table,
        "docs/config.md's table differs from the flags: run RINGCAST_REGENERATE=1 cargo test --test docs_consistent"
    );
    assert!(
        read("deploy/ringcast.toml") == example,
        "deploy/ringcast.toml differs from the flags: run RINGCAST_REGENERATE=1 cargo test --test docs_consistent"
    );
}

/// The shard test vectors of docs/protocol.md ("Redis Cluster") are what the server computes, so a
/// publisher written from the doc (the Node snippet there) agrees with it.
#[test]
fn shard_vectors_in_the_protocol_doc_match_the_code() {
    use ringcast::ingest::cluster::{fnv1a32, shard_of};
    let doc = read("docs/protocol.md");
    let (_, rest) = doc
        .split_once("<!-- shard vectors begin -->")
        .expect("docs/protocol.md: shard vectors begin marker");
    let (table, _) = rest
        .split_once("<!-- shard vectors end -->")
        .expect("docs/protocol.md: shard vectors end marker");
    let mut rows = 0;
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line
            .split('|')
            .map(|c| c.trim().trim_matches('`'))
            .collect();
        let (symbol, hash, shard) = (cells[1], cells[2], cells[3]);
        let hash = u32::from_str_radix(hash.trim_start_matches("0x"), 16).unwrap();
        assert_eq!(fnv1a32(symbol.as_bytes()), hash, "{line}");
        assert_eq!(
            shard_of(symbol, 16),
            shard.parse::<u32>().unwrap(),
            "{line}"
        );
        rows += 1;
    }
    assert!(rows >= 5, "only {rows} vectors");
}
