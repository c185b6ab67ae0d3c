use super::*;

fn keys(settings: &[Setting]) -> Vec<(&str, &str, usize)> {
    settings
        .iter()
        .map(|s| (s.key.as_str(), s.value.as_str(), s.line))
        .collect()
}

#[test]
fn every_serve_flag_but_config_is_a_key() {
    let args = settable_args();
    let longs: Vec<&str> = args.iter().filter_map(|a| a.get_long()).collect();
    for key in [
        "log",
        "listen",
        "redis",
        "prefix",
        "echo",
        "max-backlog",
        "auth-secret",
    ] {
        assert!(longs.contains(&key), "{key} in {longs:?}");
    }
    assert!(!longs.contains(&"config"));
    assert!(longs.len() >= 40, "{}", longs.len());
}

#[test]
fn settings_are_read_with_their_lines() {
    let text = "# comment\nlisten = \"127.0.0.1:4000\"\nworkers = 2\n\necho = true\ndrain-window = \"1h\"\n";
    let (settings, problems) = parse(text);
    assert!(problems.is_empty(), "{problems:?}");
    let mut got = keys(&settings);
    got.sort();
    assert_eq!(
        got,
        [
            ("drain-window", "1h", 6),
            ("echo", "true", 5),
            ("listen", "127.0.0.1:4000", 2),
            ("workers", "2", 3)
        ]
    );
}

#[test]
fn unknown_keys_and_bad_values_are_named_with_their_line() {
    let text = "listen = \"0.0.0.0:3001\"\nworkres = 2\nmax-backlog = \"lots\"\necho = 1\n\
                ping-interval = \"5 parsecs\"\n[tls]\ncert = \"x\"\nslow-policy = \"maybe\"\n";
    let (_, problems) = parse(text);
    let shown: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", p.line.unwrap_or(0), p.message))
        .collect();
    let has = |line: usize, words: &[&str]| {
        assert!(
            problems
                .iter()
                .any(|p| p.line == Some(line) && words.iter().all(|w| p.message.contains(w))),
            "no problem on line {line} with {words:?}: {shown:#?}"
        )
    };
    has(2, &["unknown key `workres`", "did you mean `workers`"]);
    has(3, &["max-backlog = lots", "invalid digit"]);
    has(4, &["`echo` is a switch"]);
    has(5, &["ping-interval", "5 parsecs"]);
    has(6, &["unknown key `tls`"]);
    assert_eq!(problems.len(), 5, "{shown:#?}");
}

#[test]
fn toml_syntax_errors_have_a_line() {
    let (_, problems) = parse("listen = \"0.0.0.0:3001\"\nworkers = = 2\n");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].line, Some(2));
    assert!(problems[0].message.starts_with("not TOML"), "{problems:?}");
}

#[test]
fn toml_values_round_trip() {
    for text in [
        "0",
        "3001",
        "psx:",
        "0.0.0.0:3001",
        "007",
        "a\"b\\c",
        "-5",
        "",
    ] {
        let line = format!("prefix = {}", toml_value(text));
        let (settings, problems) = parse(&line);
        assert!(problems.is_empty(), "{line}: {problems:?}");
        assert_eq!(settings[0].value, text, "{line}");
    }
}

fn argv(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

#[test]
fn flags_win_over_the_file_and_the_file_over_defaults() {
    let dir = std::env::temp_dir().join(format!("ringcast-cfg-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("r.toml");
    std::fs::write(
        &path,
        "max-symbols-per-conn = 7\nmax-backlog = 1000\nno-page = true\nlog = \"warn\"\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let resolved = resolve(&argv(&[
        "ringcast",
        "serve",
        "--config",
        p,
        "--max-backlog",
        "2000",
    ]))
    .unwrap();
    let crate::config::Command::Serve(cfg) = &resolved.cli.command else {
        panic!("serve")
    };
    assert_eq!(cfg.max_symbols_per_conn, 7, "from the file");
    assert_eq!(cfg.max_backlog, 2000, "the flag wins");
    assert!(cfg.no_page, "a switch from the file");
    assert_eq!(resolved.cli.log, "warn", "the global --log from the file");
    assert_eq!(cfg.max_headers, 32, "the default");
    let printed = effective(&resolved);
    assert!(
        printed.contains(&format!("max-symbols-per-conn = 7  # from {p}:1")),
        "{printed}"
    );
    assert!(
        printed.contains("max-backlog = 2000  # from --max-backlog"),
        "{printed}"
    );
    assert!(printed.contains("max-headers = 32  # default"), "{printed}");
    assert!(printed.contains("# max-frame: not set"), "{printed}");
    std::fs::remove_dir_all(&dir).unwrap();
}
