//! The config file as docs/config.md states it: `ringcast serve --config FILE` / `RINGCAST_CONFIG`, precedence
//! flags > environment > file > defaults, `ringcast config --print` (the effective configuration, secrets
//! masked, usable as a file again) and `ringcast config --check FILE` (unknown keys and bad values with their
//! line), and the annotated example deploy/ringcast.toml accepted as it is and uncommented.

mod common;

use std::net::SocketAddr;
use std::process::Output;

use common::*;

/// `ringcast <args>` to completion with only `env` set.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(args).env_clear().envs(env.iter().copied());
    cmd.output().unwrap()
}

/// The `key = value` lines of `--print`'s output, without the comments saying where each came from.
fn settings(printed: &str) -> Vec<String> {
    printed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split("  #").next().unwrap().trim().to_string())
        .collect()
}

const FILE: &str = r#"# a deployment
listen = "127.0.0.1:4555"
workers = 1
max-backlog = 100000
slow-policy = "drop"
drain-window = "1h"
ping-interval = "20s"
echo = false
no-page = true
prefix = "t:"
log = "warn"
metrics-token = "file-token"
"#;

#[test]
fn a_file_round_trips_through_print_and_print_again_is_the_same() {
    let dir = TempDir::new("round");
    let path = dir.file("a.toml", FILE);
    let out = run(&["config", "--print", "--config", &path], &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    // Every value of the file is in effect, said to come from its line.
    for (line, kv) in FILE.lines().enumerate().skip(1) {
        if kv.starts_with("metrics-token") {
            continue;
        }
        assert!(
            printed.contains(&format!("{kv}  # from {path}:{}", line + 1)),
            "{kv} (line {}) not in effect:\n{printed}",
            line + 1
        );
    }
    assert!(
        printed.contains("metrics-token = \"***\""),
        "a secret is masked:\n{printed}"
    );
    assert!(!printed.contains("file-token"), "{printed}");
    assert!(printed.contains("max-headers = 32  # default"), "{printed}");
    // The output is a config file: read back, it gives the same configuration (the secret aside).
    let again_path = dir.file("b.toml", &printed.replace("\"***\"", "\"file-token\""));
    let again = run(&["config", "--print", "--config", &again_path], &[]);
    assert!(again.status.success(), "{}", output_text(&again));
    assert_eq!(
        settings(&printed),
        settings(&String::from_utf8(again.stdout).unwrap())
    );
}

#[test]
fn flags_win_over_the_environment_which_wins_over_the_file() {
    let dir = TempDir::new("precedence");
    let path = dir.file(
        "p.toml",
        "max-backlog = 1000\nmax-headers = 40\nworkers = 3\nno-page = true\n",
    );
    let env = [
        ("RINGCAST_CONFIG", path.as_str()),
        ("RINGCAST_MAX_HEADERS", "50"),
        ("RINGCAST_WORKERS", "2"),
    ];
    let out = run(&["config", "--print", "--", "--workers", "1"], &env);
    assert!(out.status.success(), "{}", output_text(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    for expected in [
        format!("max-backlog = 1000  # from {path}:1"),
        "max-headers = 50  # from RINGCAST_MAX_HEADERS".to_string(),
        "workers = 1  # from --workers".to_string(),
        format!("no-page = true  # from {path}:4"),
        "max-symbols-per-conn = 256  # default".to_string(),
    ] {
        assert!(printed.contains(&expected), "{expected:?} in:\n{printed}");
    }
}

#[test]
fn serve_runs_with_the_file_and_a_flag_wins_over_it() {
    let dir = TempDir::new("serve");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let path = dir.file(
        "s.toml",
        &format!(
            "listen = \"{addr}\"\nworkers = 1\nmax-symbols-per-conn = 2\nmetrics-token = \"t\"\n\
             redis = \"redis://127.0.0.1:{}\"\nlog = \"warn\"\n",
            free_port()
        ),
    );
    let mut cmd = ringcast_command(&["serve"], &[("RINGCAST_CONFIG", &path)]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let server = Server::adopt(cmd.spawn().unwrap(), addr);
    assert_eq!(server.get("/metrics").0, 403, "metrics-token from the file");
    let mut ws = server.ws();
    send_text(&mut ws, "E1,E2,E3");
    assert_eq!(read_reply(&mut ws)["error"], "too_many_symbols");
    drop(server);

    let mut cmd = ringcast_command(
        &["serve", "--config", &path, "--max-symbols-per-conn", "3"],
        &[],
    );
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let server = Server::adopt(cmd.spawn().unwrap(), addr);
    let mut ws = server.ws();
    send_text(&mut ws, "E1,E2,E3");
    assert_eq!(read_reply(&mut ws)["type"], "subscribed", "the flag wins");
}

#[test]
fn check_names_unknown_keys_and_bad_values_with_their_lines() {
    let dir = TempDir::new("check");
    let path = dir.file(
        "bad.toml",
        "listen = \"0.0.0.0:3001\"\nworkres = 2\nmax-backlog = -5\nidle-timeout = \"1 fortnight\"\n\
         slow-policy = \"maybe\"\n",
    );
    let out = run(&["config", "--check", &path], &[]);
    let msg = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    for expected in [
        format!("{path}:2: unknown key `workres` (did you mean `workers`?)"),
        format!("{path}:3: `max-backlog = -5`"),
        format!("{path}:4: `idle-timeout = 1 fortnight`"),
        format!("{path}:5: `slow-policy = maybe`"),
        "4 problems".to_string(),
    ] {
        assert!(msg.contains(&expected), "{expected:?} in:\n{msg}");
    }
    // `serve` refuses the same file with the same lines, once, before starting anything.
    let out = run(&["serve", "--config", &path], &[]);
    let served = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{served}");
    assert!(
        served.contains(&format!("{path}:2: unknown key")),
        "{served}"
    );
    assert_eq!(
        served.matches("unknown key `workres`").count(),
        1,
        "{served}"
    );

    let good = dir.file("good.toml", "workers = 1\n");
    let out = run(&["config", "--check", &good], &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("1 setting, no problems"),
        "{}",
        output_text(&out)
    );

    let out = run(&["serve", "--config", "/nonexistent/ringcast.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        output_text(&out).contains("/nonexistent/ringcast.toml: cannot read it"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn the_example_file_is_valid_as_shipped_and_uncommented() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/ringcast.toml"))
            .unwrap();
    let dir = TempDir::new("example");
    let shipped = dir.file("shipped.toml", &example);
    let out = run(&["config", "--check", &shipped], &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    // Every key with a default, uncommented: the defaults, and each key known.
    let uncommented: String = example
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| l.contains(" = ") && !l.contains('…') && !l.starts_with(' '))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(uncommented.lines().count() > 30, "{uncommented}");
    let all = dir.file("all.toml", &uncommented);
    let out = run(&["config", "--check", &all], &[]);
    assert!(out.status.success(), "{}\n{uncommented}", output_text(&out));
}
