use super::*;
use clap::CommandFactory;

#[test]
fn the_definitions_are_consistent() {
    Cli::command().debug_assert();
}

fn parse(line: &str) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("ringcast-load").chain(line.split_whitespace()))
}

#[test]
fn numbers_take_separators_and_durations_take_units() {
    let Cmd::Run(r) = parse("run --conns 10_000 --duration 2m --warmup 500ms --timeout 1h")
        .unwrap()
        .cmd
    else {
        panic!("not run")
    };
    assert_eq!(r.conns, Some(10_000));
    assert_eq!(r.duration, Some(120.0));
    assert_eq!(r.warmup, 0.5);
    assert_eq!(r.timeout, Some(3600.0));
}

#[test]
fn fleet_flags_parse() {
    let Cmd::Run(r) = parse(
        "run --scenario fanout --via-haproxy --haproxy-core 1 --haproxy-processes 2 \
         --haproxy-bin /usr/sbin/haproxy --redis-cluster-masters 3 --feed-shards 8",
    )
    .unwrap()
    .cmd
    else {
        panic!("not run")
    };
    let f = &r.fleet;
    assert!(f.via_haproxy);
    assert_eq!(
        (
            f.haproxy_core.as_str(),
            f.haproxy_processes,
            f.haproxy_bin.as_str()
        ),
        ("1", Some(2), "/usr/sbin/haproxy")
    );
    assert_eq!((f.redis_cluster_masters, f.feed_shards), (3, 8));
    let Cmd::Run(r) = parse("run").unwrap().cmd else {
        panic!("not run")
    };
    assert!(!r.fleet.via_haproxy);
    assert_eq!(
        (r.fleet.redis_cluster_masters, r.fleet.feed_shards),
        (0, 16)
    );
    assert_eq!(r.fleet.haproxy_processes, None);
    // The HAProxy options mean nothing without --via-haproxy.
    for line in ["run --haproxy-processes 2", "run --haproxy-core 1"] {
        let e = parse(line).unwrap_err().to_string();
        assert!(e.contains("--via-haproxy"), "`{line}` → {e}");
    }
}

#[test]
fn bad_values_name_the_flag_the_value_and_a_good_value() {
    for (line, flag, want) in [
        ("run --conns abc", "--conns", "such as 10000"),
        ("run --rate -5", "--rate", "≥ 0"),
        ("run --duration 5x", "--duration", "10s, 500ms"),
        ("run --churn-frac 2", "--churn-frac", "from 0 to 1"),
        ("run --client-cores a-b", "--client-cores", "0-3"),
        ("run --server-core x", "--server-core", "0-3"),
        ("run --steps 100,x", "--steps", "100,1000"),
        (
            "run --conns-per-client 0",
            "--conns-per-client",
            "1..=19000",
        ),
        ("run --server-pid 12x", "--server-pid", "1234,1235"),
        ("client --target localhost", "--target", "127.0.0.1:3001"),
        ("selftest --batch 0", "--batch", "at least 1"),
        (
            "run --redis-cluster-masters 17",
            "--redis-cluster-masters",
            "0..=16",
        ),
        ("run --feed-shards 0", "--feed-shards", "at least 1"),
        (
            "run --via-haproxy --haproxy-processes 0",
            "--haproxy-processes",
            "at least 1",
        ),
    ] {
        let e = parse(line).unwrap_err().to_string();
        let value = line.rsplit(' ').next().unwrap();
        assert!(
            e.contains(flag) && e.contains(value) && e.contains(want),
            "`{line}` → {e}"
        );
    }
}

/// The commands the docs quote (perf/README.md, perf/RESULTS.md, perf/smoke.sh, docs/): every flag
/// they use is one of the subcommand's, and the commands written out in full parse.
#[test]
fn the_commands_the_docs_quote_still_work() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut files = vec![
        format!("{root}/perf/README.md"),
        format!("{root}/perf/RESULTS.md"),
        format!("{root}/perf/smoke.sh"),
    ];
    for e in std::fs::read_dir(format!("{root}/docs")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "md") {
            files.push(path.display().to_string());
        }
    }
    let cmd = Cli::command();
    let (mut checked, mut parsed) = (0, 0);
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap().replace("\\\n", " ");
        for line in text.lines() {
            // `C="--flags ..."` in RESULTS.md: flags of `run` used as `$L run $C ...`.
            let (sub, tail) = if let Some(c) = line.strip_prefix("C=\"") {
                ("run", c.trim_end_matches('"'))
            } else if let Some((_, t)) = ["ringcast-load ", "$L "]
                .iter()
                .find_map(|p| line.split_once(p))
                .filter(|(_, t)| {
                    t.starts_with("run ") || t.starts_with("plot ") || t.starts_with("selftest ")
                })
            {
                t.split_once(' ').unwrap()
            } else {
                continue;
            };
            // The command ends at the end of a code span, a comment or a table cell.
            let tail = tail.split(['`', '#', ')']).next().unwrap();
            let sc = cmd.find_subcommand(sub).unwrap();
            for word in tail.split_whitespace() {
                let Some(name) = word.strip_prefix("--") else {
                    continue;
                };
                let name = name
                    .split('=')
                    .next()
                    .unwrap()
                    .trim_end_matches([',', '.', ']', '"', ':']);
                assert!(
                    name == "help" || sc.get_arguments().any(|a| a.get_long() == Some(name)),
                    "{file}: `ringcast-load {sub}` has no flag --{name}: {line}"
                );
                checked += 1;
            }
            // Code lines (not prose wrapped mid-command) written out in full.
            let first = line.split_whitespace().next().unwrap_or("");
            let code = first == "$L" || first.trim_end_matches('"').ends_with("ringcast-load");
            let whole =
                !tail.contains(['$', '|', '[', '<', '"', '\u{2026}']) && !tail.contains("...");
            if code && whole && sub == "run" {
                let argv = ["ringcast-load", sub]
                    .into_iter()
                    .chain(tail.split_whitespace());
                if let Err(e) = Cli::try_parse_from(argv) {
                    panic!("{file}: {line}\n{e}");
                }
                parsed += 1;
            }
        }
    }
    assert!(
        checked > 100 && parsed > 3,
        "{checked} flags checked, {parsed} commands parsed"
    );
}
