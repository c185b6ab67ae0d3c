//! The two-way subscription index: unit tests, and a randomized test checking both sides agree (and
//! agree with a plain model) after every step of random subscribe / unsubscribe / close / retire /
//! tick (eviction) / fetch sequences.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use super::*;
use crate::ingest::rng::XorShift;

impl SymbolMap {
    /// Panic unless every subscription is listed on both sides, each pointing at the other.
    fn assert_consistent(&self) {
        let mut on_symbol_side = 0;
        for (id, entry) in self.entries.iter().enumerate() {
            let Some(entry) = entry else { continue };
            assert!(
                entry.subscribers.is_empty() || !entry.linked,
                "a subscribed symbol is not evictable"
            );
            for (at, &slot) in entry.subscribers.iter().enumerate() {
                let list = &self.conns[slot as usize];
                let i = list
                    .position(id as SymbolId)
                    .expect("listed on the connection's side");
                assert_eq!(list.0[i].at, at as u32, "slot {slot} of symbol {id}");
                on_symbol_side += 1;
            }
        }
        let mut on_conn_side = 0;
        for (slot, list) in self.conns.iter().enumerate() {
            let mut seen = BTreeSet::new();
            for sub in list.0.iter() {
                assert!(seen.insert(sub.symbol), "symbol listed twice");
                let entry = self.entry(sub.symbol);
                assert_eq!(entry.subscribers[sub.at as usize], slot as u32);
                on_conn_side += 1;
            }
        }
        assert_eq!(on_symbol_side, on_conn_side);
    }
}

fn frame() -> LocalFrame {
    Rc::new(crate::fanout::prepare_text(b"{}"))
}

fn sorted(it: impl IntoIterator<Item = u32>) -> Vec<u32> {
    let mut v: Vec<u32> = it.into_iter().collect();
    v.sort();
    v
}

#[test]
fn removing_from_either_side_repoints_the_moved_subscription() {
    let mut map = SymbolMap::default();
    let (a, b, c) = (map.intern("A"), map.intern("B"), map.intern("C"));
    for slot in 0..5 {
        assert!(map.subscribe(a, slot));
    }
    assert!(!map.subscribe(a, 3), "already subscribed: no change");
    assert!(map.subscribe(b, 1) && map.subscribe(c, 1) && map.subscribe(b, 4));
    map.assert_consistent();
    // Slot 0 sits first in A's list: the last subscriber (4) moves into its place.
    assert!(map.unsubscribe(a, 0));
    assert_eq!(map.entry(a).subscribers(), &[4, 1, 2, 3]);
    map.assert_consistent();
    // A sits first in slot 1's list: C moves into its place.
    assert!(map.unsubscribe(a, 1));
    assert_eq!(sorted(map.subscriptions(1)), sorted([b, c]));
    map.assert_consistent();
    assert!(!map.unsubscribe(a, 1), "not subscribed: no change");
    map.unsubscribe_all(4);
    assert_eq!(map.entry(a).subscribers(), &[2, 3]);
    assert_eq!(map.entry(b).subscribers(), &[1]);
    assert_eq!(map.subscription_count(4), 0);
    map.assert_consistent();
}

#[test]
fn removing_a_symbol_unsubscribes_its_subscribers() {
    let mut map = SymbolMap::default();
    let (a, b) = (map.intern("A"), map.intern("B"));
    for slot in 0..3 {
        map.subscribe(a, slot);
        map.subscribe(b, slot);
    }
    assert_eq!(sorted(map.remove(a)), vec![0, 1, 2]);
    for slot in 0..3 {
        assert!(!map.is_subscribed(slot, a));
        assert!(map.is_subscribed(slot, b));
        assert_eq!(map.subscription_count(slot), 1);
    }
    map.assert_consistent();
    // The id is reused: the old subscribers are not subscribed to the new symbol.
    let c = map.intern("C");
    assert_eq!(c, a);
    assert!(map.entry(c).subscribers().is_empty());
    assert!(!map.is_subscribed(0, c));
}

#[test]
fn unsubscribing_what_was_not_subscribed_keeps_the_symbol() {
    let mut map = SymbolMap::default();
    let a = map.intern("A");
    assert!(!map.unsubscribe(a, 9));
    assert_eq!(
        map.get("A"),
        Some(a),
        "only a leaving subscriber forgets it"
    );
    map.unsubscribe_all(1_000_000); // a slot never seen: nothing to do
}

#[test]
fn random_sequences_keep_both_sides_consistent() {
    const SLOTS: u32 = 12;
    const NAMES: usize = 16;
    let names: Vec<String> = (0..NAMES).map(|i| format!("S{i}")).collect();
    for seed in 1..=40 {
        let mut rng = XorShift::new(seed);
        let mut map = SymbolMap::with_limit(1 + (seed as usize % 8));
        // What each slot is subscribed to.
        let mut model: BTreeMap<u32, BTreeSet<usize>> = BTreeMap::new();
        for _ in 0..2_000 {
            let slot = rng.below(SLOTS as u64) as u32;
            let name = rng.below(NAMES as u64) as usize;
            let symbol = names[name].as_str();
            match rng.below(100) {
                0..40 => {
                    let id = map.intern(symbol);
                    let fresh = model.entry(slot).or_default().insert(name);
                    assert_eq!(map.subscribe(id, slot), fresh);
                }
                40..65 => {
                    let was = model.entry(slot).or_default().remove(&name);
                    let done = map.get(symbol).is_some_and(|id| map.unsubscribe(id, slot));
                    assert_eq!(done, was);
                }
                65..72 => {
                    map.unsubscribe_all(slot);
                    model.remove(&slot);
                }
                72..77 => {
                    if let Some(id) = map.get(symbol) {
                        let slots = map.remove(id);
                        let expected: Vec<u32> = model
                            .iter_mut()
                            .filter_map(|(&s, set)| set.remove(&name).then_some(s))
                            .collect();
                        assert_eq!(sorted(slots), expected);
                    }
                }
                77..95 => match map.admit(symbol) {
                    Admission::Known(id) | Admission::Added(id) | Admission::Evicted { id, .. } => {
                        map.set_latest(id, frame())
                    }
                    Admission::Full => {}
                },
                _ => {
                    // A fetch asked, or answered with nothing (as the worker does).
                    if let Some(id) = map.get(symbol) {
                        let entry = map.entry_mut(id);
                        entry.fetch_pending = !entry.fetch_pending;
                        if !entry.fetch_pending
                            && entry.latest.is_none()
                            && entry.subscribers().is_empty()
                        {
                            map.remove(id);
                        }
                    }
                }
            }
            map.assert_consistent();
            for s in 0..SLOTS {
                let want = model.get(&s).cloned().unwrap_or_default();
                let got: BTreeSet<usize> = map
                    .subscriptions(s)
                    .map(|id| {
                        let sym = &map.entry(id).symbol;
                        names.iter().position(|n| n.as_str() == &sym[..]).unwrap()
                    })
                    .collect();
                assert_eq!(got, want, "seed {seed}, slot {s}");
                for &n in &want {
                    let id = map
                        .get(&names[n])
                        .expect("a subscribed symbol is never evicted");
                    assert!(map.entry(id).subscribers().contains(&s));
                }
            }
        }
    }
}
