//! `ringcast publish`: the seed's `ticker.set([...])`. Validates every tick, then in one MULTI/EXEC
//! stores each in the hash `{prefix}ticks` (field = symbol, value = the tick's exact JSON) and publishes
//! the message on the channel `{prefix}ticks`.

use std::io::Read;
use std::path::PathBuf;

use clap::Args;

use super::{CliError, RedisArgs};
use crate::ingest::Keys;
use crate::ingest::tick::{DEFAULT_MAX_TICK_BYTES, parse_message};

/// `ringcast publish [TICK_JSON ...] [--file F]`
#[derive(Args, Debug, Clone)]
pub struct PublishArgs {
    /// Ticks to publish: each argument is one tick object (`{"symbol":"EFERT","price":"55.00"}`) or a JSON
    /// array of them; `-` reads standard input. Without arguments and `--file`, standard input is read.
    pub ticks: Vec<String>,
    /// Read ticks from this file (`-` = standard input): one JSON message, or one message per line.
    #[arg(long, short)]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub redis: RedisArgs,
}

/// A validated tick, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedTick {
    pub symbol: String,
    pub raw: Vec<u8>,
}

/// Run `ringcast publish`; returns the exit code.
pub fn main(args: PublishArgs) -> i32 {
    super::finish(run(&args))
}

fn run(args: &PublishArgs) -> Result<(), CliError> {
    let ticks = read_ticks(args)?;
    let mut target = args.redis.target()?;
    let receivers = target.store_and_publish(&ticks)?;
    let mut names: Vec<&str> = ticks.iter().map(|t| t.symbol.as_str()).take(10).collect();
    if ticks.len() > names.len() {
        names.push("…");
    }
    println!(
        "published {} tick{} ({}) on {}; {} server{} received {}",
        ticks.len(),
        plural(ticks.len()),
        names.join(", "),
        target.channel(),
        receivers,
        plural(receivers as usize),
        if ticks.len() == 1 { "it" } else { "them" },
    );
    if receivers == 0 {
        println!(
            "(no ringcast server is subscribed right now; servers get the stored ticks in their next snapshot)"
        );
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Every tick of every source, validated; all problems reported together.
fn read_ticks(args: &PublishArgs) -> Result<Vec<OwnedTick>, CliError> {
    let mut sources: Vec<(String, Vec<u8>)> = Vec::new();
    let mut stdin_used = false;
    let mut read_stdin = |label: &str| -> Result<(String, Vec<u8>), CliError> {
        if stdin_used {
            return Err(CliError::Usage(
                "standard input can be read only once".into(),
            ));
        }
        stdin_used = true;
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| CliError::Other(format!("cannot read standard input: {e}")))?;
        Ok((label.to_string(), buf))
    };
    for (i, arg) in args.ticks.iter().enumerate() {
        if arg == "-" {
            sources.push(read_stdin("standard input")?);
        } else {
            sources.push((format!("argument {}", i + 1), arg.clone().into_bytes()));
        }
    }
    match &args.file {
        Some(path) if path.as_os_str() == "-" => sources.push(read_stdin("standard input")?),
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| {
                CliError::Usage(format!("--file: cannot read {}: {e}", path.display()))
            })?;
            sources.push((path.display().to_string(), bytes));
        }
        None if args.ticks.is_empty() => sources.push(read_stdin("standard input")?),
        None => {}
    }
    validate(&sources)
}

/// Validate sources (label, bytes). A source is one JSON message (a tick or an array of ticks) or, if it
/// is not one JSON value but has several lines, one message per line (JSON Lines).
pub fn validate(sources: &[(String, Vec<u8>)]) -> Result<Vec<OwnedTick>, CliError> {
    let mut ticks = Vec::new();
    let mut problems = Vec::new();
    for (label, bytes) in sources {
        let whole_is_json = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        let lines: Vec<&[u8]> = bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.trim_ascii().is_empty())
            .collect();
        let messages: Vec<(String, &[u8])> = if whole_is_json || lines.len() <= 1 {
            vec![(label.clone(), bytes.as_slice())]
        } else {
            lines
                .iter()
                .enumerate()
                .map(|(n, l)| (format!("{label}, line {}", n + 1), *l))
                .collect()
        };
        for (where_, message) in messages {
            let (good, bad) = parse_message(message, DEFAULT_MAX_TICK_BYTES);
            for b in bad {
                problems.push(format!("{where_}, {b}"));
            }
            ticks.extend(good.into_iter().map(|t| OwnedTick {
                symbol: t.symbol.to_string(),
                raw: t.raw.to_vec(),
            }));
        }
    }
    if !problems.is_empty() {
        return Err(CliError::Usage(format!(
            "refusing to publish: {} bad tick{} (nothing was published):\n  {}\n\
             a tick is a JSON object with a string \"symbol\" (1-32 printable ASCII characters, no \
             spaces, commas or quotes), e.g. {{\"symbol\":\"EFERT\",\"price\":\"55.00\"}}",
            problems.len(),
            plural(problems.len()),
            problems.join("\n  ")
        )));
    }
    if ticks.is_empty() {
        return Err(CliError::Usage(
            "nothing to publish (give tick JSON as arguments, with --file, or on standard input)"
                .into(),
        ));
    }
    Ok(ticks)
}

/// The pub/sub message for `ticks`: the single tick as is, or a JSON array of their exact texts.
pub fn message(ticks: &[OwnedTick]) -> Vec<u8> {
    if let [one] = ticks {
        return one.raw.clone();
    }
    let mut out = Vec::with_capacity(ticks.iter().map(|t| t.raw.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, t) in ticks.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&t.raw);
    }
    out.push(b']');
    out
}

/// MULTI; HSET {prefix}ticks symbol tick …; PUBLISH {prefix}ticks message; EXEC. Returns how many
/// subscribers received the message.
pub fn store_and_publish(
    con: &mut redis::Connection,
    keys: &Keys,
    ticks: &[OwnedTick],
) -> redis::RedisResult<i64> {
    let mut hset = redis::cmd("HSET");
    hset.arg(&keys.ticks);
    for t in ticks {
        hset.arg(&t.symbol).arg(&t.raw);
    }
    let (receivers,): (i64,) = redis::pipe()
        .atomic()
        .add_command(hset)
        .ignore()
        .cmd("PUBLISH")
        .arg(&keys.ticks)
        .arg(message(ticks))
        .query(con)?;
    Ok(receivers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> (String, Vec<u8>) {
        ("argument 1".into(), text.as_bytes().to_vec())
    }

    #[test]
    fn message_is_the_exact_ticks() {
        let ticks = validate(&[src(r#"[{"symbol":"A", "p":1}, {"symbol":"B"}]"#)]).unwrap();
        assert_eq!(
            message(&ticks),
            br#"[{"symbol":"A", "p":1},{"symbol":"B"}]"#
        );
        let one = validate(&[src(" {\"symbol\":\"A\"}\n")]).unwrap();
        assert_eq!(message(&one), br#"{"symbol":"A"}"#);
    }

    #[test]
    fn json_lines() {
        let ticks = validate(&[src("{\"symbol\":\"A\"}\n\n{\"symbol\":\"B\"}\n")]).unwrap();
        let names: Vec<&str> = ticks.iter().map(|t| t.symbol.as_str()).collect();
        assert_eq!(names, ["A", "B"]);
    }

    #[test]
    fn bad_ticks_are_named() {
        let err = validate(&[src(r#"[{"symbol":"A"},{"price":"1"}]"#), src("nope")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("2 bad ticks"), "{err}");
        assert!(err.contains("tick #2: no `symbol` field"), "{err}");
        assert!(err.contains("not valid JSON"), "{err}");
    }
}
