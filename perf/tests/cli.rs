//! The `ringcast-load` binary's command line: help for every subcommand, errors that name the flag, the
//! value and what a good one looks like, all before anything is started.

use std::process::{Command, Output};

fn load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringcast-load"))
        .args(args)
        .output()
        .expect("run ringcast-load")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn every_subcommand_has_help() {
    for (sub, flags) in [
        (
            "run",
            &[
                "--scenario",
                "--conns",
                "--rate",
                "--steps",
                "--tls",
                "--server-pid",
                "--out",
                "--via-haproxy",
                "--haproxy-core",
                "--redis-cluster-masters",
                "--feed-shards",
            ][..],
        ),
        (
            "client",
            &[
                "--target",
                "--conns",
                "--offset",
                "--deadline",
                "--tls",
                "--ca",
            ][..],
        ),
        ("plot", &["RESULT.json", "OUT.svg"][..]),
        (
            "selftest",
            &["--conns", "--batch", "--duration", "--blaster-cores"][..],
        ),
    ] {
        for help in [vec![sub, "--help"], vec![sub, "-h"], vec!["help", sub]] {
            let out = load(&help);
            let stdout = text(&out.stdout);
            assert!(
                out.status.success(),
                "{help:?}: {:?} {}",
                out.status,
                text(&out.stderr)
            );
            for flag in flags {
                assert!(
                    stdout.contains(flag),
                    "{help:?} does not mention {flag}:\n{stdout}"
                );
            }
        }
    }
    let out = load(&["--help"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success());
    for sub in ["run", "client", "plot", "selftest"] {
        assert!(
            stdout.contains(sub),
            "--help does not list `{sub}`:\n{stdout}"
        );
    }
    let out = load(&["--version"]);
    assert!(out.status.success() && text(&out.stdout).starts_with("ringcast-load "));
}

#[test]
fn a_bad_value_names_the_flag_the_value_and_what_to_give() {
    for (args, want) in [
        (
            &["run", "--conns", "ten"][..],
            &["--conns", "'ten'", "such as 10000"][..],
        ),
        (&["run", "--rate", "-5"][..], &["--rate", "'-5'", "≥ 0"][..]),
        (
            &["run", "--duration", "1y"][..],
            &["--duration", "'1y'", "10s, 500ms, 2m or 1h"][..],
        ),
        (
            &["run", "--scenario", "burst"][..],
            &[
                "--scenario",
                "'burst'",
                "idle, fanout, latency, churn, slow",
            ][..],
        ),
        (
            &["run", "--conns", "2000000"][..],
            &["--conns", "'2000000'", "at most 1,000,000"][..],
        ),
        (
            &["run", "--conn", "5"][..],
            &["'--conn'", "similar argument exists: '--conns'"][..],
        ),
        (
            &["run", "--tls-cert", "c.pem", "--tls"][..],
            &["--tls-key"][..],
        ),
        (
            &["selftest", "--batch", "0"][..],
            &["--batch", "'0'", "at least 1"][..],
        ),
        (
            &["client", "--target", "localhost:3001"][..],
            &["--target", "'localhost:3001'", "127.0.0.1:3001"][..],
        ),
        (&["plot", "only.json"][..], &["OUT.svg"][..]),
    ] {
        let out = load(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        for w in want {
            assert!(stderr.contains(w), "{args:?}: no `{w}` in:\n{stderr}");
        }
        assert_eq!(
            stderr.matches("error:").count(),
            1,
            "{args:?}: printed once:\n{stderr}"
        );
    }
}

#[test]
fn values_take_separators_units_and_the_equals_form() {
    // Parsed, then refused for a reason after parsing (no server, nothing listening): the flags passed.
    let out = load(&["plot", "/nonexistent/a.json", "/nonexistent/out.svg"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("/nonexistent/a.json"));
    for args in [
        &["selftest", "--conns=1_000", "--duration", "500ms", "--help"][..],
        &[
            "run",
            "--duration=2m",
            "--warmup",
            "1s",
            "--conns",
            "10_000",
            "--help",
        ][..],
    ] {
        let out = load(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
}

#[test]
fn stall_flags_parse_and_what_does_not_fit_is_refused_before_anything_starts() {
    let out = load(&[
        "run",
        "--scenario",
        "latency",
        "--stall",
        "100",
        "--stall-at",
        "3s",
        "--stall-kind",
        "hog",
        "--help",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("--stall-kind"));
    for (args, want) in [
        (&["run", "--stall", "0"][..], &["--stall", "'0'", "> 0"][..]),
        (
            &["run", "--stall", "100", "--stall-kind", "freeze"][..],
            &["--stall-kind", "'freeze'", "stop", "hog"][..],
        ),
        (&["run", "--stall-at", "3"][..], &["--stall <MS>"][..]),
    ] {
        let out = load(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        for w in want {
            assert!(stderr.contains(w), "{args:?}: no `{w}` in:\n{stderr}");
        }
    }
    // Parsed, but not a run a stall fits in: refused before Redis, the server or a client starts.
    for (args, want) in [
        (
            &["run", "--scenario", "idle", "--stall", "100"][..],
            "--scenario latency only",
        ),
        (
            &[
                "run",
                "--duration",
                "2",
                "--stall",
                "100",
                "--stall-at",
                "2",
            ][..],
            "must end before the measured phase",
        ),
    ] {
        let out = load(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: no `{want}` in:\n{stderr}");
    }
}

/// `--via-haproxy` and `--redis-cluster-masters` with a server they cannot front or feed: refused by
/// name before anything starts (exit 1).
#[test]
fn fleet_flags_refuse_what_they_cannot_combine_with() {
    for (args, want) in [
        (
            &["run", "--server", "node", "--via-haproxy"][..],
            "--via-haproxy needs --server ringcast",
        ),
        (
            &["run", "--server", "none", "--via-haproxy"][..],
            "--via-haproxy needs --server ringcast",
        ),
        (
            &["run", "--server", "node", "--redis-cluster-masters", "3"][..],
            "--redis-cluster-masters: the node baseline reads one Redis only",
        ),
    ] {
        let out = load(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}
