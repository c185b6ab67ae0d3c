//! Client-side plumbing for the abuse suite: loopback source addresses, raw sockets, an incremental
//! frame reader, one-shot HTTP probes and /proc RSS; every read has a deadline.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a health probe waits for its answer before it counts as unanswered.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

pub fn now_s() -> u64 {
    now_us() / 1_000_000
}

/// A distinct loopback source address per attack connection (127.1.x.y; the server still listens on
/// 127.0.0.1 only), so the per-address limit (`--max-conns-per-ip`, set for item 9) judges only the attack
/// that targets it. The bystander and the health prober use 127.0.0.1.
pub fn fresh_source() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8)
}

/// A TCP connection from `source` with a small receive buffer when `rcvbuf` is set (a client that stops
/// reading then falls behind at once).
pub fn connect_from(addr: SocketAddr, source: Ipv4Addr, rcvbuf: Option<usize>) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(size) = rcvbuf {
        sock.set_recv_buffer_size(size).unwrap();
    }
    sock.bind(&SocketAddr::V4(SocketAddrV4::new(source, 0)).into())
        .unwrap();
    sock.connect_timeout(&addr.into(), Duration::from_secs(2))
        .expect("connect");
    let s: TcpStream = sock.into();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// The response head (up to the blank line), read byte by byte within `within`; empty when none came.
pub fn read_head_within(s: &mut TcpStream, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Incremental reader of server frames over a socket with a read timeout (partial frames are kept).
pub struct FrameReader {
    pub s: TcpStream,
    buf: Vec<u8>,
    pub eof: bool,
}

pub enum Frame {
    /// (opcode, payload)
    Data(u8, Vec<u8>),
    /// Nothing complete within the timeout.
    Idle,
    /// The peer closed TCP (or reset it).
    Eof,
}

impl FrameReader {
    pub fn new(s: TcpStream) -> FrameReader {
        FrameReader {
            s,
            buf: Vec::new(),
            eof: false,
        }
    }

    fn parse(&mut self) -> Option<(u8, Vec<u8>)> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        let (len, at) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        if b.len() < at + len {
            return None;
        }
        let opcode = b[0] & 0x0f;
        let payload = b[at..at + len].to_vec();
        self.buf.drain(..at + len);
        Some((opcode, payload))
    }

    /// The next frame, waiting at most `within`.
    pub fn next(&mut self, within: Duration) -> Frame {
        let deadline = Instant::now() + within;
        let mut chunk = [0u8; 65536];
        loop {
            if let Some((op, payload)) = self.parse() {
                return Frame::Data(op, payload);
            }
            if self.eof {
                return Frame::Eof;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Frame::Idle;
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            match self.s.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => self.eof = true,
            }
        }
    }
}

/// GET `path` from 127.0.0.1; Some(()) on a 200 within the probe timeout.
pub fn probe(addr: SocketAddr, path: &str) -> Option<()> {
    probe_text(addr, path).map(|_| ())
}

/// GET `path` from 127.0.0.1: the whole response when its status is 200.
pub fn probe_text(addr: SocketAddr, path: &str) -> Option<String> {
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let mut s = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).ok()?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    text.starts_with("HTTP/1.1 200").then_some(text)
}

/// VmRSS (kB) of `pid` from /proc; 0 if it is gone.
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
