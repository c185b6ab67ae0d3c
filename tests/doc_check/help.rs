//! What the binary and the client scripts accept, for tests/docs_consistent.rs: `--help` flags with
//! their env vars and defaults, the flags of client/bench/.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use super::{ROOT, between};
use crate::common;

/// `ringcast serve --help`: flag line (e.g. `--listen <LISTEN>`) → (env var, default).
pub fn serve_help() -> BTreeMap<String, (Option<String>, Option<String>)> {
    let flags = help("serve");
    assert!(flags.len() > 30, "parsed {} flags from --help", flags.len());
    flags
}

/// `ringcast SUBCOMMAND --help`: flag line (e.g. `--listen <LISTEN>`) → (env var, default).
pub fn help(subcommand: &str) -> BTreeMap<String, (Option<String>, Option<String>)> {
    let out = Command::new(common::bin())
        .args([subcommand, "--help"])
        .output()
        .unwrap_or_else(|e| panic!("ringcast {subcommand} --help: {e}"));
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
            // `-l, --listen <LISTEN>`, its help on the same line after two spaces or on the next ones.
            let (head, help) = trimmed.split_once("  ").unwrap_or((trimmed, ""));
            let flag = head.split_once(", ").map_or(head, |(_, long)| long);
            current = Some((flag.to_string(), help.to_string()));
        } else if let Some((_, help)) = current.as_mut() {
            help.push(' ');
            help.push_str(trimmed);
        }
    }
    finish(current.take());
    flags
}

/// `--name` for each `args.name` or `args["name"]` read by a script in client/bench/.
pub fn client_bench_flags() -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for entry in std::fs::read_dir(Path::new(ROOT).join("client/bench"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for rest in text.split("args").skip(1) {
            let name: String = if let Some(quoted) = rest.strip_prefix("[\"") {
                quoted.split('"').next().unwrap_or("").to_string()
            } else if let Some(field) = rest.strip_prefix('.') {
                field
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect()
            } else {
                continue;
            };
            if !name.is_empty() {
                flags.insert(format!("--{name}"));
            }
        }
    }
    flags
}
