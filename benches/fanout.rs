//! Fan-out of one prepared tick frame to 10,000 subscribers, in memory (no sockets): what a worker does
//! per tick (`runtime/core/feed.rs`: queue the shared frame on every subscriber's outbox) and per flush (`runtime/core/close.rs`:
//! build the `msghdr` of each dirty outbox, then account for the completed send).
//!
//! ```text
//! cargo bench --bench fanout -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Throughput is in elements = deliveries (10,000 per iteration), so criterion prints deliveries/s and the
//! time per iteration / 10,000 is the user-space cost per delivery, to compare with the ~7 µs the kernel
//! charges per send on the dev VM (perf/RESULTS.md).

use std::hint::black_box;
use std::rc::Rc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringcast::fanout::prepare_text;
use ringcast::fanout::symbols::{LocalFrame, SymbolMap};
use ringcast::runtime::core::outbox::{Backlog, Outbox};

const SUBSCRIBERS: u32 = 10_000;

/// A ~100-byte tick as the harness publishes it.
const TICK: &[u8] =
    br#"{"symbol":"SYM00042","seq":17,"ts":1763790000000000000,"price":"55.17","pad":"xxxxxxxxxxxxxxxx"}"#;

/// One symbol with 10,000 subscriber slots, as in the worker's map.
fn map_with_subscribers() -> (SymbolMap, u32) {
    let mut map = SymbolMap::default();
    let id = map.intern("SYM00042");
    for slot in 0..SUBSCRIBERS {
        map.subscribe(id, slot);
    }
    (map, id)
}

/// Queue `frame` on every subscriber's outbox (allocating it if absent, as `deliver` does).
fn deliver(
    map: &SymbolMap,
    id: u32,
    outboxes: &mut [Option<Box<Outbox>>],
    frame: &LocalFrame,
    backlog: &mut Backlog,
) -> usize {
    let mut pending = 0;
    for &slot in map.entry(id).subscribers() {
        let outbox = outboxes[slot as usize].get_or_insert_with(Box::default);
        outbox.push_tick(id, frame.clone(), backlog);
        pending += outbox.pending_bytes();
    }
    pending
}

/// What `flush` + the send completions do, with the kernel's part left out: one `msghdr` per outbox, the
/// whole of it "sent"; `free_empty` drops emptied outboxes as `on_send` does.
fn drain(outboxes: &mut [Option<Box<Outbox>>], free_empty: bool, backlog: &mut Backlog) -> usize {
    let mut sends = 0;
    for o in outboxes.iter_mut() {
        let Some(outbox) = o.as_mut() else { continue };
        if let Some(msg) = outbox.prepare_send() {
            black_box(msg);
            sends += 1;
            let n = outbox.pending_bytes();
            outbox.complete(n, backlog);
        }
        if free_empty && outbox.is_empty() {
            *o = None;
        }
    }
    sends
}

fn fanout(c: &mut Criterion) {
    let (map, id) = map_with_subscribers();
    let frame: LocalFrame = Rc::new(prepare_text(TICK));
    let mut group = c.benchmark_group("fanout_10k");
    let mut backlog = Backlog::default();
    group.throughput(Throughput::Elements(SUBSCRIBERS as u64));

    // As the worker runs: an outbox exists only while something waits, so each tick allocates 10k boxes
    // and the completions free them.
    let mut outboxes: Vec<Option<Box<Outbox>>> = (0..SUBSCRIBERS).map(|_| None).collect();
    group.bench_function("deliver+drain (outbox allocated per tick)", |b| {
        b.iter(|| {
            black_box(deliver(&map, id, &mut outboxes, &frame, &mut backlog));
            black_box(drain(&mut outboxes, true, &mut backlog))
        })
    });

    // Outboxes kept between ticks (what a busy stream of ticks sees when sends are still in flight).
    let mut kept: Vec<Option<Box<Outbox>>> =
        (0..SUBSCRIBERS).map(|_| Some(Box::default())).collect();
    group.bench_function("deliver+drain (outboxes kept)", |b| {
        b.iter(|| {
            black_box(deliver(&map, id, &mut kept, &frame, &mut backlog));
            black_box(drain(&mut kept, false, &mut backlog))
        })
    });

    // Queueing only (the per-tick part; the drain happens once per loop turn for any number of ticks).
    group.bench_function("deliver only (outboxes kept, drained untimed)", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let t = std::time::Instant::now();
                black_box(deliver(&map, id, &mut kept, &frame, &mut backlog));
                total += t.elapsed();
                drain(&mut kept, false, &mut backlog);
            }
            total
        })
    });

    // Batching: 8 ticks queued per outbox, then one send per outbox carrying all 8 (80k deliveries).
    group.throughput(Throughput::Elements(8 * SUBSCRIBERS as u64));
    group.bench_function("8 ticks then one drain (per-socket batching)", |b| {
        b.iter(|| {
            for _ in 0..8 {
                black_box(deliver(&map, id, &mut outboxes, &frame, &mut backlog));
            }
            black_box(drain(&mut outboxes, true, &mut backlog))
        })
    });
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
