//! One test per RFC 6455 §4.2.1 rule, plus head framing and the exact response bytes.

use super::*;

const BROWSER_REQUEST: &str = "GET /ws?token=abc&symbols=BTC,ETH HTTP/1.1\r\n\
    Host: stream.example.com\r\n\
    User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
    Accept: */*\r\n\
    Accept-Language: en-US,en;q=0.5\r\n\
    Accept-Encoding: gzip, deflate, br\r\n\
    Sec-WebSocket-Version: 13\r\n\
    Origin: https://app.example.com\r\n\
    Sec-WebSocket-Extensions: permessage-deflate\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Connection: keep-alive, Upgrade\r\n\
    Pragma: no-cache\r\n\
    Cache-Control: no-cache\r\n\
    Upgrade: websocket\r\n\r\n";

/// The browser request with `header`'s line replaced by `line` (or removed when `line` is empty).
fn with_header(header: &str, line: &str) -> String {
    BROWSER_REQUEST
        .split_inclusive("\r\n")
        .map(|l| if l.starts_with(header) { line } else { l })
        .collect()
}

fn validate(request: &str) -> Result<Upgrade, HttpError> {
    let head = request.as_bytes();
    let end = find_head_end(head, 0).expect("complete head");
    validate_upgrade(&parse_request(&head[..end], &HeadLimits::default())?)
}

// -- head framing --------------------------------------------------------------------------------------

#[test]
fn find_head_end_finds_the_blank_line() {
    assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest", 0), Some(18));
    assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r", 0), None);
    assert_eq!(find_head_end(b"", 0), None);
    assert_eq!(find_head_end(b"ab", 10), None);
}

#[test]
fn find_head_end_resumes_from_the_previous_scan() {
    let head = BROWSER_REQUEST.as_bytes();
    let mut seen = 0_usize;
    let mut found = None;
    for len in 1..=head.len() {
        found = find_head_end(&head[..len], seen.saturating_sub(3));
        seen = len;
        if found.is_some() {
            assert_eq!(len, head.len());
        }
    }
    assert_eq!(found, Some(head.len()));
}

// -- parsing -------------------------------------------------------------------------------------------

#[test]
fn parses_method_target_version_and_headers() {
    let req = parse_request(BROWSER_REQUEST.as_bytes(), &HeadLimits::default()).unwrap();
    assert_eq!(req.method, "GET");
    assert_eq!(req.target, "/ws?token=abc&symbols=BTC,ETH");
    assert_eq!(req.minor_version, 1);
    assert_eq!(req.headers.len(), 13);
    assert_eq!(req.headers[0], ("Host", &b"stream.example.com"[..]));
}

#[test]
fn path_query_and_header_accessors() {
    let req = parse_request(BROWSER_REQUEST.as_bytes(), &HeadLimits::default()).unwrap();
    assert_eq!(req.path(), "/ws");
    assert_eq!(req.query_param("token"), Some("abc"));
    assert_eq!(req.query_param("symbols"), Some("BTC,ETH"));
    assert_eq!(req.query_param("tok"), None);
    assert_eq!(req.header("HOST"), Some(&b"stream.example.com"[..]));
    assert_eq!(req.header("x-missing"), None);

    let bare = parse_request(b"GET /healthz HTTP/1.1\r\n\r\n", &HeadLimits::default()).unwrap();
    assert_eq!(bare.path(), "/healthz");
    assert_eq!(bare.query_param("token"), None);
    let flag = parse_request(b"GET /ws?debug&a= HTTP/1.1\r\n\r\n", &HeadLimits::default()).unwrap();
    assert_eq!(flag.query_param("debug"), Some(""));
    assert_eq!(flag.query_param("a"), Some(""));
}

#[test]
fn garbage_is_malformed() {
    let limits = HeadLimits::default();
    assert_eq!(
        parse_request(b"\x16\x03\x01\x02\x00\r\n\r\n", &limits).unwrap_err(),
        HttpError::Malformed
    );
    assert_eq!(
        parse_request(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", &limits).unwrap_err(),
        HttpError::Malformed
    );
    assert_eq!(
        parse_request(b"GET / HTTP/1.1\r\n", &limits).unwrap_err(),
        HttpError::Malformed
    );
}

#[test]
fn head_over_the_byte_limit_is_431() {
    let limits = HeadLimits {
        max_head_bytes: 100,
        ..HeadLimits::default()
    };
    let err = parse_request(BROWSER_REQUEST.as_bytes(), &limits).unwrap_err();
    assert_eq!((err, err.status()), (HttpError::HeadTooLarge, 431));
}

#[test]
fn too_many_headers_is_431() {
    let limits = HeadLimits {
        max_headers: 4,
        ..HeadLimits::default()
    };
    let err = parse_request(BROWSER_REQUEST.as_bytes(), &limits).unwrap_err();
    assert_eq!((err, err.status()), (HttpError::TooManyHeaders, 431));
}

// -- upgrade rules -------------------------------------------------------------------------------------

#[test]
fn browser_upgrade_is_accepted() {
    let upgrade = validate(BROWSER_REQUEST).unwrap();
    assert_eq!(&upgrade.accept, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn accept_key_matches_the_rfc_example() {
    assert_eq!(
        &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
        b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn non_get_is_405_before_any_other_check() {
    // Also HTTP/1.0 and without any upgrade header: the method is reported first.
    let err = validate("POST /ws HTTP/1.0\r\n\r\n").unwrap_err();
    assert_eq!((err, err.status()), (HttpError::MethodNotAllowed, 405));
}

#[test]
fn http_1_0_is_400() {
    let err = validate(&BROWSER_REQUEST.replacen("HTTP/1.1", "HTTP/1.0", 1)).unwrap_err();
    assert_eq!((err, err.status()), (HttpError::BadVersion, 400));
}

#[test]
fn missing_host_is_400() {
    let err = validate(&with_header("Host:", "")).unwrap_err();
    assert_eq!((err, err.status()), (HttpError::MissingHost, 400));
}

#[test]
fn missing_or_wrong_upgrade_is_426() {
    for line in ["", "Upgrade: h2c\r\n"] {
        let err = validate(&with_header("Upgrade:", line)).unwrap_err();
        assert_eq!((err, err.status()), (HttpError::UpgradeRequired, 426));
    }
    assert!(validate(&with_header("Upgrade:", "Upgrade: WebSocket\r\n")).is_ok());
    assert!(validate(&with_header("Upgrade:", "upgrade: h2c, websocket\r\n")).is_ok());
}

#[test]
fn connection_must_list_upgrade_among_its_tokens() {
    for line in ["", "Connection: keep-alive\r\n", "Connection: upgraded\r\n"] {
        let err = validate(&with_header("Connection:", line)).unwrap_err();
        assert_eq!((err, err.status()), (HttpError::ConnectionNotUpgrade, 400));
    }
    for line in [
        "Connection: Upgrade\r\n",
        "Connection: keep-alive ,  UPGRADE \r\n",
    ] {
        assert!(
            validate(&with_header("Connection:", line)).is_ok(),
            "{line}"
        );
    }
    // The token may be in any of several Connection headers.
    let split = "Connection: keep-alive\r\nConnection: upgrade\r\n";
    assert!(validate(&with_header("Connection:", split)).is_ok());
}

#[test]
fn version_other_than_13_is_426() {
    for line in [
        "",
        "Sec-WebSocket-Version: 8\r\n",
        "Sec-WebSocket-Version: 13, 8\r\n",
    ] {
        let err = validate(&with_header("Sec-WebSocket-Version:", line)).unwrap_err();
        assert_eq!((err, err.status()), (HttpError::UnsupportedVersion, 426));
    }
}

#[test]
fn key_must_be_16_bytes_of_base64_sent_once() {
    let bad_keys = [
        "",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n", // missing padding
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j\r\n",   // 15 bytes
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZSE=\r\n", // 17 bytes
        "Sec-WebSocket-Key: not base64 at all!!!!!!!\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    ];
    for line in bad_keys {
        let err = validate(&with_header("Sec-WebSocket-Key:", line)).unwrap_err();
        assert_eq!((err, err.status()), (HttpError::BadKey, 400), "{line:?}");
    }
}

// -- responses -----------------------------------------------------------------------------------------

fn response_of(err: HttpError) -> String {
    let mut out = Vec::new();
    err.write_response(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn every_error_has_its_status() {
    use HttpError::*;
    let statuses = [
        (Malformed, 400),
        (BadVersion, 400),
        (MissingHost, 400),
        (ConnectionNotUpgrade, 400),
        (BadKey, 400),
        (MethodNotAllowed, 405),
        (UpgradeRequired, 426),
        (UnsupportedVersion, 426),
        (HeadTooLarge, 431),
        (TooManyHeaders, 431),
        (NotFound, 404),
    ];
    for (err, status) in statuses {
        assert_eq!(err.status(), status, "{err:?}");
        let response = response_of(err);
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{response}"
        );
        let body = format!("{}\n", err.reason());
        assert!(response.ends_with(&format!("Content-Length: {}\r\n\r\n{body}", body.len())));
    }
}

#[test]
fn error_responses_are_exact() {
    assert_eq!(
        response_of(HttpError::MethodNotAllowed),
        "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nConnection: close\r\n\
         Content-Type: text/plain\r\nContent-Length: 19\r\n\r\nmethod not allowed\n"
    );
    assert_eq!(
        response_of(HttpError::UpgradeRequired),
        "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Connection: close\r\nContent-Type: text/plain\r\nContent-Length: 27\r\n\r\n\
         WebSocket upgrade required\n"
    );
    assert!(
        response_of(HttpError::UnsupportedVersion).contains("\r\nSec-WebSocket-Version: 13\r\n")
    );
    assert!(
        response_of(HttpError::HeadTooLarge)
            .starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n")
    );
}

#[test]
fn write_101_is_exact() {
    let upgrade = Upgrade {
        accept: *b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
    };
    let mut out = Vec::new();
    write_101(&upgrade, None, &mut out);
    assert_eq!(
        out,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
    out.clear();
    write_101(&upgrade, Some("ticks.v1"), &mut out);
    assert!(out.ends_with(b"=\r\nSec-WebSocket-Protocol: ticks.v1\r\n\r\n"));
}

#[test]
fn accept_key_agrees_with_tungstenite() {
    for key in [
        &b"dGhlIHNhbXBsZSBub25jZQ=="[..],
        b"AQIDBAUGBwgJCgsMDQ4PEA==",
        b"x3JJHMbDL1EzLkh9GBhXDw==",
    ] {
        let theirs = tungstenite::handshake::derive_accept_key(key);
        assert_eq!(&accept_key(key)[..], theirs.as_bytes());
    }
}

// -- RFC 9112 message rules and bodies on upgrades --------------------------------------------------

#[test]
fn repeated_host_is_400() {
    let twice = with_header(
        "Host:",
        "Host: stream.example.com\r\nHost: evil.example.com\r\n",
    );
    assert_eq!(validate(&twice).unwrap_err(), HttpError::DuplicateHost);
    let head = b"GET /healthz HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n";
    assert_eq!(
        parse_request(head, &HeadLimits::default()).unwrap_err(),
        HttpError::DuplicateHost,
        "on every route, not only upgrades"
    );
}

#[test]
fn content_length_must_be_one_number() {
    let req = |extra: &str| validate(&with_header("Pragma:", extra));
    assert!(
        req("Content-Length: 0\r\n").is_ok(),
        "an empty body is no body"
    );
    for bad in [
        "Content-Length: 5, 5\r\n",
        "Content-Length: -1\r\n",
        "Content-Length:\r\n",
        "Content-Length: 0\r\nContent-Length: 0\r\n",
        "Content-Length: 0\r\nContent-Length: 5\r\n",
        "Content-Length: 99999999999999999999999\r\n",
        "Content-Length: +5\r\n",
    ] {
        assert_eq!(
            req(bad).unwrap_err(),
            HttpError::BadContentLength,
            "{bad:?}"
        );
    }
    assert_eq!(
        req("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n").unwrap_err(),
        HttpError::ConflictingFraming
    );
}

#[test]
fn an_upgrade_with_a_body_is_400() {
    let req = |extra: &str| validate(&with_header("Pragma:", extra));
    assert_eq!(
        req("Content-Length: 5\r\n").unwrap_err(),
        HttpError::BodyOnUpgrade
    );
    assert_eq!(
        req("Transfer-Encoding: chunked\r\n").unwrap_err(),
        HttpError::BodyOnUpgrade
    );
    assert_eq!(
        req("Transfer-Encoding: identity\r\n").unwrap_err(),
        HttpError::BodyOnUpgrade
    );
}

#[test]
fn repeated_origin_is_400() {
    let twice = with_header(
        "Origin:",
        "Origin: https://app.example.com\r\nOrigin: https://evil.example\r\n",
    );
    assert_eq!(validate(&twice).unwrap_err(), HttpError::DuplicateOrigin);
}

#[test]
fn every_new_400_names_its_reason() {
    use HttpError::*;
    for err in [
        BadRequestLine,
        BareLineFeed,
        BareCarriageReturn,
        FoldedHeader,
        BadHeaderName,
        BadHeaderValue,
        DuplicateHost,
        BadContentLength,
        ConflictingFraming,
        BodyOnUpgrade,
        DuplicateOrigin,
    ] {
        assert_eq!(err.status(), 400);
        let text = response_of(err);
        assert!(
            text.ends_with(&format!("\r\n\r\n{}\n", err.reason())),
            "{text}"
        );
    }
}
