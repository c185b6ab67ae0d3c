//! The one writer of HTTP/1.1 responses, sans-IO: the status line with its reason phrase, the header
//! lines, and the body with its `Content-Length`, appended to an output buffer. Every response the server
//! sends is built here: the `101` of an upgrade and the refusals of one (`protocol::handshake`), the
//! plain routes and `503` (`crate::http`), `401` and `403` (`crate::auth`), the `400` to plain HTTP on the
//! TLS port (`crate::tls`). Each is answered once and
//! the connection closed (`Connection: close`); there is no keep-alive.

use std::io::Write as _;

/// A response being written into `out`: [`Head::new`] writes the status line, each [`Head::header`] one
/// header line, and [`Head::body`] (or [`Head::end`], for a response without a body) finishes it.
#[must_use = "a response head is finished with `body`, `text` or `end`"]
pub struct Head<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> Head<'o> {
    /// Append `HTTP/1.1 <status> <reason phrase>\r\n`.
    pub fn new(status: u16, out: &'o mut Vec<u8>) -> Self {
        let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason_phrase(status));
        Head { out }
    }

    /// Append `<name>: <value>\r\n`.
    pub fn header(self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(value.as_ref());
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// `Connection: close` (every response but the `101`: the connection ends after it).
    pub fn close(self) -> Self {
        self.header("Connection", "close")
    }

    /// `Content-Length`, the blank line and `body`.
    pub fn body(self, body: &[u8]) {
        self.length(body.len()).end_with(body);
    }

    /// `Content-Length: <len>` ahead of the last headers, for a response that names its length before
    /// `Connection: close` (the `400` on the TLS port); finish with [`Head::end_with`].
    pub fn length(self, len: usize) -> Self {
        let _ = write!(self.out, "Content-Length: {len}\r\n");
        self
    }

    /// The blank line and `body` (whose length [`Head::length`] gave).
    pub fn end_with(self, body: &[u8]) {
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body);
    }

    /// The blank line, no body (`101`, `304`).
    pub fn end(self) {
        self.out.extend_from_slice(b"\r\n");
    }

    /// `Connection: close`, `Content-Type: text/plain` and `body` (a one-line refusal or answer).
    pub fn text(self, body: &[u8]) {
        self.close().header("Content-Type", "text/plain").body(body);
    }
}

/// The standard reason phrase (RFC 9110 §15) of the statuses this server sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_answer_is_exact() {
        let mut out = Vec::new();
        Head::new(200, &mut out).text(b"ok\n");
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\
              Content-Length: 3\r\n\r\nok\n"
        );
    }

    #[test]
    fn headers_go_in_the_order_written() {
        let mut out = Vec::new();
        Head::new(304, &mut out)
            .close()
            .header("ETag", "\"1\"")
            .header("X-Bytes", b"\x21")
            .end();
        assert_eq!(
            out,
            b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\nETag: \"1\"\r\nX-Bytes: !\r\n\r\n"
        );
    }

    #[test]
    fn a_length_named_before_the_last_header() {
        let mut out = Vec::new();
        Head::new(400, &mut out).length(3).close().end_with(b"no\n");
        assert_eq!(
            out,
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\nConnection: close\r\n\r\nno\n"
        );
    }

    #[test]
    fn unknown_statuses_still_get_a_phrase() {
        let mut out = Vec::new();
        Head::new(599, &mut out).end();
        assert_eq!(out, b"HTTP/1.1 599 Unknown\r\n\r\n");
    }
}
