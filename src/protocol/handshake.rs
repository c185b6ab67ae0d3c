//! The HTTP/1.1 upgrade (RFC 6455 §4.2), sans-IO: parse the request head, validate it, and answer it
//! (`101`, or the refusal; the bytes are written by `protocol::response`). Every failure maps to one
//! precise HTTP status in `HttpError::status`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

use super::response::Head;

/// Limits on the request head (slowloris and memory protection); the default is `ringcast serve`'s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    pub max_head_bytes: usize,
    pub max_headers: usize,
}

impl HeadLimits {
    pub const DEFAULT: HeadLimits = HeadLimits {
        max_head_bytes: 8 * 1024,
        max_headers: 32,
    };
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits::DEFAULT
    }
}

/// A parsed request head, borrowing from the receive buffer.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Path including any query string, e.g. `/ws?token=abc`.
    pub target: &'a str,
    /// HTTP minor version (0 or 1).
    pub minor_version: u8,
    /// Every header, in order (name, value).
    pub headers: Vec<(&'a str, &'a [u8])>,
}

impl<'a> Request<'a> {
    /// The path without the query string.
    pub fn path(&self) -> &'a str {
        self.target
            .split_once('?')
            .map_or(self.target, |(path, _)| path)
    }
    /// Value of a query parameter (no percent-decoding beyond what tokens need), e.g. `token`.
    pub fn query_param(&self, name: &str) -> Option<&'a str> {
        let (_, query) = self.target.split_once('?')?;
        query
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }
    /// The first value of a header, case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers_named(name).next()
    }

    /// Every value of a header, in order, case-insensitive name.
    pub fn headers_named<'r>(&'r self, name: &'r str) -> impl Iterator<Item = &'a [u8]> + 'r {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    }
}

/// A valid WebSocket upgrade.
#[derive(Debug)]
pub struct Upgrade {
    /// `Sec-WebSocket-Accept` value.
    pub accept: [u8; 28],
}

/// Why a request is refused; each maps to one status and is answered, then the connection is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// Unparseable request line or header (400).
    Malformed,
    /// HTTP/1.0 or older (400).
    BadVersion,
    MissingHost,
    /// `Connection` lacks the `upgrade` token (400).
    ConnectionNotUpgrade,
    /// `Sec-WebSocket-Key` missing, not 16 bytes of base64, or repeated (400).
    BadKey,
    /// Non-GET method (405 + `Allow: GET`).
    MethodNotAllowed,
    /// `Upgrade` header missing or not `websocket` (426 + `Upgrade: websocket`).
    UpgradeRequired,
    /// `Sec-WebSocket-Version` missing or not 13 (426 + `Sec-WebSocket-Version: 13`).
    UnsupportedVersion,
    /// Head over `max_head_bytes` (431).
    HeadTooLarge,
    /// More than `max_headers` headers (431).
    TooManyHeaders,
    /// No such route (404).
    NotFound,
    /// The request line is not `method SP target SP HTTP/x.y` (400, answered as soon as it arrives).
    BadRequestLine,
    /// A line ends in a bare LF instead of CRLF (400, RFC 9112 §2.2).
    BareLineFeed,
    /// A CR not followed by LF (400, RFC 9112 §2.2).
    BareCarriageReturn,
    /// A header line starts with whitespace (obsolete line folding, 400, RFC 9112 §5.2).
    FoldedHeader,
    /// A header name with a non-token byte, or whitespace before its colon (400, RFC 9112 §5.1).
    BadHeaderName,
    /// A control byte in a header value (400, RFC 9110 §5.5).
    BadHeaderValue,
    /// More than one `Host` header (400, RFC 9112 §3.2).
    DuplicateHost,
    /// `Content-Length` not a single decimal number, or sent more than once (400, RFC 9112 §6.3).
    BadContentLength,
    /// Both `Transfer-Encoding` and `Content-Length` (400, RFC 9112 §6.1: request smuggling).
    ConflictingFraming,
    /// An upgrade request with a body (`Transfer-Encoding`, or `Content-Length` other than 0): its bytes
    /// would otherwise be read as WebSocket frames (400).
    BodyOnUpgrade,
    /// More than one `Origin` header (400, RFC 6454 §7.3: a single origin).
    DuplicateOrigin,
}

impl HttpError {
    pub fn status(self) -> u16 {
        use HttpError::*;
        match self {
            Malformed | BadVersion | MissingHost | ConnectionNotUpgrade | BadKey
            | BadRequestLine | BareLineFeed | BareCarriageReturn | FoldedHeader | BadHeaderName
            | BadHeaderValue | DuplicateHost | BadContentLength | ConflictingFraming
            | BodyOnUpgrade | DuplicateOrigin => 400,
            NotFound => 404,
            MethodNotAllowed => 405,
            UpgradeRequired | UnsupportedVersion => 426,
            HeadTooLarge | TooManyHeaders => 431,
        }
    }
    /// Short reason for logs and the response body.
    pub fn reason(self) -> &'static str {
        use HttpError::*;
        match self {
            Malformed => "malformed request",
            BadVersion => "HTTP/1.1 required",
            MissingHost => "missing Host header",
            ConnectionNotUpgrade => "Connection header must contain upgrade",
            BadKey => "invalid Sec-WebSocket-Key",
            MethodNotAllowed => "method not allowed",
            UpgradeRequired => "WebSocket upgrade required",
            UnsupportedVersion => "unsupported Sec-WebSocket-Version",
            HeadTooLarge => "request head too large",
            TooManyHeaders => "too many headers",
            NotFound => "not found",
            BadRequestLine => "malformed request line",
            BareLineFeed => "line endings must be CRLF",
            BareCarriageReturn => "CR not followed by LF",
            FoldedHeader => "folded header line (obs-fold) not allowed",
            BadHeaderName => "invalid header name",
            BadHeaderValue => "invalid byte in a header value",
            DuplicateHost => "duplicate Host header",
            BadContentLength => "invalid or repeated Content-Length",
            ConflictingFraming => "both Transfer-Encoding and Content-Length",
            BodyOnUpgrade => "a WebSocket upgrade must not have a body",
            DuplicateOrigin => "duplicate Origin header",
        }
    }
    /// The complete response (status line, the headers the status calls for, `Connection: close`,
    /// `Content-Length`, a one-line text body).
    pub fn write_response(self, out: &mut Vec<u8>) {
        let head = self
            .extra_headers()
            .iter()
            .fold(Head::new(self.status(), out), |head, (name, value)| {
                head.header(name, value)
            });
        head.text(format!("{}\n", self.reason()).as_bytes());
    }

    /// Headers this status calls for (RFC 9110 §15.5.6, RFC 6455 §4.2.2 and §4.4).
    fn extra_headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            HttpError::MethodNotAllowed => &[("Allow", "GET")],
            HttpError::UpgradeRequired => {
                &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]
            }
            HttpError::UnsupportedVersion => &[("Sec-WebSocket-Version", "13")],
            _ => &[],
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl std::error::Error for HttpError {}

mod scan;
pub use scan::{HeadScanner, Scan};

const HEAD_END: &[u8] = b"\r\n\r\n";

/// Where the head ends (index just past `\r\n\r\n`), scanning only from `from` (pass the previous
/// `buf.len()` minus 3 after each read) so a head trickled in 1-byte reads costs linear CPU.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.min(buf.len());
    buf[start..]
        .windows(HEAD_END.len())
        .position(|window| window == HEAD_END)
        .map(|i| start + i + HEAD_END.len())
}

/// Parse a complete request head (`buf[..head_end]` from `find_head_end`). Enforces `limits`.
pub fn parse_request<'a>(head: &'a [u8], limits: &HeadLimits) -> Result<Request<'a>, HttpError> {
    if head.len() > limits.max_head_bytes {
        return Err(HttpError::HeadTooLarge);
    }
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HttpError::Malformed),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(_) => return Err(HttpError::Malformed),
    }
    let (Some(method), Some(target), Some(minor_version)) =
        (parsed.method, parsed.path, parsed.version)
    else {
        return Err(HttpError::Malformed);
    };
    let req = Request {
        method,
        target,
        minor_version,
        headers: parsed.headers.iter().map(|h| (h.name, h.value)).collect(),
    };
    check_message(&req)?;
    Ok(req)
}

/// RFC 9112 rules on any request: one `Host` (§3.2); `Content-Length` a single decimal number, sent
/// once, and never beside `Transfer-Encoding` (§6.1, §6.3: the ambiguities request smuggling uses).
fn check_message(req: &Request<'_>) -> Result<(), HttpError> {
    if req.headers_named("host").nth(1).is_some() {
        return Err(HttpError::DuplicateHost);
    }
    let mut lengths = req.headers_named("content-length");
    if let Some(length) = lengths.next() {
        if lengths.next().is_some() || content_length(length).is_none() {
            return Err(HttpError::BadContentLength);
        }
        if req.header("transfer-encoding").is_some() {
            return Err(HttpError::ConflictingFraming);
        }
    }
    Ok(())
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6), as a number; `None` if not that or beyond `u64`.
fn content_length(value: &[u8]) -> Option<u64> {
    let digits = trim(value);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Check every RFC 6455 §4.2.1 rule of an upgrade request.
pub fn validate_upgrade(req: &Request<'_>) -> Result<Upgrade, HttpError> {
    if req.method != "GET" {
        return Err(HttpError::MethodNotAllowed);
    }
    if req.minor_version < 1 {
        return Err(HttpError::BadVersion);
    }
    if req.header("host").is_none() {
        return Err(HttpError::MissingHost);
    }
    // `check_message` saw to it that a Content-Length is a number, sent once.
    if req.header("transfer-encoding").is_some()
        || req
            .header("content-length")
            .and_then(content_length)
            .is_some_and(|n| n != 0)
    {
        return Err(HttpError::BodyOnUpgrade);
    }
    if req.headers_named("origin").nth(1).is_some() {
        return Err(HttpError::DuplicateOrigin);
    }
    if !has_token(req, "upgrade", b"websocket") {
        return Err(HttpError::UpgradeRequired);
    }
    if !has_token(req, "connection", b"upgrade") {
        return Err(HttpError::ConnectionNotUpgrade);
    }
    if req.header("sec-websocket-version").map(trim) != Some(b"13") {
        return Err(HttpError::UnsupportedVersion);
    }
    let key = single_key(req).ok_or(HttpError::BadKey)?;
    Ok(Upgrade {
        accept: accept_key(key),
    })
}

/// Does any header `name` list `token` among its comma-separated values (case-insensitive)?
fn has_token(req: &Request<'_>, name: &str, token: &[u8]) -> bool {
    req.headers_named(name)
        .flat_map(|value| value.split(|&b| b == b','))
        .any(|item| trim(item).eq_ignore_ascii_case(token))
}

/// The `Sec-WebSocket-Key`, if sent exactly once and it is the base64 of 16 bytes.
fn single_key<'a>(req: &Request<'a>) -> Option<&'a [u8]> {
    let mut keys = req.headers_named("sec-websocket-key");
    let key = trim(keys.next()?);
    if keys.next().is_some() {
        return None;
    }
    // 16 bytes are 24 base64 characters; anything longer cannot fit and fails to decode.
    let mut nonce = [0; 24];
    matches!(BASE64.decode_slice(key, &mut nonce), Ok(16)).then_some(key)
}

/// Strip optional whitespace (RFC 9110 §5.6.3).
fn trim(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

/// The GUID every server appends to the key (RFC 6455 §1.3).
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `base64(sha1(key ++ GUID))`.
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let digest = Sha1::new()
        .chain_update(key)
        .chain_update(WEBSOCKET_GUID)
        .finalize();
    let mut accept = [0; 28];
    let written = BASE64
        .encode_slice(digest.as_slice(), &mut accept)
        .expect("a SHA-1 digest is 28 base64 characters");
    debug_assert_eq!(written, accept.len());
    accept
}

/// Append `101 Switching Protocols` with the accept key (and the chosen subprotocol, if any).
pub fn write_101(upgrade: &Upgrade, protocol: Option<&str>, out: &mut Vec<u8>) {
    let head = Head::new(101, out)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Accept", upgrade.accept);
    match protocol {
        Some(protocol) => head.header("Sec-WebSocket-Protocol", protocol),
        None => head,
    }
    .end();
}

#[cfg(test)]
mod tests;
