//! Stable-toolchain stand-in for `cargo fuzz run`: replays the committed seeds (`seeds/<target>/`, a
//! fixed count each) and any saved cargo-fuzz corpus, then feeds seeded random, structure-aware inputs
//! to each target for a bounded time.
//!
//! ```text
//! cargo run --release --example replay -- [handshake|frame_decoder|client_command|proxy_header|tls_record|all] [seconds per target] [seed]
//! ```

use std::time::{Duration, Instant};

const TARGETS: [(&str, fn(&[u8])); 5] = [
    ("handshake", ringcast_fuzz::handshake),
    ("frame_decoder", ringcast_fuzz::frame_decoder),
    ("client_command", ringcast_fuzz::client_command),
    ("proxy_header", ringcast_fuzz::proxy_header),
    ("tls_record", ringcast_fuzz::tls_record),
];

/// Inputs committed in `seeds/<target>/`: a missing or emptied seed directory fails the run.
const SEED_COUNT: usize = 8;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map_or("all", String::as_str);
    let seconds: u64 = args.get(1).map_or(10, |s| s.parse().expect("seconds"));
    let seed: u64 = args.get(2).map_or(0x5EED, |s| s.parse().expect("seed"));

    for (name, target) in TARGETS {
        if which != "all" && which != name {
            continue;
        }
        let seeds = replay_dir("seeds", name, target);
        assert_eq!(
            seeds, SEED_COUNT,
            "{name}: {seeds} inputs in fuzz/seeds/{name}/, expected {SEED_COUNT} (update SEED_COUNT with the seeds)"
        );
        let replayed = replay_dir("corpus", name, target);
        let mut rng = Rng(seed | 1);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut runs = 0_u64;
        let mut bytes = 0_u64;
        while Instant::now() < deadline {
            for _ in 0..256 {
                let input = match name {
                    "handshake" => random_request(&mut rng),
                    "client_command" => random_command(&mut rng),
                    "proxy_header" => random_proxy_header(&mut rng),
                    "tls_record" => random_records(&mut rng),
                    _ => random_stream(&mut rng),
                };
                target(&input);
                runs += 1;
                bytes += input.len() as u64;
            }
        }
        println!(
            "{name}: {seeds} seed inputs, {replayed} corpus inputs, {runs} random inputs ({} KiB) in {seconds} s, seed {seed}: ok",
            bytes / 1024
        );
    }
}

/// Run every file of `<dir>/<name>/` (`seeds/`: committed; `corpus/`: written by cargo-fuzz, if it ever
/// ran here); how many ran.
fn replay_dir(dir: &str, name: &str, target: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(dir)
        .join(name);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut count = 0;
    for entry in entries.flatten() {
        if let Ok(input) = std::fs::read(entry.path()) {
            target(&input);
            count += 1;
        }
    }
    count
}

/// xorshift64: deterministic for a given seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Flip, insert or delete a few bytes.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..rng.below(4) {
        if input.is_empty() {
            return;
        }
        let at = rng.below(input.len());
        match rng.below(3) {
            0 => input[at] ^= 1 << rng.below(8),
            1 => input.insert(at, rng.next() as u8),
            _ => {
                input.remove(at);
            }
        }
    }
}

// -- handshake -----------------------------------------------------------------------------------------

const HEADERS: &[&str] = &[
    "Host: example.com",
    "Upgrade: websocket",
    "Upgrade: WebSocket, h2c",
    "Connection: Upgrade",
    "Connection: keep-alive, Upgrade",
    "Connection: keep-alive",
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Version: 8",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j",
    "Sec-WebSocket-Protocol: ticks.v1",
    "Origin: https://app.example.com",
    "X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];
const REQUEST_LINES: &[&str] = &[
    "GET /ws?token=abc HTTP/1.1",
    "GET / HTTP/1.0",
    "POST /ws HTTP/1.1",
    "GET /healthz HTTP/1.1",
    "GET /ws?a&b=&token=x%20y HTTP/1.1",
];

fn random_request(rng: &mut Rng) -> Vec<u8> {
    let mut head = REQUEST_LINES[rng.below(REQUEST_LINES.len())].to_string();
    head.push_str("\r\n");
    for _ in 0..rng.below(20) {
        head.push_str(HEADERS[rng.below(HEADERS.len())]);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if rng.chance(2) {
        mutate(rng, &mut bytes);
    }
    if rng.chance(8) {
        bytes.truncate(rng.below(bytes.len() + 1));
    }
    bytes
}

// -- PROXY protocol header -----------------------------------------------------------------------------

const PROXY_V1: &[&str] = &[
    "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
    "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n",
    "PROXY UNKNOWN\r\n",
    "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
];

fn random_proxy_header(rng: &mut Rng) -> Vec<u8> {
    let mut bytes = if rng.chance(2) {
        PROXY_V1[rng.below(PROXY_V1.len())].as_bytes().to_vec()
    } else {
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        v2.push(if rng.chance(4) { 0x20 } else { 0x21 });
        let (family, len) = [(0x11u8, 12usize), (0x21, 36), (0x31, 216), (0x00, 0)][rng.below(4)];
        v2.push(family);
        let tlvs = rng.below(40);
        v2.extend_from_slice(&((len + tlvs) as u16).to_be_bytes());
        v2.extend(rng.bytes(len + tlvs));
        v2
    };
    if rng.chance(2) {
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    }
    if rng.chance(2) {
        mutate(rng, &mut bytes);
    }
    if rng.chance(4) {
        bytes.truncate(rng.below(bytes.len() + 1));
    }
    bytes
}

// -- client commands -----------------------------------------------------------------------------------

const SYMBOLS: &[&str] = &[
    "EFERT",
    "LUCK",
    "HASCOL",
    "A",
    "x",
    "EFERT",
    "has space",
    "",
    "\\u0041",
    "a\"b",
    "é",
    "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "S1",
    "S2",
];

/// A cap byte, then a plain or JSON command: mostly well-formed, with long listings (past any cap,
/// duplicates included), odd fields and values, and sometimes damaged.
fn random_command(rng: &mut Rng) -> Vec<u8> {
    let mut out = vec![rng.next() as u8];
    let count = match rng.below(4) {
        0 => rng.below(4),
        1 => rng.below(70),
        2 => rng.below(3000),
        _ => rng.below(20),
    };
    let symbol = |rng: &mut Rng| -> String {
        if rng.chance(2) {
            format!("S{}", rng.below(100_000))
        } else {
            SYMBOLS[rng.below(SYMBOLS.len())].to_string()
        }
    };
    let text = match rng.below(5) {
        0 | 1 => (0..count)
            .map(|_| symbol(rng))
            .collect::<Vec<_>>()
            .join(if rng.chance(3) { ", " } else { "," }),
        2 => {
            let token = "t".repeat(rng.below(40));
            let ops = ["auth", "subscribe", "buy", ""];
            format!(
                r#"{{"op":"{}","token":"{token}"}}"#,
                ops[rng.below(ops.len())]
            )
        }
        _ => {
            let ops = ["subscribe", "unsubscribe", "auth", "x"];
            let items: Vec<String> = (0..count)
                .map(|_| match rng.below(12) {
                    0 => "1".into(),
                    1 => "null".into(),
                    2 => "[\"A\"]".into(),
                    _ => format!("\"{}\"", symbol(rng)),
                })
                .collect();
            let extra = if rng.chance(10) {
                r#","extra":true"#
            } else {
                ""
            };
            format!(
                r#"{{"op":"{}","symbols":[{}]{extra}}}"#,
                ops[rng.below(ops.len())],
                items.join(",")
            )
        }
    };
    out.extend_from_slice(text.as_bytes());
    if rng.chance(4) {
        mutate(rng, &mut out);
    }
    out
}

// -- TLS records ---------------------------------------------------------------------------------------

/// A mode byte (odd: a client script, even: arbitrary ciphertext), then random bytes: the script
/// reads them as operations, lengths and split points (see fuzz/src/tls_record.rs).
fn random_records(rng: &mut Rng) -> Vec<u8> {
    let len = if rng.chance(4) {
        rng.below(2000)
    } else {
        rng.below(120)
    };
    let mut input = rng.bytes(len + 1);
    if input.len() > 1 && rng.chance(3) {
        // Ciphertext that starts like a record.
        input.splice(
            1..1,
            [
                rng.next() as u8,
                23,
                3,
                3,
                rng.below(0x42) as u8,
                rng.next() as u8,
            ],
        );
    }
    input
}

// -- frames --------------------------------------------------------------------------------------------

/// Two read-size bytes, then a few frames, mostly well-formed and occasionally damaged.
fn random_stream(rng: &mut Rng) -> Vec<u8> {
    let mut stream = rng.bytes(2);
    for _ in 0..rng.below(8) {
        random_frame(rng, &mut stream);
    }
    if rng.chance(4) {
        mutate(rng, &mut stream);
    }
    stream
}

fn random_frame(rng: &mut Rng, out: &mut Vec<u8>) {
    const OPCODES: [u8; 8] = [0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3, 0xB];
    let choices = if rng.chance(10) { 8 } else { 6 };
    let opcode = OPCODES[rng.below(choices)];
    let fin = !rng.chance(3);
    let payload = random_payload(rng, opcode);
    let mut b0 = u8::from(fin) << 7 | opcode;
    if rng.chance(30) {
        b0 |= 0x40;
    }
    out.push(b0);
    let masked = if rng.chance(30) { 0 } else { 0x80 };
    let len = payload.len();
    match (len, rng.chance(20)) {
        (0..=125, false) => out.push(masked | len as u8),
        (0..=0xFFFF, false) | (0..=125, true) => {
            out.push(masked | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(masked | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    let key = rng.bytes(4);
    if masked != 0 {
        out.extend_from_slice(&key);
    }
    let start = out.len();
    out.extend_from_slice(&payload);
    if masked != 0 {
        ringcast::protocol::mask::apply_mask(&mut out[start..], key.try_into().unwrap(), 0);
    }
}

fn random_payload(rng: &mut Rng, opcode: u8) -> Vec<u8> {
    let len = match rng.below(10) {
        0 => 0,
        1 => 125 + rng.below(3),
        2 => rng.below(70_000),
        _ => rng.below(40),
    };
    match (opcode, rng.below(3)) {
        (0x8, 0) => {
            let codes = [1000_u16, 1001, 1005, 1016, 3000, 4999, 5000];
            let mut p = codes[rng.below(codes.len())].to_be_bytes().to_vec();
            p.extend_from_slice("bye ✓".as_bytes());
            p.truncate(rng.below(p.len() + 1));
            p
        }
        (0x0 | 0x1, 0 | 1) => {
            let text = "tick €1.5 κόσμε 🚀 ".repeat(len / 20 + 1);
            let mut p = text.into_bytes();
            p.truncate(len);
            p
        }
        _ => rng.bytes(len),
    }
}
