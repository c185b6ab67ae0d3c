//! The per-core symbol map: symbol → latest prepared frame + this core's subscribers.
//!
//! Owned by one worker, never shared, so no lock and no atomic on the delivery path: the frame a worker
//! received from ingest is wrapped once in an `Rc`, and each subscriber's outbox takes a non-atomic clone.

use std::collections::HashMap;
use std::rc::Rc;

use super::{PreparedFrame, Symbol};

/// Index of a symbol in its worker's map (stable while the symbol is known).
pub type SymbolId = u32;

/// A frame as held on a worker: the shared bytes behind one non-atomic refcount.
pub type LocalFrame = Rc<PreparedFrame>;

#[derive(Debug)]
pub struct Entry {
    pub symbol: Symbol,
    /// The latest tick of the symbol (sent first to every new subscriber).
    pub latest: Option<LocalFrame>,
    /// Slots of this worker's connections subscribed to the symbol.
    pub subscribers: Vec<u32>,
}

#[derive(Debug, Default)]
pub struct SymbolMap {
    index: HashMap<Symbol, SymbolId>,
    entries: Vec<Option<Entry>>,
    free: Vec<SymbolId>,
}

impl SymbolMap {
    pub fn get(&self, symbol: &str) -> Option<SymbolId> {
        self.index.get(symbol).copied()
    }

    /// The id of `symbol`, adding it (with no data yet) when unknown.
    pub fn intern(&mut self, symbol: &str) -> SymbolId {
        if let Some(id) = self.get(symbol) {
            return id;
        }
        let symbol: Symbol = symbol.into();
        let entry = Entry {
            symbol: symbol.clone(),
            latest: None,
            subscribers: Vec::new(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize] = Some(entry);
                id
            }
            None => {
                self.entries.push(Some(entry));
                (self.entries.len() - 1) as SymbolId
            }
        };
        self.index.insert(symbol, id);
        id
    }

    pub fn entry(&self, id: SymbolId) -> &Entry {
        self.entries[id as usize].as_ref().expect("live symbol id")
    }

    pub fn entry_mut(&mut self, id: SymbolId) -> &mut Entry {
        self.entries[id as usize].as_mut().expect("live symbol id")
    }

    /// Add a subscriber not yet subscribed (the caller checks its connection's own short list first:
    /// searching a popular symbol's subscribers would cost O(subscribers) per request).
    pub fn subscribe(&mut self, id: SymbolId, slot: u32) {
        let subs = &mut self.entry_mut(id).subscribers;
        debug_assert!(!subs.contains(&slot), "already subscribed");
        subs.push(slot);
    }

    /// Remove a subscriber; a symbol left with neither data nor subscribers is forgotten.
    pub fn unsubscribe(&mut self, id: SymbolId, slot: u32) {
        let entry = self.entry_mut(id);
        if let Some(pos) = entry.subscribers.iter().position(|&s| s == slot) {
            entry.subscribers.swap_remove(pos);
        }
        if entry.subscribers.is_empty() && entry.latest.is_none() {
            self.remove(id);
        }
    }

    /// Forget a symbol entirely; returns its subscribers.
    pub fn remove(&mut self, id: SymbolId) -> Vec<u32> {
        let entry = self.entries[id as usize].take().expect("live symbol id");
        self.index.remove(&entry.symbol);
        self.free.push(id);
        entry.subscribers
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intern_is_idempotent_and_empty_symbols_are_forgotten() {
        let mut map = SymbolMap::default();
        let id = map.intern("EFERT");
        assert_eq!(map.intern("EFERT"), id);
        map.subscribe(id, 7);
        assert_eq!(map.entry(id).subscribers, vec![7]);
        map.unsubscribe(id, 7);
        assert!(
            map.get("EFERT").is_none(),
            "no data, no subscribers: forgotten"
        );
    }

    #[test]
    fn symbols_with_data_stay_and_ids_are_reused_after_removal() {
        let mut map = SymbolMap::default();
        let a = map.intern("LUCK");
        map.entry_mut(a).latest = Some(Rc::new(super::super::prepare_text(b"{}")));
        map.subscribe(a, 1);
        map.unsubscribe(a, 1);
        assert_eq!(
            map.get("LUCK"),
            Some(a),
            "keeps its latest value for the next subscriber"
        );
        assert!(map.remove(a).is_empty());
        let b = map.intern("HASCOL");
        assert_eq!(a, b);
        assert_eq!(map.len(), 1);
    }
}
