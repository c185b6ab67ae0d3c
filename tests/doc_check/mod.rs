//! Reading the docs for tests/docs_consistent.rs: files of the repository, markdown tables, quoted spans.

pub mod help;
pub mod sources;

use std::path::Path;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The rows (cells trimmed, header and separator left out) of the first table whose header row starts
/// with `header` (e.g. "| code | when |").
pub fn table(doc: &str, header: &str) -> Vec<Vec<String>> {
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

pub fn unquote(cell: &str) -> &str {
    cell.trim_matches('`')
}

/// The text between `start` and the next `end` in `s`, for each occurrence.
pub fn between<'a>(s: &'a str, start: &str, end: char) -> Vec<&'a str> {
    s.match_indices(start)
        .filter_map(|(i, _)| {
            let rest = &s[i + start.len()..];
            rest.find(end).map(|j| &rest[..j])
        })
        .collect()
}

/// The identifier right after each occurrence of `start` in `s`.
pub fn idents_after<'a>(s: &'a str, start: &str) -> Vec<&'a str> {
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

/// `--flag <ARG>` → `--flag`.
pub fn flag_name(line: &str) -> &str {
    line.split([' ', '=']).next().unwrap()
}

/// The docs users read: docs/*.md and the README.
pub fn user_docs() -> Vec<(String, String)> {
    let mut docs: Vec<(String, String)> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| {
            let path = format!("docs/{name}");
            let text = read(&path);
            (path, text)
        })
        .collect();
    docs.push(("README.md".to_string(), read("README.md")));
    docs.sort();
    docs
}

/// Each `quoted` span of `text`.
pub fn quoted(text: &str) -> impl Iterator<Item = &str> {
    text.split('`').skip(1).step_by(2)
}
