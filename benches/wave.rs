//! A disconnect wave at the symbol-map level: 100,000 connections of one worker, all subscribed to one
//! symbol, close at once; the worker unsubscribes each (`close_now`/`close_with` → `unsubscribe_all`).
//! Only the map's part of the close is timed (the rest of a close does not depend on the subscribers).
//!
//! ```text
//! cargo bench --bench wave -- --warm-up-time 1 --measurement-time 10
//! ```
//!
//! Two orders: slots closing in the order they connected, and in a random order. Before subscriptions
//! were indexed both ways, each close searched the symbol's subscriber list for its slot, O(n) per
//! close and O(n²) per wave (perf/RESULTS.md has both figures and how the "before" was run).

use std::hint::black_box;
use std::rc::Rc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ringcast::fanout::prepare_text;
use ringcast::fanout::symbols::{SymbolId, SymbolMap};
use ringcast::ingest::rng::XorShift;

const SUBSCRIBERS: u32 = 100_000;

/// One symbol with a latest tick (so it stays in the map when its last subscriber leaves) and 100,000
/// subscriber slots.
fn subscribed() -> (SymbolMap, SymbolId) {
    let mut map = SymbolMap::default();
    let id = map.intern("SYM00042");
    map.set_latest(id, Rc::new(prepare_text(b"{}")));
    for slot in 0..SUBSCRIBERS {
        let _ = map.subscribe(id, slot);
    }
    (map, id)
}

/// What the worker does to the symbol map when connection `slot` (subscribed to `id` only) closes.
fn close(map: &mut SymbolMap, _id: SymbolId, slot: u32) {
    map.unsubscribe_all(slot);
}

fn wave(map: &mut SymbolMap, id: SymbolId, order: &[u32]) {
    for &slot in order {
        close(map, id, slot);
    }
    assert!(map.entry(id).subscribers().is_empty());
}

fn waves(c: &mut Criterion) {
    let in_order: Vec<u32> = (0..SUBSCRIBERS).collect();
    let mut shuffled = in_order.clone();
    let mut rng = XorShift::new(7);
    for i in (1..shuffled.len()).rev() {
        shuffled.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut group = c.benchmark_group("wave_100k");
    group.sample_size(10);
    for (name, order) in [("connect order", &in_order), ("random order", &shuffled)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                subscribed,
                |(mut map, id)| {
                    wave(&mut map, id, order);
                    black_box(map)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, waves);
criterion_main!(benches);
