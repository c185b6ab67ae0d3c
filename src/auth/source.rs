//! Where a browser can put a token on the upgrade request. Browsers cannot set headers on a WebSocket,
//! so the token travels in (checked in this order) the `?token=` query parameter, a cookie, or the
//! `Sec-WebSocket-Protocol` list as an entry `token.<JWT>` next to a real subprotocol (`ringcast.v1`).

use std::borrow::Cow;

use crate::protocol::handshake::Request;

/// The subprotocol Ringcast clients offer next to their `token.<JWT>` entry.
pub const SUBPROTOCOL: &str = "ringcast.v1";

/// Prefix of the subprotocol entry carrying the token.
pub const TOKEN_SUBPROTOCOL_PREFIX: &str = "token.";

/// Which part of the request carried the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenLocation {
    Query,
    Cookie,
    Subprotocol,
}

/// A token found on the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSource<'a> {
    /// The token text (percent-decoded when it came from the query).
    pub token: Cow<'a, str>,
    pub location: TokenLocation,
    /// Subprotocol the `101` must echo (`Sec-WebSocket-Protocol`): set only when the token came from
    /// the subprotocol list, to `ringcast.v1` if offered, else the first non-token entry. Browsers
    /// fail a handshake whose offered subprotocols get no answer, and the token must not be echoed.
    pub echo_protocol: Option<&'a str>,
}

/// Find the token on `req`: `?token=`, then cookie `cookie_name`, then a `token.` subprotocol entry.
/// Empty values are skipped. Undecodable percent escapes are returned raw (verification rejects them).
pub fn token_from_request<'a>(req: &Request<'a>, cookie_name: &str) -> Option<TokenSource<'a>> {
    if let Some(raw) = req.query_param("token").filter(|t| !t.is_empty()) {
        return Some(TokenSource {
            token: percent_decode(raw).unwrap_or(Cow::Borrowed(raw)),
            location: TokenLocation::Query,
            echo_protocol: None,
        });
    }
    if let Some(token) = from_cookies(req, cookie_name) {
        return Some(TokenSource {
            token: Cow::Borrowed(token),
            location: TokenLocation::Cookie,
            echo_protocol: None,
        });
    }
    from_subprotocols(req)
}

/// The value of cookie `name` (`a=1; name=value`), surrounding double quotes removed.
fn from_cookies<'a>(req: &Request<'a>, name: &str) -> Option<&'a str> {
    req.headers_named("cookie")
        .filter_map(|value| std::str::from_utf8(value).ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| {
            let value = value.trim();
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value)
        })
        .filter(|value| !value.is_empty())
}

/// A `token.<JWT>` entry of `Sec-WebSocket-Protocol`, and the subprotocol to echo instead of it.
fn from_subprotocols<'a>(req: &Request<'a>) -> Option<TokenSource<'a>> {
    let entries: Vec<&'a str> = req
        .headers_named("sec-websocket-protocol")
        .filter_map(|value| std::str::from_utf8(value).ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    let token = entries
        .iter()
        .find_map(|entry| entry.strip_prefix(TOKEN_SUBPROTOCOL_PREFIX))
        .filter(|token| !token.is_empty())?;
    let others = || {
        entries
            .iter()
            .copied()
            .filter(|e| !e.starts_with(TOKEN_SUBPROTOCOL_PREFIX))
    };
    let echo = others()
        .find(|e| *e == SUBPROTOCOL)
        .or_else(|| others().next());
    Some(TokenSource {
        token: Cow::Borrowed(token),
        location: TokenLocation::Subprotocol,
        echo_protocol: echo,
    })
}

/// Decode `%XX` escapes (`+` is left alone: base64url tokens never contain it). `None` on a bad
/// escape or if the result is not UTF-8.
fn percent_decode(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.contains('%') {
        return Some(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::handshake::{HeadLimits, parse_request};

    fn with<R>(head: &str, f: impl FnOnce(&Request<'_>) -> R) -> R {
        let req = parse_request(head.as_bytes(), &HeadLimits::default()).expect("valid head");
        f(&req)
    }

    fn found(head: &str) -> Option<(String, TokenLocation, Option<String>)> {
        with(head, |req| {
            token_from_request(req, "ringcast_token").map(|s| {
                (
                    s.token.into_owned(),
                    s.location,
                    s.echo_protocol.map(str::to_owned),
                )
            })
        })
    }

    #[test]
    fn query_parameter_percent_decoded() {
        assert_eq!(
            found("GET /ws?a=1&token=abc.def%2Eghi HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("abc.def.ghi".into(), TokenLocation::Query, None))
        );
        assert_eq!(
            found("GET /?token=%zz HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("%zz".into(), TokenLocation::Query, None))
        );
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn cookie_among_others() {
        let head = "GET / HTTP/1.1\r\nHost: x\r\nCookie: theme=dark; ringcast_token=\"t.o.k\" ;x=y\r\n\r\n";
        assert_eq!(
            found(head),
            Some(("t.o.k".into(), TokenLocation::Cookie, None))
        );
        let other_name = "GET / HTTP/1.1\r\nHost: x\r\nCookie: my_ringcast_token=t\r\n\r\n";
        assert_eq!(found(other_name), None);
    }

    #[test]
    fn subprotocol_entry_and_the_protocol_to_echo() {
        let head = "GET / HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Protocol: chat, token.a.b.c, ringcast.v1\r\n\r\n";
        assert_eq!(
            found(head),
            Some((
                "a.b.c".into(),
                TokenLocation::Subprotocol,
                Some("ringcast.v1".into())
            ))
        );
        let other = "GET / HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Protocol: token.a.b.c\r\nSec-WebSocket-Protocol: chat\r\n\r\n";
        assert_eq!(
            found(other).and_then(|(_, _, echo)| echo),
            Some("chat".into())
        );
        let alone = "GET / HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Protocol: token.a.b.c\r\n\r\n";
        assert_eq!(found(alone).map(|(_, _, echo)| echo), Some(None));
        let none =
            "GET / HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Protocol: ringcast.v1, token.\r\n\r\n";
        assert_eq!(found(none), None);
    }

    #[test]
    fn precedence_query_then_cookie_then_subprotocol() {
        let all = "GET /?token=q HTTP/1.1\r\nHost: x\r\nCookie: ringcast_token=c\r\n\
                   Sec-WebSocket-Protocol: ringcast.v1, token.s\r\n\r\n";
        assert_eq!(found(all).map(|(t, ..)| t), Some("q".into()));
        let no_query = all.replace("/?token=q", "/?token=");
        assert_eq!(found(&no_query).map(|(t, ..)| t), Some("c".into()));
        let only_sub = no_query.replace("Cookie: ringcast_token=c", "Cookie: ringcast_token=");
        assert_eq!(found(&only_sub).map(|(t, ..)| t), Some("s".into()));
        assert_eq!(found("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), None);
    }
}
