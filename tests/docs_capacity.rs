//! docs/capacity.md cites `perf/RESULTS.md` by section: its "Sources" table maps each bracketed key to a
//! section heading. Every heading named there must be a heading of perf/RESULTS.md, word for word (code
//! quotes aside), so a renamed or removed section fails here; every key the text uses must be in the
//! table, and every key in the table must be used.

use std::collections::BTreeSet;
use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `[key]` citations in `text`: a bracketed lowercase word not followed by `(` (not a link).
fn citations(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (i, _) in text.match_indices('[') {
        let rest = &text[i + 1..];
        let Some(end) = rest.find(']') else { continue };
        let key = &rest[..end];
        let linked = rest[end + 1..].starts_with('(');
        if !key.is_empty() && !linked && key.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
            keys.insert(key.to_string());
        }
    }
    keys
}

#[test]
fn capacity_doc_cites_sections_that_exist_in_perf_results() {
    let doc = read("docs/capacity.md");
    let results = read("perf/RESULTS.md");
    // Headings word for word, code quotes left out (so the doc's flag checks do not read a harness flag
    // in a heading, e.g. `--tls`, as a ringcast flag).
    let headings: BTreeSet<String> = results
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim().replace('`', ""))
        .collect();

    let header = "| key | perf/RESULTS.md section |";
    let mut lines = doc.lines().skip_while(|l| *l != header);
    assert!(
        lines.next().is_some(),
        "docs/capacity.md: no table headed {header:?}"
    );
    let mut table = Vec::new();
    for line in lines.take_while(|l| l.starts_with('|')) {
        if line.starts_with("|---") {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 2, "docs/capacity.md sources row: {line}");
        let key = cells[0]
            .strip_prefix('[')
            .and_then(|k| k.strip_suffix(']'))
            .unwrap_or_else(|| panic!("docs/capacity.md sources row without a [key]: {line}"));
        table.push((key.to_string(), cells[1].to_string()));
    }
    assert!(table.len() >= 8, "only {} sources", table.len());

    let missing: Vec<_> = table
        .iter()
        .filter(|(_, heading)| !headings.contains(&heading.replace('`', "")))
        .map(|(key, heading)| format!("[{key}] {heading:?}"))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/capacity.md cites sections perf/RESULTS.md no longer has (rename them in both): {missing:#?}"
    );

    let defined: BTreeSet<String> = table.iter().map(|(k, _)| k.clone()).collect();
    // Everything but the sources table's own rows.
    let body: String = doc
        .lines()
        .filter(|l| !l.starts_with("| ["))
        .collect::<Vec<_>>()
        .join("\n");
    let used = citations(&body);
    let undefined: Vec<_> = used.difference(&defined).collect();
    assert!(
        undefined.is_empty(),
        "docs/capacity.md cites keys its sources table lacks: {undefined:?}"
    );
    let unused: Vec<_> = defined.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "docs/capacity.md's sources table has keys the text never cites: {unused:?}"
    );
}
