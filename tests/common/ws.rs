//! Raw HTTP and raw WebSocket frames over a socket: the upgrade request, frames built and read byte by
//! byte, close codes, JSON messages. Every read is bounded by the socket's timeout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::KEY;

pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Everything until the peer closes (or 5 s pass).
pub fn read_to_close<S: Read>(s: &mut S) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    out
}

/// Read an HTTP response head byte by byte (so nothing after it is consumed).
pub fn read_head<S: Read>(s: &mut S) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

pub fn status_of(resp: &[u8]) -> u16 {
    std::str::from_utf8(resp)
        .ok()
        .and_then(|t| t.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A masked client frame.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_with_len(fin, opcode, payload, None)
}

/// A masked client frame; `rsv` bits OR-ed into the first byte.
pub fn frame_rsv(rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = frame(true, opcode, payload);
    f[0] |= rsv;
    f
}

/// A masked client frame with the length encoded in a chosen form: `Some(126)` or `Some(127)` forces the
/// extended forms (for non-minimal encodings).
pub fn frame_with_len(fin: bool, opcode: u8, payload: &[u8], form: Option<u8>) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let len = payload.len();
    match form {
        Some(126) => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        Some(127) => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        _ if len < 126 => out.push(0x80 | len as u8),
        _ if len < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// An unmasked (invalid, from a client) frame.
pub fn unmasked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode, payload.len() as u8];
    out.extend_from_slice(payload);
    out
}

/// Read one server frame: (fin, opcode, payload). None on EOF or timeout.
pub fn read_frame<S: Read>(s: &mut S) -> Option<(bool, u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).ok()?;
    assert_eq!(h[1] & 0x80, 0, "server frames are never masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).ok()?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).ok()?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).ok()?;
    Some((h[0] & 0x80 != 0, h[0] & 0x0f, payload))
}

/// Read frames until a Close; returns its status code (None if the payload was empty or the stream ended).
pub fn read_close_code<S: Read>(s: &mut S) -> Option<u16> {
    loop {
        let (_, opcode, payload) = read_frame(s)?;
        if opcode == 0x8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
}

/// Read one text frame's payload.
pub fn read_text<S: Read>(s: &mut S) -> String {
    let (_, opcode, payload) = read_frame(s).expect("a frame");
    assert_eq!(opcode, 0x1, "expected a text frame");
    String::from_utf8(payload).unwrap()
}

/// True if the server closes the TCP connection within `within`.
pub fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
        if start.elapsed() > within {
            return false;
        }
    }
}

/// Send one text message on a raw WebSocket connection.
pub fn send_text<S: Write>(s: &mut S, text: &str) {
    s.write_all(&frame(true, 0x1, text.as_bytes())).unwrap();
}

/// The next text message as JSON, skipping pings.
pub fn read_json<S: Read>(s: &mut S) -> serde_json::Value {
    loop {
        let (_, opcode, payload) = read_frame(s).expect("a message in time");
        match opcode {
            0x1 => return serde_json::from_slice(&payload).unwrap(),
            0x9 | 0xA => {}
            other => panic!("expected a text message, got opcode {other:#x}: {payload:?}"),
        }
    }
}

/// The next JSON message that is not a feed status: a server without a reachable Redis tells every
/// connection `{"type":"feed","status":"down"}` at a moment of its own, which may come before a reply.
pub fn read_reply<S: Read>(s: &mut S) -> serde_json::Value {
    loop {
        let v = read_json(s);
        if v["type"] != "feed" {
            return v;
        }
    }
}
