//! The layers of docs/architecture.md, checked against the source: every `crate::…` (and `super::…`
//! that leaves its module) in src/ is an edge between two units, and each edge must be one listed in
//! [`LAYERS`]; the listed edges must form no cycle. So an import that runs back up — the core reaching
//! for the configuration, the HTTP metrics or the driver; protocol reaching for anything — fails here,
//! and so does a new module nobody has placed in a layer.
//!
//! Test code (`tests.rs`, `*_tests.rs`, a `tests/` folder, a `#[cfg(test)] mod … { … }`) may
//! use any helper: it is not part of the build graph. Comments are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each unit of the library and the units it may import, layer by layer from the bottom. A unit is a
/// top-level module of src/, or a module of `runtime/` (whose parts sit in different layers). `config`
/// (the clap definition of the whole command line) and `cli` (its subcommands) are one unit, the
/// command line: `config::Command` names each subcommand's arguments and the subcommands use its
/// parsers and config file.
const LAYERS: &[(&str, &[&str])] = &[
    // Leaves.
    ("protocol", &[]),
    ("secret", &[]),
    ("alloc", &[]),
    // Sans-IO policy, fan-out and ingest.
    ("auth", &["protocol"]),
    ("tls", &["protocol"]),
    ("admission", &[]),
    ("runtime::histogram", &[]),
    ("runtime::stats", &["admission", "runtime::histogram"]),
    ("http", &["auth", "protocol", "secret"]),
    ("fanout", &["protocol"]),
    ("ingest", &["fanout", "secret"]),
    // The runtime: the I/O-free core, then the ring and what it needs.
    (
        "runtime::core",
        &[
            "admission",
            "auth",
            "fanout",
            "http",
            "protocol",
            "runtime::stats",
            "tls",
        ],
    ),
    ("runtime::uring", &[]),
    ("runtime::kernel", &[]),
    ("runtime::listener", &[]),
    ("runtime::signals", &[]),
    (
        "runtime::wake",
        &["fanout", "runtime::stats", "runtime::uring"],
    ),
    (
        "runtime::driver",
        &[
            "fanout",
            "runtime::core",
            "runtime::listener",
            "runtime::stats",
            "runtime::uring",
            "runtime::wake",
            "tls",
        ],
    ),
    ("runtime", &[]),
    // Processes and the command line.
    (
        "cli",
        &[
            "admission",
            "auth",
            "http",
            "ingest",
            "protocol",
            "runtime::signals",
            "secret",
            "tls",
        ],
    ),
    (
        "server",
        &[
            "admission",
            "cli",
            "fanout",
            "http",
            "ingest",
            "runtime::core",
            "runtime::driver",
            "runtime::histogram",
            "runtime::kernel",
            "runtime::listener",
            "runtime::signals",
            "runtime::stats",
            "runtime::uring",
            "runtime::wake",
            "tls",
        ],
    ),
    ("lib", &[]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under src/ (`runtime/core/mod.rs` → `["runtime", "core"]`).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The unit a module path belongs to.
fn unit(path: &[String]) -> String {
    match path {
        [] => "lib".into(),
        [top, sub, ..] if top == "runtime" => format!("runtime::{sub}"),
        [top, ..] if top == "config" => "cli".into(),
        [top, ..] => top.clone(),
    }
}

fn is_test_file(rel: &Path) -> bool {
    let name = rel.file_name().expect("file name").to_string_lossy();
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || rel
            .parent()
            .is_some_and(|p| p.components().any(|c| c.as_os_str() == "tests"))
}

/// The code of a file: comments dropped, and each `#[cfg(test)] mod … {` left out up to its closing
/// `}` (at the start of a line: the source is rustfmt'ed).
fn code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    let mut in_tests = false;
    for (i, line) in lines.iter().enumerate() {
        let next = lines.get(i + 1).copied().unwrap_or("");
        if *line == "#[cfg(test)]" && next.starts_with("mod ") && next.ends_with('{') {
            in_tests = true;
        }
        if in_tests {
            in_tests = *line != "}";
            continue;
        }
        let line = match line.find("//") {
            // A `//` inside a string (a URL) keeps the line: no `crate::` follows one there.
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifier at the start of `text`.
fn ident(text: &str) -> &str {
    &text[..text.find(|c| !is_ident(c)).unwrap_or(text.len())]
}

/// The first segments of the paths named by the use tree starting at `text` (after `crate::`): one
/// path, or each item of a `{…}` group.
fn tree_heads(text: &str) -> Vec<Vec<String>> {
    if let Some(group) = text.strip_prefix('{') {
        let mut depth = 0;
        let mut heads = Vec::new();
        let mut item_start = true;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => item_start = true,
                c if item_start && is_ident(c) => {
                    item_start = false;
                    heads.extend(tree_heads(&group[i..]));
                }
                _ => {}
            }
        }
        return heads;
    }
    let first = ident(text);
    let rest = &text[first.len()..];
    match rest.strip_prefix("::") {
        Some(rest) if rest.starts_with('{') => tree_heads(rest)
            .into_iter()
            .map(|mut tail| {
                tail.insert(0, first.to_string());
                tail.truncate(2);
                tail
            })
            .collect(),
        Some(rest) => vec![vec![first.to_string(), ident(rest).to_string()]],
        None => vec![vec![first.to_string()]],
    }
}

/// Every (from, to) edge between units in src/, with a file that makes it.
fn edges() -> BTreeMap<(String, String), PathBuf> {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    let mut edges = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&root).expect("under src/").to_path_buf();
        if rel == Path::new("main.rs") || is_test_file(&rel) {
            continue;
        }
        let here = module_path(&rel);
        let from = unit(&here);
        let text = code(&std::fs::read_to_string(&file).expect("readable"));
        let mut targets: Vec<Vec<String>> = Vec::new();
        for (at, _) in text.match_indices("crate::") {
            if at > 0 && text[..at].ends_with(is_ident) {
                continue;
            }
            targets.extend(tree_heads(&text[at + "crate::".len()..]));
        }
        for (at, _) in text.match_indices("super::") {
            if at > 0 && (text[..at].ends_with(is_ident) || text[..at].ends_with("::")) {
                continue;
            }
            let mut rest = &text[at..];
            let mut up = 0;
            while let Some(r) = rest.strip_prefix("super::") {
                up += 1;
                rest = r;
            }
            let base = &here[..here.len().saturating_sub(up)];
            for tail in tree_heads(rest) {
                targets.push(base.iter().cloned().chain(tail).collect());
            }
        }
        for mut target in targets {
            // `super::*`, `crate::{self}`: the module itself.
            target.retain(|segment| !segment.is_empty() && segment != "self");
            let to = unit(&target);
            if to != from {
                edges
                    .entry((from.clone(), to))
                    .or_insert_with(|| rel.clone());
            }
        }
    }
    edges
}

#[test]
fn every_import_points_down_the_layers() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = LAYERS
        .iter()
        .map(|(unit, deps)| (*unit, deps.iter().copied().collect()))
        .collect();
    let found = edges();
    let mut wrong = Vec::new();
    for ((from, to), file) in &found {
        match allowed.get(from.as_str()) {
            None => wrong.push(format!("{}: unit `{from}` is in no layer", file.display())),
            Some(deps) if !deps.contains(to.as_str()) => wrong.push(format!(
                "{}: `{from}` imports `{to}`, not an edge of LAYERS",
                file.display()
            )),
            Some(_) => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
    // The list says what the code does: an allowed edge nothing uses any more is taken out.
    let unused: Vec<String> = LAYERS
        .iter()
        .flat_map(|(from, deps)| deps.iter().map(move |to| (*from, *to)))
        .filter(|(from, to)| !found.contains_key(&(from.to_string(), to.to_string())))
        .map(|(from, to)| format!("{from} → {to}"))
        .collect();
    assert!(
        unused.is_empty(),
        "edges in LAYERS no file makes: {unused:?}"
    );
}

#[test]
fn the_layers_form_no_cycle_and_each_unit_only_looks_down() {
    let position: BTreeMap<&str, usize> = LAYERS
        .iter()
        .enumerate()
        .map(|(i, (unit, _))| (*unit, i))
        .collect();
    assert_eq!(position.len(), LAYERS.len(), "a unit listed twice");
    // Listed bottom-up: every dependency is listed before its user, so the edges form no cycle.
    for (i, (unit, deps)) in LAYERS.iter().enumerate() {
        for dep in *deps {
            let at = position
                .get(dep)
                .unwrap_or_else(|| panic!("`{unit}` may import `{dep}`, which is in no layer"));
            assert!(
                at < &i,
                "`{unit}` may import `{dep}`, listed above it: a cycle"
            );
        }
    }
}

#[test]
fn the_scan_sees_grouped_and_relative_imports() {
    let heads = tree_heads("runtime::{core::Core, stats}, x");
    assert_eq!(heads, [vec!["runtime", "core"], vec!["runtime", "stats"]]);
    assert_eq!(
        tree_heads("{http, fanout::Symbol}")[1],
        ["fanout", "Symbol"]
    );
    let path = module_path(Path::new("runtime/core/mod.rs"));
    assert_eq!(unit(&path), "runtime::core");
    assert_eq!(unit(&module_path(Path::new("config/file.rs"))), "cli");
    assert!(is_test_file(Path::new("runtime/core/tests/sim.rs")));
    assert!(is_test_file(Path::new("fanout/symbols/index_tests.rs")));
    let text = "use a; // crate::x\n#[cfg(test)]\nmod tests {\n    use crate::y;\n}\nuse b;";
    assert_eq!(code(text), "use a; \nuse b;\n");
}
