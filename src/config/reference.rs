//! The operator's references, generated from clap's definition of `serve` (flags, variables, defaults,
//! help): the table of `docs/config.md` and the annotated example `deploy/ringcast.toml`.
//! `tests/docs_consistent.rs` compares both files with what these functions produce (and rewrites them
//! with `RINGCAST_REGENERATE=1`), so neither can drift from the code.

use clap::{Arg, CommandFactory};

use super::Cli;
use super::file::{is_switch, settable_args, toml_value};

/// Where the generated table starts and ends in `docs/config.md`.
pub const TABLE_BEGIN: &str =
    "<!-- generated from src/config.rs by config::reference: do not edit -->";
pub const TABLE_END: &str = "<!-- end of generated table -->";

fn help(arg: &Arg) -> String {
    let text = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    text.trim_end_matches('.').replace('|', "/")
}

fn env(arg: &Arg) -> Option<String> {
    arg.get_env().map(|e| e.to_string_lossy().into_owned())
}

fn default(arg: &Arg) -> Option<String> {
    if is_switch(arg) {
        return None;
    }
    let values: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// `--listen <LISTEN>`, `--config <FILE>`, `--echo`: as `--help` shows it.
fn flag(arg: &Arg) -> String {
    let long = arg.get_long().expect("long flag");
    if is_switch(arg) {
        return format!("--{long}");
    }
    let name = arg
        .get_value_names()
        .and_then(|n| n.first())
        .map(|n| n.to_string())
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
    format!("--{long} <{name}>")
}

/// The table of every `serve` flag: flag, environment variable, default, what it does.
pub fn markdown_table() -> String {
    let cmd = Cli::command();
    let serve = cmd.find_subcommand("serve").expect("serve");
    let mut out =
        String::from("| flag | environment | default | what it does |\n|---|---|---|---|\n");
    for arg in serve.get_arguments().filter(|a| a.get_long().is_some()) {
        let cell = |v: Option<String>| v.map_or("—".to_string(), |v| format!("`{v}`"));
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            flag(arg),
            cell(env(arg)),
            cell(default(arg)),
            help(arg)
        ));
    }
    out
}

/// `text` as `# ` comment lines of at most ~100 characters.
fn comment(text: &str, out: &mut String) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 100 && line.len() > 1 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

/// `deploy/ringcast.toml`: every key, commented out at its default, under its help text.
pub fn example_file() -> String {
    let mut out = String::new();
    comment(
        "ringcast.toml: settings of `ringcast serve --config /etc/ringcast/ringcast.toml` (or \
         RINGCAST_CONFIG=…). Generated from the flag definitions in src/config.rs, like the table in \
         docs/config.md (RINGCAST_REGENERATE=1 cargo test --test docs_consistent rewrites both).",
        &mut out,
    );
    comment(
        "Each key is a `serve` flag without its dashes. A flag on the command line wins over its \
         environment variable, which wins over this file, which wins over the default. Durations: 250ms, \
         10s, 5m, 1h. Every line below is commented out at its default: uncomment what you change. \
         `ringcast config --check FILE` checks a file; `ringcast config --print` shows what the server \
         would run with (secrets masked).",
        &mut out,
    );
    for arg in settable_args() {
        let long = arg.get_long().expect("long");
        out.push('\n');
        let var = env(&arg).map(|v| format!(" ({v})")).unwrap_or_default();
        comment(&format!("{}.{var}", help(&arg)), &mut out);
        match default(&arg) {
            _ if is_switch(&arg) => out.push_str(&format!("#{long} = false\n")),
            Some(d) => out.push_str(&format!("#{long} = {}\n", toml_value(&d))),
            None => out.push_str(&format!("#{long} = …  (not set by default)\n")),
        }
    }
    out
}
