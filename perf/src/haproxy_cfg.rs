//! `deploy/haproxy.cfg` rewritten for a run on this machine: the project's file with its `bind` replaced
//! by one address, its `server` lines by the edges given, its `global maxconn` by the run's, and what a
//! foreground process run by the current user cannot have (syslog, user/group, daemon, stats socket)
//! left out; every other line (timeouts, leastconn, `/readyz` checks, `send-proxy-v2`) kept as written.
//!
//! Standard library only: `tests/edge_balancer.rs` includes this file (`#[path]`) for its HAProxy, so the
//! load harness and the test run the same rewrite of the same file.

/// The rewritten configuration, or why `text` does not have the lines it must replace.
pub fn rewrite(text: &str, listen: &str, edges: &[String], maxconn: u32) -> Result<String, String> {
    let mut out = String::new();
    let mut section = "";
    let (mut bind_written, mut servers_written) = (false, false);
    for line in text.lines() {
        let word = line.split_whitespace().next().unwrap_or("");
        if !line.starts_with(' ') && !word.is_empty() && !word.starts_with('#') {
            section = word;
        }
        let keep = match (section, word) {
            (_, "") => false,
            _ if word.starts_with('#') => false,
            ("global", "log" | "user" | "group" | "daemon" | "stats") => false,
            ("global", "maxconn") => {
                out.push_str(&format!("    maxconn {maxconn}\n"));
                false
            }
            (_, "bind") => {
                if !bind_written {
                    out.push_str(&format!("    bind {listen}\n"));
                    bind_written = true;
                }
                false
            }
            (_, "server") => {
                if !servers_written {
                    for (i, edge) in edges.iter().enumerate() {
                        out.push_str(&format!("    server edge{} {edge}\n", i + 1));
                    }
                    servers_written = true;
                }
                false
            }
            _ => true,
        };
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !bind_written || !servers_written {
        return Err("deploy/haproxy.cfg has no `bind` or no `server` line to replace".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deploy_file_is_rewritten_for_the_run() {
        // perf/'s crate, or the root crate's tests/edge_balancer.rs that includes this file.
        let root = env!("CARGO_MANIFEST_DIR");
        let text = std::fs::read_to_string(format!("{root}/deploy/haproxy.cfg"))
            .or_else(|_| std::fs::read_to_string(format!("{root}/../deploy/haproxy.cfg")))
            .unwrap();
        let edges = ["127.0.0.1:4001".to_string(), "127.0.0.1:4002".to_string()];
        let cfg = rewrite(&text, "127.0.0.1:5000", &edges, 9000).unwrap();
        assert!(cfg.contains("    bind 127.0.0.1:5000\n"), "{cfg}");
        assert!(cfg.contains("    server edge1 127.0.0.1:4001\n    server edge2 127.0.0.1:4002\n"));
        assert!(cfg.contains("    maxconn 9000\n"));
        // What the deployment relies on is kept.
        for kept in [
            "balance leastconn",
            "send-proxy-v2",
            "uri /readyz",
            "timeout tunnel",
        ] {
            assert!(cfg.contains(kept), "{kept} lost:\n{cfg}");
        }
        for gone in [
            "daemon",
            "user haproxy",
            "stats socket",
            "10.0.0.11",
            "bind :80",
            "#",
        ] {
            assert!(!cfg.contains(gone), "{gone} kept:\n{cfg}");
        }
        assert!(rewrite("global\n    maxconn 1\n", "x", &edges, 1).is_err());
    }
}
