//! `ringcast serve --config FILE` (or `RINGCAST_CONFIG`): a TOML file of `key = value` lines, one key per
//! `serve` flag (its long name without `--`, e.g. `max-backlog = 262144`) plus `log`. The keys are read
//! from clap's definition of `serve`, so a new flag gets its key with no extra work, and a value is
//! checked by the flag's own parser (the same message as on the command line, with the file's line).
//!
//! Precedence: a flag on the command line > its environment variable > the file > the default. The file
//! is applied by appending `--key=value` to the command line for each key that neither a flag nor a
//! variable set, then parsing again: one parser, one set of checks.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, CommandFactory, FromArgMatches};
use toml::de::{DeTable, DeValue};

use super::Cli;

/// The `serve` flag that names the file: not a key of the file itself.
const CONFIG_ARG: &str = "config";

/// The command line definition, with negative numbers read as values (so `--rate -5` is refused for
/// being negative rather than "unexpected argument '-5'").
pub fn command() -> clap::Command {
    let mut cmd = Cli::command().allow_negative_numbers(true);
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(name, |s| s.allow_negative_numbers(true));
    }
    cmd
}

/// The arguments a config file can set, in `--help` order: the global `--log`, then every `serve` flag
/// but `--config`.
pub fn settable_args() -> Vec<Arg> {
    let cmd = Cli::command();
    let serve = cmd
        .find_subcommand("serve")
        .expect("serve subcommand")
        .clone();
    cmd.get_arguments()
        .filter(|a| a.is_global_set())
        .chain(serve.get_arguments())
        .filter(|a| a.get_long().is_some_and(|l| l != CONFIG_ARG))
        .cloned()
        .collect()
}

/// Whether `arg` is a switch (`--echo`): `true`/`false` in a file.
pub fn is_switch(arg: &Arg) -> bool {
    !arg.get_action().takes_values()
}

/// One `key = value` of a file, as command-line text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    /// The value as the flag would take it (`true`/`false` for a switch).
    pub value: String,
    /// 1-based line of the key.
    pub line: usize,
}

/// Something wrong in a file, on `line` when it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<usize>,
    pub message: String,
}

/// A config file that could not be used: every problem found, not only the first.
#[derive(Debug)]
pub struct FileError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "config file {}: {n} problem{}",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            match p.line {
                Some(line) => write!(f, "\n  {}:{line}: {}", self.path.display(), p.message)?,
                None => write!(f, "\n  {}: {}", self.path.display(), p.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for FileError {}

/// A file read and checked: every setting is a known key with a value its flag accepts.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub settings: Vec<Setting>,
}

impl ConfigFile {
    /// Read and check `path` (all problems reported at once).
    pub fn load(path: &Path) -> Result<ConfigFile, FileError> {
        let fail = |problems| FileError {
            path: path.to_path_buf(),
            problems,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            fail(vec![Problem {
                line: None,
                message: format!(
                    "cannot read it: {e} (--config / RINGCAST_CONFIG names the file; \
                     deploy/ringcast.toml is an example)"
                ),
            }])
        })?;
        let (settings, problems) = parse(&text);
        if problems.is_empty() {
            Ok(ConfigFile {
                path: path.to_path_buf(),
                settings,
            })
        } else {
            Err(fail(problems))
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The settings of a file's text and its problems: TOML syntax, unknown keys, values of the wrong type or
/// refused by the flag's parser.
pub fn parse(text: &str) -> (Vec<Setting>, Vec<Problem>) {
    let (table, errors) = DeTable::parse_recoverable(text);
    let mut problems: Vec<Problem> = Vec::new();
    for e in &errors {
        let line = e.span().map(|s| line_of(text, s.start));
        // The parser recovers and may report one mistake twice: the first report per line is enough.
        if !problems.iter().any(|p| p.line == line) {
            problems.push(Problem {
                line,
                message: format!("not TOML: {}", e.message()),
            });
        }
    }
    let args = settable_args();
    let mut settings = Vec::new();
    for (key, value) in table.get_ref().iter() {
        let line = line_of(text, key.span().start);
        let mut problem = |message: String| {
            problems.push(Problem {
                line: Some(line),
                message,
            })
        };
        let name = key.get_ref().as_ref();
        let Some(arg) = args.iter().find(|a| a.get_long() == Some(name)) else {
            let hint = match closest(name, args.iter().filter_map(|a| a.get_long())) {
                Some(near) => format!(" (did you mean `{near}`?)"),
                None => String::new(),
            };
            problem(format!(
                "unknown key `{name}`{hint}: the keys are the flags of `ringcast serve --help` \
                 without `--` (deploy/ringcast.toml lists them all)"
            ));
            continue;
        };
        let text_value = match (value.get_ref(), is_switch(arg)) {
            (DeValue::Boolean(b), _) => b.to_string(),
            (DeValue::String(s), false) => s.to_string(),
            (DeValue::Integer(i), false) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => n.to_string(),
                Err(_) => {
                    problem(format!("`{name}`: {} is out of range", i.as_str()));
                    continue;
                }
            },
            (other, true) => {
                problem(format!(
                    "`{name}` is a switch: write `{name} = true` or `{name} = false`, not a {}",
                    other.type_str()
                ));
                continue;
            }
            (other, false) => {
                problem(format!(
                    "`{name}` takes one value (a string or a number, e.g. {}), not a{} {}",
                    example(arg),
                    if other.is_array() { "n" } else { "" },
                    other.type_str()
                ));
                continue;
            }
        };
        if !is_switch(arg)
            && let Err(e) = check_value(arg, &text_value)
        {
            problem(format!("`{name} = {text_value}`: {}", clap_reason(&e)));
            continue;
        }
        settings.push(Setting {
            key: name.to_string(),
            value: text_value,
            line,
        });
    }
    (settings, problems)
}

/// Run `arg`'s own parser on `value` (alone: without the flags it requires).
fn check_value(arg: &Arg, value: &str) -> Result<(), clap::Error> {
    let long = arg.get_long().expect("long");
    clap::Command::new("ringcast")
        .no_binary_name(true)
        .arg(
            arg.clone()
                .required(false)
                .requires(clap::builder::Resettable::Reset)
                .global(false),
        )
        .try_get_matches_from([format!("--{long}={value}")])
        .map(|_| ())
}

/// An example value for `arg` in messages: its default, else `"…"`.
fn example(arg: &Arg) -> String {
    match arg.get_default_values().first() {
        Some(d) => toml_value(&d.to_string_lossy()),
        None => "\"…\"".into(),
    }
}

/// The reason in a clap error, without its `error: ` prefix and usage lines.
pub fn clap_reason(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("").trim();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// The known key nearest to `name` (edit distance ≤ 3), for "did you mean".
fn closest<'a>(name: &str, keys: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    keys.map(|k| (edit_distance(name, k), k))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Why `ringcast` could not start from its command line, environment and config file.
#[derive(Debug)]
pub enum StartError {
    /// A flag or variable (clap's own message).
    Clap(clap::Error),
    /// The config file.
    File(FileError),
}

impl From<clap::Error> for StartError {
    fn from(e: clap::Error) -> StartError {
        StartError::Clap(e)
    }
}

impl StartError {
    /// Print the error once, on stderr, and exit (2 for usage errors; 0 for `--help`/`--version`).
    pub fn exit(self, argv: &[OsString]) -> ! {
        match self {
            StartError::Clap(err) => {
                let argv: Vec<String> = argv
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect();
                let notes: Vec<String> = [
                    super::env_source_note(&err, &argv),
                    super::negative_number_note(&err),
                ]
                .into_iter()
                .flatten()
                .collect();
                if notes.is_empty() {
                    err.exit()
                }
                // clap's first line, then where the value came from / what to do, then the rest.
                let text = err.render().to_string();
                let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
                eprintln!("{first}\n{}\n{rest}", notes.join("\n"));
                std::process::exit(err.exit_code());
            }
            StartError::File(err) => {
                eprintln!("ringcast: {err}");
                std::process::exit(2);
            }
        }
    }
}

/// A command line resolved with its config file: the parsed [`Cli`], clap's matches of `serve` (for
/// where each value came from) and the keys the file supplied (key → line).
pub struct Resolved {
    pub cli: Cli,
    pub serve: Option<ArgMatches>,
    pub file: Option<PathBuf>,
    pub from_file: BTreeMap<String, usize>,
}

/// Parse `argv` (program name first); for `serve`, apply its config file.
pub fn resolve(argv: &[OsString]) -> Result<Resolved, StartError> {
    let cmd = command();
    let matches = cmd.clone().try_get_matches_from(argv)?;
    let path = match matches.subcommand() {
        Some(("serve", sub)) => sub.get_one::<PathBuf>(CONFIG_ARG).cloned(),
        _ => None,
    };
    let Some(path) = path else {
        let cli = Cli::from_arg_matches(&matches)?;
        let serve = serve_matches(&matches);
        return Ok(Resolved {
            cli,
            serve,
            file: None,
            from_file: BTreeMap::new(),
        });
    };
    let file = ConfigFile::load(&path).map_err(StartError::File)?;
    let sub = serve_matches(&matches).expect("serve");
    let mut merged = argv.to_vec();
    let mut from_file = BTreeMap::new();
    let args = settable_args();
    for s in &file.settings {
        let arg = args
            .iter()
            .find(|a| a.get_long() == Some(s.key.as_str()))
            .expect("checked key");
        let set_elsewhere = matches!(
            sub.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if set_elsewhere {
            continue;
        }
        if is_switch(arg) {
            // A switch is off unless given: `false` needs nothing on the command line.
            if s.value == "true" {
                merged.push(format!("--{}", s.key).into());
            }
        } else {
            merged.push(format!("--{}={}", s.key, s.value).into());
        }
        from_file.insert(s.key.clone(), s.line);
    }
    let matches = cmd.try_get_matches_from(&merged)?;
    Ok(Resolved {
        cli: Cli::from_arg_matches(&matches)?,
        serve: serve_matches(&matches),
        file: Some(path),
        from_file,
    })
}

fn serve_matches(matches: &ArgMatches) -> Option<ArgMatches> {
    match matches.subcommand() {
        Some(("serve", sub)) => Some(sub.clone()),
        _ => None,
    }
}

/// A value as TOML: an integer when it is one (no sign, no leading zero), else a basic string.
pub fn toml_value(text: &str) -> String {
    let integer = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'))
        && text.parse::<i64>().is_ok();
    if integer {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A value to show: secrets (flags whose environment value `--help` hides) masked; a URL keeps all but its
/// password.
pub fn shown_value(arg: &Arg, value: &str) -> String {
    if !arg.is_hide_env_values_set() {
        value.to_string()
    } else if value.contains("://") {
        crate::secret::redact_url(value)
    } else {
        crate::secret::MASK.to_string()
    }
}

/// The effective configuration of `serve` as a config file (secrets masked), each line saying where its
/// value came from.
pub fn effective(resolved: &Resolved) -> String {
    let sub = resolved.serve.as_ref().expect("serve matches");
    let mut out = String::from(
        "# ringcast serve: effective configuration (flags > environment > config file > defaults).\n\
         # Secrets are masked (***); every other line can be used as a config file as it is.\n",
    );
    for arg in settable_args() {
        let long = arg.get_long().expect("long");
        let id = arg.get_id().as_str();
        let in_file = |line: &usize| match &resolved.file {
            Some(path) => format!("from {}:{line}", path.display()),
            None => format!("from --{long}"),
        };
        let source = match sub.value_source(id) {
            None => {
                out.push_str(&format!("# {long}: not set\n"));
                continue;
            }
            // A switch set to `false` in the file.
            Some(ValueSource::DefaultValue) => match resolved.from_file.get(long) {
                Some(line) => in_file(line),
                None => "default".to_string(),
            },
            Some(ValueSource::EnvVariable) => format!(
                "from {}",
                arg.get_env()
                    .map(|e| e.to_string_lossy())
                    .unwrap_or_default()
            ),
            Some(_) => match resolved.from_file.get(long) {
                Some(line) => in_file(line),
                None => format!("from --{long}"),
            },
        };
        let value = if is_switch(&arg) {
            sub.get_one::<bool>(id)
                .copied()
                .unwrap_or(false)
                .to_string()
        } else {
            let raw = sub
                .get_raw(id)
                .and_then(|mut v| v.next())
                .map(|v| v.to_string_lossy().into_owned())
                .unwrap_or_default();
            toml_value(&shown_value(&arg, &raw))
        };
        out.push_str(&format!("{long} = {value}  # {source}\n"));
    }
    out
}

#[cfg(test)]
mod tests;
