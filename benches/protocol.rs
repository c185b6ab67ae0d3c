//! Hot paths of the sans-IO protocol layer.
//!
//! ```text
//! cargo bench --bench protocol -- --warm-up-time 1 --measurement-time 2
//! ```

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringcast::protocol::frame::{MAX_SERVER_HEADER, OpCode, encode_frame, encode_header};
use ringcast::protocol::handshake::{HeadLimits, find_head_end, parse_request, validate_upgrade};
use ringcast::protocol::mask::apply_mask;
use ringcast::protocol::{Limits, Message, Session};

/// A market tick as the server pushes it: 100 bytes of JSON.
const TICK: &[u8; 100] =
    br#"{"s":"BTC-USD","p":"67123.45","q":"0.01250000","t":1718000000123,"side":"buy","seq":9876543210}     "#;

const BROWSER_REQUEST: &[u8] = b"GET /ws?token=3f9a1c HTTP/1.1\r\n\
    Host: stream.example.com\r\n\
    User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
    Chrome/126.0.0.0 Safari/537.36\r\n\
    Upgrade: websocket\r\n\
    Connection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\
    Origin: https://app.example.com\r\n\
    Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
    Accept-Encoding: gzip, deflate, br, zstd\r\n\
    Accept-Language: en-US,en;q=0.9\r\n\
    Cache-Control: no-cache\r\n\
    Pragma: no-cache\r\n\r\n";

fn mask(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_mask");
    for size in [16, 1024, 64 * 1024] {
        let mut buf = vec![0x5A_u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            // Offset 1: the key is rotated, as for a payload continuing from an earlier read.
            b.iter(|| apply_mask(black_box(&mut buf), black_box([1, 2, 3, 4]), 1))
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_tick");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_header", |b| {
        let mut header = [0; MAX_SERVER_HEADER];
        b.iter(|| {
            encode_header(
                true,
                OpCode::Text,
                black_box(TICK.len() as u64),
                &mut header,
            )
        })
    });
    group.bench_function("encode_frame", |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            out.clear();
            encode_frame(OpCode::Text, black_box(TICK), &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

/// `count` masked client text frames of one tick each.
fn masked_ticks(count: usize) -> Vec<u8> {
    let key = [0x37, 0xFA, 0x21, 0x3D];
    let mut stream = Vec::with_capacity(count * (6 + TICK.len()));
    for _ in 0..count {
        stream.extend_from_slice(&[0x81, 0x80 | TICK.len() as u8]);
        stream.extend_from_slice(&key);
        let start = stream.len();
        stream.extend_from_slice(TICK);
        apply_mask(&mut stream[start..], key, 0);
    }
    stream
}

fn receive(c: &mut Criterion) {
    const FRAMES: usize = 100;
    let stream = masked_ticks(FRAMES);
    let limits = Limits::default();
    let mut group = c.benchmark_group("session_receive");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("100_text_frames_of_100_bytes", |b| {
        let mut session = Session::new();
        let mut out = Vec::new();
        b.iter_batched_ref(
            || stream.clone(),
            |buf| {
                let mut received = 0;
                let consumed = session
                    .receive(buf, &limits, 0, &mut out, |message, _| {
                        if let Message::Text(text) = message {
                            received += text.len();
                        }
                    })
                    .expect("valid frames");
                assert_eq!((consumed, received), (buf.len(), FRAMES * TICK.len()));
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn handshake(c: &mut Criterion) {
    let limits = HeadLimits::default();
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    group.bench_function("browser_upgrade", |b| {
        b.iter(|| {
            let head = black_box(BROWSER_REQUEST);
            let end = find_head_end(head, 0).expect("complete head");
            let request = parse_request(&head[..end], &limits).expect("parses");
            validate_upgrade(&request).expect("valid upgrade").accept
        })
    });
    group.finish();
}

criterion_group!(benches, mask, encode, receive, handshake);
criterion_main!(benches);
