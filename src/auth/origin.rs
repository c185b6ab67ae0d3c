//! The `Origin` allow-list (`--origins`): which web pages may open a socket (cross-site WebSocket
//! hijacking protection). Entries are exact origins (`https://ticker.example.com`, `http://h:8080`),
//! subdomain wildcards (`https://*.example.com`) or `*`. Hosts compare case-insensitively; default
//! ports are normalised (`https://h` = `https://h:443`).

use crate::protocol::response::Head;

/// A parsed origin: scheme, lower-case host, port (default filled in).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    Exact(Origin),
    /// `scheme://*.suffix[:port]`; `suffix` is stored with its leading dot (`.example.com`).
    Subdomains(Origin),
}

/// Which `Origin` headers may upgrade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPolicy {
    /// `None` = every origin (`*` or no `--origins`).
    rules: Option<Vec<Rule>>,
    /// Refuse requests without an `Origin` header (`--require-origin`).
    require_origin: bool,
}

impl Default for OriginPolicy {
    fn default() -> Self {
        OriginPolicy::allow_all()
    }
}

impl OriginPolicy {
    /// Every origin, and requests without one (the default when `--origins` is unset).
    pub fn allow_all() -> Self {
        OriginPolicy {
            rules: None,
            require_origin: false,
        }
    }

    /// Parse a comma-separated list; an error names the bad entry and why.
    pub fn parse(list: &str) -> Result<OriginPolicy, String> {
        let mut rules = Vec::new();
        let mut any = false;
        for entry in list.split(',').map(str::trim) {
            if entry == "*" {
                any = true;
                continue;
            }
            let rule = parse_entry(entry).map_err(|why| format!("bad origin `{entry}`: {why}"))?;
            rules.push(rule);
        }
        Ok(OriginPolicy {
            rules: (!any).then_some(rules),
            require_origin: false,
        })
    }

    /// Also refuse requests that carry no `Origin` header (non-browser clients).
    pub fn with_require_origin(mut self, require: bool) -> Self {
        self.require_origin = require;
        self
    }

    /// Does the list restrict anything (i.e. not `*`)?
    pub fn is_restricted(&self) -> bool {
        self.rules.is_some() || self.require_origin
    }

    /// May a request with this `Origin` header value upgrade? No header: allowed unless
    /// `require_origin`. An unparseable value (`null`, garbage) only passes `*`.
    pub fn allows(&self, origin: Option<&[u8]>) -> bool {
        let Some(origin) = origin else {
            return !self.require_origin;
        };
        let Some(rules) = &self.rules else {
            return true;
        };
        let Some(origin) = std::str::from_utf8(origin)
            .ok()
            .and_then(|o| parse_origin(o.trim(), false).ok())
        else {
            return false;
        };
        rules.iter().any(|rule| match rule {
            Rule::Exact(allowed) => *allowed == origin,
            Rule::Subdomains(allowed) => {
                allowed.https == origin.https
                    && allowed.port == origin.port
                    && origin.host.len() > allowed.host.len()
                    && origin.host.ends_with(&allowed.host)
            }
        })
    }
}

/// Append the `403 Forbidden` answering a refused origin.
pub fn write_forbidden(out: &mut Vec<u8>) {
    Head::new(403, out).text(b"origin not allowed\n");
}

fn parse_entry(entry: &str) -> Result<Rule, &'static str> {
    let origin = parse_origin(entry, true)?;
    Ok(match origin.host.strip_prefix('*') {
        Some(suffix) => Rule::Subdomains(Origin {
            host: suffix.to_owned(),
            ..origin
        }),
        None => Rule::Exact(origin),
    })
}

/// `scheme://host[:port]`, scheme `http` or `https`, no path, no user info. With `wildcard`, the host
/// may start with a `*.` label.
fn parse_origin(text: &str, wildcard: bool) -> Result<Origin, &'static str> {
    if text.is_empty() {
        return Err("empty entry");
    }
    let (scheme, rest) = text
        .split_once("://")
        .ok_or("expected scheme://host[:port]")?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "https" => true,
        "http" => false,
        _ => return Err("scheme must be http or https"),
    };
    if rest.contains(['/', '?', '#', '@']) {
        return Err("an origin has no path, query or user info");
    }
    let (host, port) = split_port(rest)?;
    let host = host.to_ascii_lowercase();
    check_host(&host, wildcard)?;
    let port = match port {
        None => default_port(https),
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or("port must be 1-65535")?,
    };
    Ok(Origin { https, host, port })
}

fn default_port(https: bool) -> u16 {
    if https { 443 } else { 80 }
}

/// `host[:port]`, `[v6]` or `[v6]:port`.
fn split_port(authority: &str) -> Result<(&str, Option<&str>), &'static str> {
    if authority.starts_with('[') {
        let end = authority.find(']').ok_or("unclosed [ in IPv6 host")?;
        let (host, after) = authority.split_at(end + 1);
        return match after {
            "" => Ok((host, None)),
            _ => after
                .strip_prefix(':')
                .map(|port| (host, Some(port)))
                .ok_or("expected :port after ]"),
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

/// Letters, digits, `-`, `.` (or a bracketed IPv6 literal); `*` only as a whole first label.
fn check_host(host: &str, wildcard: bool) -> Result<(), &'static str> {
    if host.starts_with('[') {
        let inner = &host[1..host.len() - 1];
        return if inner.parse::<std::net::Ipv6Addr>().is_ok() {
            Ok(())
        } else {
            Err("bad IPv6 literal")
        };
    }
    let name = match host.strip_prefix("*.") {
        Some(suffix) if wildcard => suffix,
        _ if host.contains('*') => {
            return Err(if wildcard {
                "`*` may only be the whole first label, as in *.example.com"
            } else {
                "`*` in an origin"
            });
        }
        _ => host,
    };
    let valid = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid { Ok(()) } else { Err("bad host name") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(policy: &OriginPolicy, origin: &str) -> bool {
        policy.allows(Some(origin.as_bytes()))
    }

    #[test]
    fn exact_origins_with_case_and_default_ports() {
        let p = OriginPolicy::parse("https://Ticker.Example.com, http://localhost:8080")
            .expect("valid list");
        assert!(allows(&p, "https://ticker.example.com"));
        assert!(allows(&p, "HTTPS://TICKER.EXAMPLE.COM:443"));
        assert!(allows(&p, "http://localhost:8080"));
        assert!(!allows(&p, "http://ticker.example.com"));
        assert!(!allows(&p, "https://ticker.example.com:8443"));
        assert!(!allows(&p, "http://localhost"));
        assert!(!allows(&p, "https://evil.example.com"));
        assert!(!allows(&p, "null"));
        assert!(!allows(&p, "https://ticker.example.com/path"));
        assert!(!p.allows(Some(b"\xff\xfe")));
    }

    #[test]
    fn subdomain_wildcards() {
        let p = OriginPolicy::parse("https://*.example.com").expect("valid list");
        assert!(allows(&p, "https://a.example.com"));
        assert!(allows(&p, "https://a.b.example.com"));
        assert!(allows(&p, "https://A.Example.COM:443"));
        assert!(!allows(&p, "https://example.com"));
        assert!(!allows(&p, "https://badexample.com"));
        assert!(!allows(&p, "https://.example.com"));
        assert!(!allows(&p, "http://a.example.com"));
        assert!(!allows(&p, "https://a.example.com:8443"));
        assert!(!allows(&p, "https://a.example.com.evil.net"));
    }

    #[test]
    fn star_and_missing_header() {
        let all = OriginPolicy::parse("*").expect("star");
        assert_eq!(all, OriginPolicy::allow_all());
        assert!(allows(&all, "null") && all.allows(None) && !all.is_restricted());
        assert!(!all.clone().with_require_origin(true).allows(None));

        let p = OriginPolicy::parse("https://a.com").expect("valid list");
        assert!(p.allows(None), "non-browser clients send no Origin");
        assert!(!p.with_require_origin(true).allows(None));
    }

    #[test]
    fn ipv6_literals() {
        let p = OriginPolicy::parse("http://[::1]:3000").expect("valid list");
        assert!(allows(&p, "http://[::1]:3000"));
        assert!(!allows(&p, "http://[::2]:3000"));
    }

    #[test]
    fn parse_errors_name_the_entry() {
        for (list, bad) in [
            ("https://a.com,ftp://b.com", "ftp://b.com"),
            ("a.com", "a.com"),
            ("https://a.com/", "https://a.com/"),
            ("https://a.com:0", "https://a.com:0"),
            ("https://a.com:99999", "https://a.com:99999"),
            ("https://a.*.com", "https://a.*.com"),
            ("https://*", "https://*"),
            ("https://*.", "https://*."),
            ("https://a..com", "https://a..com"),
            ("https://user@a.com", "https://user@a.com"),
            ("https://[::1", "https://[::1"),
            ("https://[zz]", "https://[zz]"),
            ("https://a.com,,https://b.com", ""),
            ("", ""),
        ] {
            let err = OriginPolicy::parse(list).expect_err(list);
            assert!(err.starts_with(&format!("bad origin `{bad}`: ")), "{err}");
        }
    }

    #[test]
    fn forbidden_response() {
        let mut out = Vec::new();
        write_forbidden(&mut out);
        let text = String::from_utf8(out).expect("ASCII");
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(text.ends_with("\r\n\r\norigin not allowed\n"));
    }
}
