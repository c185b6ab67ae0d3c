//! The HTTP/1.1 upgrade (RFC 6455 §4.2), sans-IO: parse the request head, validate it, and write the
//! response bytes. Every failure maps to one precise HTTP status in `HttpError::status`.

/// Limits on the request head (slowloris and memory protection).
#[derive(Clone, Debug)]
pub struct HeadLimits {
    pub max_head_bytes: usize,
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits { max_head_bytes: 8 * 1024, max_headers: 32 }
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
        todo!()
    }
    /// Value of a query parameter (no percent-decoding beyond what tokens need), e.g. `token`.
    pub fn query_param(&self, name: &str) -> Option<&'a str> {
        let _ = name;
        todo!()
    }
    /// The first value of a header, case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        let _ = name;
        todo!()
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
}

impl HttpError {
    pub fn status(self) -> u16 {
        todo!()
    }
    /// Short reason for logs and the response body.
    pub fn reason(self) -> &'static str {
        todo!()
    }
    /// The complete response (status line, the headers the status calls for, `Connection: close`,
    /// `Content-Length`, a one-line text body).
    pub fn write_response(self, out: &mut Vec<u8>) {
        let _ = out;
        todo!()
    }
}

/// Where the head ends (index just past `\r\n\r\n`), scanning only from `from` (pass the previous
/// `buf.len()` minus 3 after each read) so a head trickled in 1-byte reads costs linear CPU.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let _ = (buf, from);
    todo!()
}

/// Parse a complete request head (`buf[..head_end]` from `find_head_end`). Enforces `limits`.
pub fn parse_request<'a>(head: &'a [u8], limits: &HeadLimits) -> Result<Request<'a>, HttpError> {
    let _ = (head, limits);
    todo!()
}

/// Check every RFC 6455 §4.2.1 rule of an upgrade request.
pub fn validate_upgrade(req: &Request<'_>) -> Result<Upgrade, HttpError> {
    let _ = req;
    todo!()
}

/// `base64(sha1(key ++ GUID))`.
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let _ = key;
    todo!()
}

/// Append `101 Switching Protocols` with the accept key (and the chosen subprotocol, if any).
pub fn write_101(upgrade: &Upgrade, protocol: Option<&str>, out: &mut Vec<u8>) {
    let _ = (upgrade, protocol, out);
    todo!()
}

/// Append a plain response (`Connection: close` unless `keep_alive`), e.g. `/healthz` → 200.
pub fn write_response(status: u16, content_type: &str, body: &[u8], keep_alive: bool, out: &mut Vec<u8>) {
    let _ = (status, content_type, body, keep_alive, out);
    todo!()
}
