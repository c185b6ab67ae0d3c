//! Keeping secrets out of logs, errors and `Debug` output, sans-IO.
//!
//! - [`Redacted`] prints a URL with its password masked (`redis://user:***@host:6379/0`); every place
//!   that prints a Redis URL goes through it.
//! - [`scrub`] removes a URL's password from a text that may quote it (the redis crate's error messages).
//! - [`Secret`] holds a flag value (`--auth-secret`, `--metrics-token`) whose `Debug` prints `***`.

use std::fmt;
use std::str::FromStr;

/// What a secret is replaced by.
pub const MASK: &str = "***";

/// A URL printed with its password (and any `password=`/`pass=` query value) masked.
#[derive(Clone, Copy)]
pub struct Redacted<'a>(pub &'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(self.0))
    }
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(self.0))
    }
}

/// A URL cut into the parts redaction cares about; text that is not a URL is all `authority`/`rest`.
struct UrlParts<'a> {
    /// `scheme://`, or empty.
    scheme: &'a str,
    /// What stands before the last `@` of the authority (`user:password`), if there is an `@`.
    userinfo: Option<&'a str>,
    /// The authority after the user-info (`host:port`).
    host: &'a str,
    /// The path, up to `?`.
    path: &'a str,
    /// The query without its `?` (up to `#`), if there is one.
    query: Option<&'a str>,
    /// `#…`, or empty.
    fragment: &'a str,
}

impl<'a> UrlParts<'a> {
    fn of(url: &'a str) -> UrlParts<'a> {
        let start = url.find("://").map_or(0, |i| i + 3);
        let (scheme, rest) = url.split_at(start);
        let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        let (userinfo, host) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let (path, query, fragment) = match tail.find('?') {
            Some(q) => {
                let after = &tail[q + 1..];
                let (query, fragment) = after.split_at(after.find('#').unwrap_or(after.len()));
                (&tail[..q], Some(query), fragment)
            }
            None => (tail, None, ""),
        };
        UrlParts {
            scheme,
            userinfo,
            host,
            path,
            query,
            fragment,
        }
    }

    /// The user-info's password, as written (percent-encoded or not), if any.
    fn password(&self) -> Option<&'a str> {
        self.userinfo?.split_once(':').map(|(_, pass)| pass)
    }

    /// The query's `key=value` pairs (a pair without `=` has no value).
    fn query_pairs(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> {
        self.query.into_iter().flat_map(|q| {
            q.split('&').map(|pair| match pair.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (pair, None),
            })
        })
    }
}

/// `url` with the password of its user-info and the values of `password`/`pass` query parameters masked.
/// A user-info without `:` is a user name alone and stays; text that is not a URL comes back unchanged
/// except for those two parts if it happens to have them.
pub fn redact_url(url: &str) -> String {
    if let Some(parts) = url_list(url) {
        return parts.map(redact_url).collect::<Vec<_>>().join(",");
    }
    let parts = UrlParts::of(url);
    let mut out = String::with_capacity(url.len());
    out.push_str(parts.scheme);
    if let Some(userinfo) = parts.userinfo {
        match userinfo.split_once(':') {
            Some((user, _)) => {
                out.push_str(user);
                out.push(':');
                out.push_str(MASK);
            }
            None => out.push_str(userinfo),
        }
        out.push('@');
    }
    out.push_str(parts.host);
    out.push_str(parts.path);
    if parts.query.is_some() {
        out.push('?');
        for (i, (key, value)) in parts.query_pairs().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.push_str(key);
            if let Some(value) = value {
                out.push('=');
                out.push_str(if is_password_key(key) { MASK } else { value });
            }
        }
    }
    out.push_str(parts.fragment);
    out
}

/// A comma-separated list of URLs (`--redis-cluster redis://:pw@h1:7000,redis://:pw@h2:7001`): its
/// parts, each redacted or scrubbed on its own (the last `@` of the whole text is not the first URL's).
fn url_list(text: &str) -> Option<std::str::Split<'_, char>> {
    (text.contains(',') && text.matches("://").count() > 1).then(|| text.split(','))
}

fn is_password_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("pass") || key.contains("secret") || key.contains("token")
}

/// `text` (e.g. an error message from the redis crate) with `url` and its password masked wherever they
/// appear: the whole URL becomes its [`Redacted`] form, then any remaining copy of the password (raw or
/// percent-decoded, if at least 3 bytes long, so that a one-letter password does not mask every such
/// letter) becomes `***`.
pub fn scrub(text: &str, url: &str) -> String {
    if let Some(parts) = url_list(url) {
        let whole = text.replace(url, &redact_url(url));
        return parts.fold(whole, |out, part| scrub(&out, part));
    }
    let mut out = if url.is_empty() {
        text.to_string()
    } else {
        text.replace(url, &redact_url(url))
    };
    for pass in secrets_of(url) {
        if pass.len() >= 3 && pass != MASK {
            out = out.replace(pass.as_str(), MASK);
        }
    }
    out
}

/// The secrets a URL carries: its password (as written and percent-decoded) and password-like query values.
fn secrets_of(url: &str) -> Vec<String> {
    let parts = UrlParts::of(url);
    let mut out = Vec::new();
    if let Some(p) = parts.password() {
        out.push(p.to_string());
        let decoded = percent_decode(p);
        if decoded != p {
            out.push(decoded);
        }
    }
    for (key, value) in parts.query_pairs() {
        if let Some(value) = value
            && is_password_key(key)
        {
            out.push(value.to_string());
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A secret flag value: `Debug` and `Display` print `***`; [`Secret::expose`] gives the value to the code
/// that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself (never print it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_lists_lose_every_password() {
        let list = "redis://:hunter2@h1:7000,redis://u:swordfish@h2:7001,redis://h3:7002";
        assert_eq!(
            redact_url(list),
            "redis://:***@h1:7000,redis://u:***@h2:7001,redis://h3:7002"
        );
        let text = format!("cannot connect to {list}: swordfish refused, hunter2 too");
        let out = scrub(&text, list);
        assert!(
            !out.contains("hunter2") && !out.contains("swordfish"),
            "{out}"
        );
    }

    #[test]
    fn urls_lose_their_password_only() {
        let cases = [
            (
                "redis://user:secret@host:6379/0",
                "redis://user:***@host:6379/0",
            ),
            ("redis://:secret@host", "redis://:***@host"),
            ("rediss://u:p%40ss@h:1/2?x=1", "rediss://u:***@h:1/2?x=1"),
            ("redis://user@host", "redis://user@host"),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "redis+unix:///run/redis.sock?db=1&pass=secret",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
            ("redis://a:b@c@host/", "redis://a:***@host/"),
            ("not a url", "not a url"),
            ("", ""),
        ];
        for (url, want) in cases {
            assert_eq!(Redacted(url).to_string(), want, "{url}");
        }
        assert_eq!(
            format!("{:?}", Redacted("redis://:pw@h")),
            "\"redis://:***@h\""
        );
    }

    #[test]
    fn scrub_masks_the_url_and_the_password_anywhere() {
        let url = "redis://user:s3cr%3Ft@host:6379";
        let text = format!("cannot connect to {url}: auth s3cr?t refused (s3cr%3Ft)");
        let out = scrub(&text, url);
        assert!(!out.contains("s3cr"), "{out}");
        assert!(out.contains("redis://user:***@host:6379"), "{out}");
        // A very short password is not hunted in free text (it would mask every such letter), but the
        // URL itself is still redacted.
        assert_eq!(
            scrub("x redis://:a@h a", "redis://:a@h"),
            "x redis://:***@h a"
        );
        assert_eq!(scrub("plain", ""), "plain");
    }

    #[test]
    fn secrets_never_print() {
        let s: Secret = "hunter2-hunter2".parse().unwrap();
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2-hunter2");
        assert_eq!(format!("{:?}", Some(s)), "Some(***)");
    }
}
