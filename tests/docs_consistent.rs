//! The tables users rely on say what the code does: close codes (docs/protocol.md against the codes the
//! server sends, from src/), client error codes (docs/protocol.md against src/fanout/command.rs and the
//! auth refresh), and every flag, environment variable and default (docs/config.md against
//! `ringcast serve --help`). The markdown tables are parsed; a row missing, extra or different fails.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The rows (cells trimmed, header and separator left out) of the first table whose header row starts
/// with `header` (e.g. "| code | when |").
fn table(doc: &str, header: &str) -> Vec<Vec<String>> {
    let mut lines = doc.lines().skip_while(|l| !l.starts_with(header));
    assert!(lines.next().is_some(), "no table headed {header:?}");
    let rows: Vec<Vec<String>> = lines
        .take_while(|l| l.starts_with('|'))
        .filter(|l| !l.starts_with("|---"))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    assert!(!rows.is_empty(), "table {header:?} has no rows");
    rows
}

fn unquote(cell: &str) -> &str {
    cell.trim_matches('`')
}

/// Every .rs file under src/, without its unit tests (`tests/` directories, `tests.rs`, and everything
/// after `#[cfg(test)]`): the code the server runs.
fn server_sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "tests" {
                    walk(&path, out);
                }
            } else if name.ends_with(".rs") && name != "tests.rs" {
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap().to_string();
                out.push((path, code));
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(ROOT).join("src"), &mut out);
    out
}

/// The text between `start` and the next `end` in `s`, for each occurrence.
fn between<'a>(s: &'a str, start: &str, end: char) -> Vec<&'a str> {
    s.match_indices(start)
        .filter_map(|(i, _)| {
            let rest = &s[i + start.len()..];
            rest.find(end).map(|j| &rest[..j])
        })
        .collect()
}

/// The identifier right after each occurrence of `start` in `s`.
fn idents_after<'a>(s: &'a str, start: &str) -> Vec<&'a str> {
    s.match_indices(start)
        .map(|(i, _)| {
            let rest = &s[i + start.len()..];
            let end = rest
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

/// The close codes the server sends: every `CloseCode::NAME` (resolved through the constants of
/// src/protocol/close.rs) and `CloseCode(N)` used outside close.rs.
fn close_codes_sent() -> BTreeSet<u16> {
    let close_rs = read("src/protocol/close.rs");
    let named: BTreeMap<String, u16> = close_rs
        .lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("pub const ")?;
            let (name, rest) = l.split_once(": CloseCode = CloseCode(")?;
            Some((name.to_string(), rest.split(')').next()?.parse().ok()?))
        })
        .collect();
    assert!(named.len() >= 8, "constants of close.rs: {named:?}");
    let mut sent = BTreeSet::new();
    for (path, code) in server_sources() {
        if path.ends_with("protocol/close.rs") {
            continue;
        }
        for name in idents_after(&code, "CloseCode::") {
            let value = named.get(name).unwrap_or_else(|| {
                panic!("{}: CloseCode::{name} is not in close.rs", path.display())
            });
            sent.insert(*value);
        }
        for literal in between(&code, "CloseCode(", ')') {
            if let Ok(value) = literal.parse::<u16>() {
                sent.insert(value);
            }
        }
    }
    sent
}

#[test]
fn close_codes_table_lists_every_code_the_server_sends() {
    let doc = read("docs/protocol.md");
    let documented: BTreeSet<u16> = table(&doc, "| code | when |")
        .iter()
        .map(|row| row[0].parse().unwrap_or_else(|_| panic!("row {row:?}")))
        .collect();
    let mut sent = close_codes_sent();
    // The server echoes the client's own code when the client closes; 1000 is the one it documents.
    sent.insert(1000);
    assert_eq!(
        documented, sent,
        "docs/protocol.md 'Close codes' (left) against the codes src/ sends (right)"
    );
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

/// `ringcast serve --help`: flag line (e.g. `--listen <LISTEN>`) → (env var, default).
fn serve_help() -> BTreeMap<String, (Option<String>, Option<String>)> {
    let out = Command::new(common::bin())
        .args(["serve", "--help"])
        .output()
        .expect("ringcast serve --help");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut flags = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let mut finish = |flag: Option<(String, String)>| {
        if let Some((flag, help)) = flag {
            let env = between(&help, "[env: ", ']')
                .first()
                .map(|e| e.split('=').next().unwrap().to_string());
            let default = between(&help, "[default: ", ']')
                .first()
                .map(|d| d.to_string());
            flags.insert(flag, (env, default));
        }
    };
    for line in text
        .lines()
        .skip_while(|l| !l.starts_with("Options:"))
        .skip(1)
    {
        let trimmed = line.trim();
        if line.starts_with("      --") || line.starts_with("  -") {
            finish(current.take());
            let flag = trimmed.split_once(", ").map_or(trimmed, |(_, long)| long);
            current = Some((flag.to_string(), String::new()));
        } else if let Some((_, help)) = current.as_mut() {
            help.push(' ');
            help.push_str(trimmed);
        }
    }
    finish(current.take());
    assert!(flags.len() > 30, "parsed {} flags from --help", flags.len());
    flags
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
