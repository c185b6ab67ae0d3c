//! What an idle subscribed connection costs the core, counted rather than inferred from RSS (the idle
//! benchmark's figure moves by ±10 B from run to run; perf/RESULTS.md). The test allocator
//! (`crate::alloc::counting`) counts the heap the core holds, in mimalloc's size classes; a
//! connection's slots in the connection table and in the symbol map's per-slot table are reserved up
//! front (not heap growth), so they are added by size. What this leaves out is only what RSS adds on top:
//! partly used pages.

use std::mem::size_of;

use super::sim::{self, Sim, snapshot};
use crate::alloc::counting;
use crate::fanout::symbols::SymbolMap;
use crate::runtime::core::conn::Conn;

/// Connections, and symbols they spread over: 100 subscribers per symbol, as in the idle benchmark
/// (10,000 connections × 1 of 100 symbols).
const CONNS: u32 = 2_000;
const SYMBOLS: u32 = 20;

/// The budget: the idle figure before the worker core split was 164 B (perf/RESULTS.md); this is
/// generous, to catch a new per-connection allocation or a wider slot, not a byte.
const BUDGET: f64 = 200.0;

/// The heap a core holds after `conns` clients connected, upgraded and subscribed to one symbol each
/// (round robin), and read everything they were sent.
fn core_heap(conns: u32) -> isize {
    let mut settings = sim::settings();
    settings.max_conns = CONNS;
    let mut sim = Sim::with_table(settings, (CONNS + 64, CONNS));
    // O(connections) per step: checked once at the end instead.
    sim.check_invariants = false;
    let names: Vec<String> = (0..SYMBOLS).map(|i| format!("SYM{i}")).collect();
    let ticks: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "{}")).collect();
    sim.feed(snapshot(&ticks));
    for i in 0..conns {
        let slot = sim.open_ws();
        let name = &names[(i % SYMBOLS) as usize];
        sim.send_text(
            slot,
            &format!(r#"{{"op":"subscribe","symbols":["{name}"]}}"#),
        );
        assert_eq!(sim.texts(slot).len(), 2, "the ack and the snapshot");
    }
    sim.core.check_invariants();
    let core = sim.core;
    let before = counting::held();
    drop(core);
    before - counting::held()
}

#[test]
fn an_idle_subscribed_connection_costs_the_core_less_than_its_budget() {
    let empty = core_heap(0);
    let full = core_heap(CONNS);
    let heap = (full - empty) as f64 / CONNS as f64;
    let slots = (size_of::<Conn>() + SymbolMap::SLOT_BYTES) as f64;
    let total = heap + slots;
    eprintln!(
        "core memory per idle subscribed connection: {total:.1} B = slots {slots} B \
         (Conn {} + symbol map {}) + heap {heap:.1} B ({CONNS} connections, 1 of {SYMBOLS} symbols each)",
        size_of::<Conn>(),
        SymbolMap::SLOT_BYTES
    );
    assert!(
        total <= BUDGET,
        "{total:.1} B per connection, budget {BUDGET} B"
    );
}
