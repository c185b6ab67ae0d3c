//! Where a request head ends, and whether the bytes so far can still begin a valid HTTP/1.1 request
//! (RFC 9112 §2.2, §3, §5): a resumable byte-at-a-time state machine, so a head trickled in 1-byte reads
//! costs linear CPU, and junk (a bad method token, a bare LF, a non-token byte in a header name, a
//! control byte in a value) is answered with 400 as soon as it arrives instead of at the handshake
//! timeout. It only decides the shape; `parse_request` (httparse) then parses the complete head and
//! the checks of the request and of the upgrade follow.

use super::HttpError;

/// Where the scan stopped, between reads: one byte per connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadScanner {
    state: State,
}

/// What the bytes scanned so far are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// A valid beginning: more bytes needed.
    Partial,
    /// The head ends `n` bytes into the bytes just scanned (just past its blank line).
    Complete(usize),
    /// No request can begin this way: answer with this error now.
    Invalid(HttpError),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// Before the method (empty lines before the request line are ignored, RFC 9112 §2.2).
    #[default]
    Start,
    /// CR of an empty line before the request line.
    StartCr,
    Method,
    /// Just after the space that ends the method.
    TargetStart,
    Target,
    /// Matched this many bytes of `HTTP/`.
    Version(u8),
    Major,
    Dot,
    Minor,
    /// After the version: CR expected.
    LineEnd,
    /// After a CR: LF expected.
    Lf,
    /// At the start of a header line, or of the blank line that ends the head.
    LineStart,
    Name,
    Value,
    /// CR of the blank line: its LF completes the head.
    EndLf,
}

const HTTP_SLASH: &[u8] = b"HTTP/";

/// `tchar` (RFC 9110 §5.6.2): methods and header names.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A request-target byte: visible ASCII or obs-text (what httparse takes).
fn is_target(b: u8) -> bool {
    b > b' ' && b != 0x7f
}

/// A field-value byte: HTAB, SP, visible ASCII or obs-text (RFC 9110 §5.5).
fn is_value(b: u8) -> bool {
    b == b'\t' || (b >= b' ' && b != 0x7f)
}

impl HeadScanner {
    /// Scan the next bytes of the head (only the new ones: each byte is looked at once).
    pub fn scan(&mut self, bytes: &[u8]) -> Scan {
        for (i, &b) in bytes.iter().enumerate() {
            match self.step(b) {
                Ok(true) => return Scan::Complete(i + 1),
                Ok(false) => {}
                Err(err) => return Scan::Invalid(err),
            }
        }
        Scan::Partial
    }

    /// One byte; `Ok(true)` when it ends the head.
    fn step(&mut self, b: u8) -> Result<bool, HttpError> {
        use State::*;
        let bad_line = HttpError::BadRequestLine;
        self.state = match (self.state, b) {
            (_, b'\n') if !matches!(self.state, StartCr | Lf | EndLf) => {
                return Err(HttpError::BareLineFeed);
            }
            (Start, b'\r') => StartCr,
            (StartCr, b'\n') => Start,
            (Start | Method, b) if is_token(b) => Method,
            (Method, b' ') => TargetStart,
            (TargetStart | Target, b) if is_target(b) => Target,
            (Target, b' ') => Version(0),
            (Version(n), b) if b == HTTP_SLASH[n as usize] => {
                if n as usize + 1 == HTTP_SLASH.len() {
                    Major
                } else {
                    Version(n + 1)
                }
            }
            (Major, b) if b.is_ascii_digit() => Dot,
            (Dot, b'.') => Minor,
            (Minor, b) if b.is_ascii_digit() => LineEnd,
            (LineEnd, b'\r') | (Value, b'\r') => Lf,
            (Lf, b'\n') => LineStart,
            (LineStart, b'\r') => EndLf,
            (EndLf, b'\n') => {
                self.state = Start;
                return Ok(true);
            }
            (LineStart | Name, b) if is_token(b) => Name,
            (LineStart, b' ' | b'\t') => return Err(HttpError::FoldedHeader),
            (Name, b':') => Value,
            (Value, b) if is_value(b) => Value,
            (LineStart | Name, _) => return Err(HttpError::BadHeaderName),
            (Value, _) => return Err(HttpError::BadHeaderValue),
            (StartCr | Lf | EndLf, _) => return Err(HttpError::BareCarriageReturn),
            _ => return Err(bad_line),
        };
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] =
        b"GET /ws?x=1 HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nUser-Agent: \xc3\xa9\t!\r\n\r\nframes";

    fn scan_all(bytes: &[u8]) -> Scan {
        HeadScanner::default().scan(bytes)
    }

    #[test]
    fn a_valid_head_completes_just_past_its_blank_line() {
        let end = GOOD.len() - "frames".len();
        assert_eq!(scan_all(GOOD), Scan::Complete(end));
        assert_eq!(scan_all(&GOOD[..end - 1]), Scan::Partial);
        // Empty lines before the request line are skipped (RFC 9112 §2.2).
        assert_eq!(
            scan_all(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
            Scan::Complete(22)
        );
    }

    #[test]
    fn byte_by_byte_gives_the_same_answer() {
        let mut scanner = HeadScanner::default();
        let end = GOOD.len() - "frames".len();
        for (i, b) in GOOD.iter().enumerate() {
            let got = scanner.scan(std::slice::from_ref(b));
            if i + 1 == end {
                assert_eq!(got, Scan::Complete(1));
                break;
            }
            assert_eq!(got, Scan::Partial, "byte {i}");
        }
        let mut scanner = HeadScanner::default();
        assert_eq!(scanner.scan(b"GET / HT"), Scan::Partial);
        assert_eq!(
            scanner.scan(b"TP/1.1\nHost"),
            Scan::Invalid(HttpError::BareLineFeed)
        );
    }

    #[test]
    fn junk_is_refused_as_soon_as_it_arrives() {
        use HttpError::*;
        let cases: &[(&[u8], HttpError)] = &[
            (b"G@", BadRequestLine),
            (b"\x16", BadRequestLine),
            (b" ", BadRequestLine),
            (b"GET  ", BadRequestLine),
            (b"GET /a\x01", BadRequestLine),
            (b"GET / F", BadRequestLine),
            (b"GET / HTTP/x", BadRequestLine),
            (b"GET / HTTP/1.1 ", BadRequestLine),
            (b"GET /\r", BadRequestLine),
            (b"\n", BareLineFeed),
            (b"GET / HTTP/1.1\n", BareLineFeed),
            (b"GET / HTTP/1.1\r\nHost: x\n", BareLineFeed),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\n", BareLineFeed),
            (b"GET / HTTP/1.1\rX", BareCarriageReturn),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\rX", BareCarriageReturn),
            (b"GET / HTTP/1.1\r\n ", FoldedHeader),
            (b"GET / HTTP/1.1\r\nHo ", BadHeaderName),
            (b"GET / HTTP/1.1\r\nHost ", BadHeaderName),
            (b"GET / HTTP/1.1\r\n:", BadHeaderName),
            (b"GET / HTTP/1.1\r\nH\xc3", BadHeaderName),
            (b"GET / HTTP/1.1\r\nHost: a\x00", BadHeaderValue),
            (b"GET / HTTP/1.1\r\nHost: a\x7f", BadHeaderValue),
        ];
        for (bytes, err) in cases {
            let text = String::from_utf8_lossy(bytes);
            assert_eq!(scan_all(bytes), Scan::Invalid(*err), "{text:?}");
            // Refused at the offending byte: one byte less is still a possible beginning.
            assert_eq!(
                scan_all(&bytes[..bytes.len() - 1]),
                Scan::Partial,
                "{text:?}"
            );
        }
    }

    #[test]
    fn every_head_httparse_takes_that_it_passes_parses() {
        // What the scanner passes, httparse parses (the converse is not required: it is stricter).
        for head in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"OPTIONS * HTTP/1.1\r\nA:b\r\nC:  d  \r\n\r\n",
            b"GET http://h/p?q=%20#f HTTP/1.0\r\n\r\n",
        ] {
            let Scan::Complete(end) = scan_all(head) else {
                panic!("{:?}", String::from_utf8_lossy(head));
            };
            let mut headers = [httparse::EMPTY_HEADER; 8];
            let parsed = httparse::Request::new(&mut headers).parse(&head[..end]);
            assert!(matches!(parsed, Ok(httparse::Status::Complete(_))));
        }
    }
}
