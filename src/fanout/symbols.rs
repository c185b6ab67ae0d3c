//! The per-core symbol map: symbol → latest prepared frame + this core's subscribers.
//!
//! Owned by one worker, never shared, so no lock and no atomic on the delivery path: the frame a worker
//! received from ingest is wrapped once in an `Rc`, and each subscriber's outbox takes a non-atomic clone.
//!
//! The map also holds both sides of every subscription: a symbol's subscriber list (slots, one
//! contiguous slice: what the fan-out loop walks), and each connection's list (per slot, in
//! [`SymbolMap`]), which records for each of its symbols where the connection sits in that symbol's
//! list. Removing a subscriber is a `swap_remove` at that known position; the subscriber moved into its
//! place has its own entry for the symbol re-pointed, found by a search of its list (O(k), k ≤
//! `--max-symbols-per-conn`, as finding a symbol in one connection's list always is). So subscribe,
//! unsubscribe and a connection's unsubscribe-all cost O(k) per subscription whatever the symbol's number
//! of subscribers. A subscription costs 12 bytes: 4 in the symbol's list (the slot, amortised `Vec`
//! growth) and 8 in the connection's exact-size list (symbol + position). The symbol side keeps no
//! back-pointer (a second 4 bytes per subscriber, with its own growth slack: measured +5 B per idle
//! subscribed connection at 10k connections, perf/RESULTS.md).

use std::collections::HashMap;
use std::rc::Rc;

use super::{PreparedFrame, Symbol};

/// Index of a symbol in its worker's map (stable while the symbol is known).
pub type SymbolId = u32;

/// A frame as held on a worker: the shared bytes behind one non-atomic refcount.
pub type LocalFrame = Rc<PreparedFrame>;

/// No entry (the ends of the eviction list).
const NIL: SymbolId = SymbolId::MAX;

#[derive(Debug)]
pub struct Entry {
    pub symbol: Symbol,
    /// The latest tick of the symbol (sent first to every new subscriber). Read freely; written only
    /// through [`SymbolMap::set_latest`], which keeps the eviction order.
    pub latest: Option<LocalFrame>,
    /// Slots of this worker's connections subscribed to the symbol (see [`Entry::subscribers`]).
    subscribers: Vec<u32>,
    /// The latest value was asked of ingest (the symbol may have been evicted) and not yet answered.
    pub fetch_pending: bool,
    /// `latest` was read from Redis (a snapshot or a fetch), not from the live stream: ingest subscribes
    /// before it reads, so a tick published in between comes again live, and that copy is not sent twice.
    pub from_store: bool,
    /// Neighbours in the eviction list (entries with data and no subscribers, least recently ticked first).
    prev: SymbolId,
    next: SymbolId,
    linked: bool,
}

impl Entry {
    /// Slots of this worker's connections subscribed to the symbol, in no particular order (removing
    /// one moves the last into its place).
    pub fn subscribers(&self) -> &[u32] {
        &self.subscribers
    }
}

/// One subscription as a connection's list holds it: the symbol, and where the connection sits in the
/// symbol's subscriber list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Subscription {
    symbol: SymbolId,
    at: u32,
}

/// A connection's subscriptions: an exact-size boxed slice (16 bytes per slot, no heap for a connection
/// without subscriptions, no spare capacity). Subscribing is rare next to delivering, so growing by one
/// reallocation each time is cheap.
#[derive(Debug, Default)]
struct SymbolList(Box<[Subscription]>);

impl SymbolList {
    fn position(&self, symbol: SymbolId) -> Option<usize> {
        self.0.iter().position(|s| s.symbol == symbol)
    }

    fn push(&mut self, sub: Subscription) {
        let mut all = std::mem::take(&mut self.0).into_vec();
        all.reserve_exact(1);
        all.push(sub);
        self.0 = all.into_boxed_slice();
    }

    /// Remove and return the element at `i`, moving the last into its place.
    fn swap_remove(&mut self, i: usize) -> Subscription {
        let mut all = std::mem::take(&mut self.0).into_vec();
        let removed = all.swap_remove(i);
        self.0 = all.into_boxed_slice();
        removed
    }

    /// The subscription to `symbol` (which the list holds).
    fn get_mut(&mut self, symbol: SymbolId) -> &mut Subscription {
        self.0
            .iter_mut()
            .find(|s| s.symbol == symbol)
            .expect("both sides of a subscription are listed")
    }
}

/// What [`SymbolMap::admit`] made of a tick's symbol.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Already in the map.
    Known(SymbolId),
    /// Added, the map had room.
    Added(SymbolId),
    /// Added in place of `evicted`, the least recently ticked symbol without subscribers.
    Evicted { id: SymbolId, evicted: Symbol },
    /// The map is full and every symbol in it has subscribers: the tick is refused.
    Full,
}

/// The symbols one worker knows, at most `limit` of them for ticks (`--max-symbols`): when a tick of a
/// new symbol finds the map full, the least recently ticked symbol without subscribers is evicted (O(1),
/// an intrusive list); if every symbol has subscribers, the tick is refused. Subscribing always adds the
/// symbol (those entries are bounded by connections × `--max-symbols-per-conn`, and what a client
/// subscribes to is never evicted).
///
/// Connections are known by their slot (`u32`); each slot's subscriptions live here (see the module
/// doc), so a slot must be emptied with [`SymbolMap::unsubscribe_all`] before it is reused.
#[derive(Debug)]
pub struct SymbolMap {
    index: HashMap<Symbol, SymbolId>,
    entries: Vec<Option<Entry>>,
    /// Each connection slot's subscriptions (grown to the highest slot that ever subscribed).
    conns: Vec<SymbolList>,
    free: Vec<SymbolId>,
    limit: usize,
    /// Eviction list: oldest first.
    head: SymbolId,
    tail: SymbolId,
    /// Symbols evicted since the map was made.
    evicted: u64,
    /// Ticks refused since the map was made (full of subscribed symbols).
    refused: u64,
}

impl Default for SymbolMap {
    /// No limit.
    fn default() -> SymbolMap {
        SymbolMap::with_limit(usize::MAX)
    }
}

impl SymbolMap {
    /// Bytes the per-slot table holds for each connection slot (its list's handle; the list itself is
    /// on the heap).
    pub const SLOT_BYTES: usize = size_of::<SymbolList>();

    /// A map holding at most `limit` symbols for ticks (at least 1).
    pub fn with_limit(limit: usize) -> SymbolMap {
        SymbolMap {
            index: HashMap::new(),
            entries: Vec::new(),
            conns: Vec::new(),
            free: Vec::new(),
            limit: limit.max(1),
            head: NIL,
            tail: NIL,
            evicted: 0,
            refused: 0,
        }
    }

    /// Reserve (address space, not memory: pages are touched only as slots subscribe) the per-slot table
    /// for `slots` connections, so it never grows by copying itself: a doubling copy leaves the old
    /// table's pages resident next to the new one (measured: +10-20 B per idle subscribed connection).
    pub fn reserve_slots(&mut self, slots: usize) {
        self.conns
            .reserve_exact(slots.saturating_sub(self.conns.len()));
    }

    pub fn get(&self, symbol: &str) -> Option<SymbolId> {
        self.index.get(symbol).copied()
    }

    /// The id of `symbol`, adding it (with no data yet) when unknown, whatever the limit: for subscribing.
    pub fn intern(&mut self, symbol: &str) -> SymbolId {
        match self.get(symbol) {
            Some(id) => id,
            None => self.insert(symbol),
        }
    }

    /// Add `symbol`, known to be absent.
    fn insert(&mut self, symbol: &str) -> SymbolId {
        let symbol: Symbol = symbol.into();
        let entry = Entry {
            symbol: symbol.clone(),
            latest: None,
            subscribers: Vec::new(),
            fetch_pending: false,
            from_store: false,
            prev: NIL,
            next: NIL,
            linked: false,
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

    /// The id for a tick of `symbol`: known, added, added in place of an evicted symbol, or refused.
    pub fn admit(&mut self, symbol: &str) -> Admission {
        if let Some(id) = self.get(symbol) {
            return Admission::Known(id);
        }
        if self.len() < self.limit {
            return Admission::Added(self.insert(symbol));
        }
        if self.head == NIL {
            self.refused += 1;
            return Admission::Full;
        }
        let victim = self.head;
        let evicted = self.entry(victim).symbol.clone();
        self.remove(victim);
        self.evicted += 1;
        Admission::Evicted {
            id: self.insert(symbol),
            evicted,
        }
    }

    /// Store the latest tick of a symbol; one without subscribers becomes the most recently ticked (and
    /// the map is trimmed back to its limit, should it be over it).
    pub fn set_latest(&mut self, id: SymbolId, frame: LocalFrame) {
        let entry = self.entry_mut(id);
        entry.latest = Some(frame);
        if entry.subscribers.is_empty() {
            self.unlink(id);
            self.push_tail(id);
            self.trim();
        }
    }

    /// Symbols evicted since the map was made.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Whether the map ever evicted or refused a symbol: a symbol it does not know may then still have a
    /// stored latest tick (in Redis).
    pub fn incomplete(&self) -> bool {
        self.evicted > 0 || self.refused > 0
    }

    /// Evict the least recently ticked symbols without subscribers while the map is over its limit (it
    /// goes over when subscribers add symbols; this brings it back once they leave).
    fn trim(&mut self) {
        while self.len() > self.limit && self.head != NIL && self.head != self.tail {
            self.remove(self.head);
            self.evicted += 1;
        }
    }

    pub fn entry(&self, id: SymbolId) -> &Entry {
        self.entries[id as usize].as_ref().expect("live symbol id")
    }

    pub fn entry_mut(&mut self, id: SymbolId) -> &mut Entry {
        self.entries[id as usize].as_mut().expect("live symbol id")
    }

    /// Subscribe connection `slot` to symbol `id`; false (and nothing changes) if it already is. O(k) in
    /// the connection's own subscriptions (the check), O(1) in the symbol's subscribers. A subscribed
    /// symbol is never evicted.
    pub fn subscribe(&mut self, id: SymbolId, slot: u32) -> bool {
        if self.position(slot, id).is_some() {
            return false;
        }
        if self.conns.len() <= slot as usize {
            self.conns
                .resize_with(slot as usize + 1, SymbolList::default);
        }
        let entry = self.entries[id as usize].as_mut().expect("live symbol id");
        let at = entry.subscribers.len() as u32;
        entry.subscribers.push(slot);
        self.conns[slot as usize].push(Subscription { symbol: id, at });
        self.unlink(id);
        true
    }

    /// Unsubscribe connection `slot` from symbol `id`; false (and nothing changes) if it was not
    /// subscribed. A symbol left with neither data nor subscribers is forgotten (once its fetch, if any,
    /// is answered), one left with data and no subscribers may be evicted from now on.
    pub fn unsubscribe(&mut self, id: SymbolId, slot: u32) -> bool {
        let Some(i) = self.position(slot, id) else {
            return false;
        };
        let at = self.conns[slot as usize].swap_remove(i).at;
        self.detach_from_symbol(id, at);
        self.settle(id);
        true
    }

    /// Unsubscribe connection `slot` from everything (it closes): O(k) per subscription.
    pub fn unsubscribe_all(&mut self, slot: u32) {
        let Some(list) = self.conns.get_mut(slot as usize) else {
            return;
        };
        for sub in std::mem::take(list).0.iter() {
            self.detach_from_symbol(sub.symbol, sub.at);
            self.settle(sub.symbol);
        }
    }

    /// Whether connection `slot` is subscribed to symbol `id` (O(k) in its subscriptions).
    pub fn is_subscribed(&self, slot: u32, id: SymbolId) -> bool {
        self.position(slot, id).is_some()
    }

    /// How many symbols connection `slot` is subscribed to.
    pub fn subscription_count(&self, slot: u32) -> usize {
        self.conns.get(slot as usize).map_or(0, |l| l.0.len())
    }

    /// The symbols connection `slot` is subscribed to, in no particular order.
    pub fn subscriptions(&self, slot: u32) -> impl Iterator<Item = SymbolId> + '_ {
        let list = self.conns.get(slot as usize).map_or(&[][..], |l| &l.0[..]);
        list.iter().map(|s| s.symbol)
    }

    fn position(&self, slot: u32, id: SymbolId) -> Option<usize> {
        self.conns.get(slot as usize)?.position(id)
    }

    /// Take the subscriber at `at` out of symbol `id`'s list; the subscriber moved into its place (if
    /// any) has its entry for the symbol re-pointed.
    fn detach_from_symbol(&mut self, id: SymbolId, at: u32) {
        let subscribers = &mut self.entry_mut(id).subscribers;
        subscribers.swap_remove(at as usize);
        if let Some(&moved) = subscribers.get(at as usize) {
            self.conns[moved as usize].get_mut(id).at = at;
        }
    }

    /// After a subscriber left: forget a symbol left with neither data nor subscribers (unless a fetch
    /// is pending), make one left with data evictable.
    fn settle(&mut self, id: SymbolId) {
        let entry = self.entry(id);
        if !entry.subscribers.is_empty() {
            return;
        }
        if entry.latest.is_none() {
            // Kept while a fetch is in flight, so that subscribing again does not ask again.
            if !entry.fetch_pending {
                self.remove(id);
            }
        } else if !entry.linked {
            self.push_tail(id);
            self.trim();
        }
    }

    /// Forget a symbol entirely, unsubscribing its subscribers; returns their slots.
    pub fn remove(&mut self, id: SymbolId) -> Vec<u32> {
        self.unlink(id);
        let entry = self.entries[id as usize].take().expect("live symbol id");
        self.index.remove(&entry.symbol);
        self.free.push(id);
        for &slot in &entry.subscribers {
            let list = &mut self.conns[slot as usize];
            let i = list
                .position(id)
                .expect("both sides of a subscription are listed");
            list.swap_remove(i);
        }
        entry.subscribers
    }

    /// Every symbol id in the map (invariant checks in tests).
    #[cfg(test)]
    pub fn ids(&self) -> impl Iterator<Item = SymbolId> + '_ {
        self.index.values().copied()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn unlink(&mut self, id: SymbolId) {
        let entry = self.entry_mut(id);
        if !entry.linked {
            return;
        }
        let (prev, next) = (entry.prev, entry.next);
        entry.linked = false;
        entry.prev = NIL;
        entry.next = NIL;
        match prev {
            NIL => self.head = next,
            p => self.entry_mut(p).next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.entry_mut(n).prev = prev,
        }
    }

    fn push_tail(&mut self, id: SymbolId) {
        let tail = self.tail;
        let entry = self.entry_mut(id);
        entry.linked = true;
        entry.prev = tail;
        entry.next = NIL;
        match tail {
            NIL => self.head = id,
            t => self.entry_mut(t).next = id,
        }
        self.tail = id;
    }
}

#[cfg(test)]
mod index_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intern_is_idempotent_and_empty_symbols_are_forgotten() {
        let mut map = SymbolMap::default();
        let id = map.intern("EFERT");
        assert_eq!(map.intern("EFERT"), id);
        map.subscribe(id, 7);
        assert_eq!(map.entry(id).subscribers(), &[7]);
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
        map.set_latest(a, frame());
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

    fn frame() -> LocalFrame {
        Rc::new(super::super::prepare_text(b"{}"))
    }

    /// Add a symbol for a tick and store a value.
    fn tick(map: &mut SymbolMap, symbol: &str) -> Admission {
        let admission = map.admit(symbol);
        match admission {
            Admission::Known(id) | Admission::Added(id) | Admission::Evicted { id, .. } => {
                map.set_latest(id, frame())
            }
            Admission::Full => {}
        }
        admission
    }

    fn evicted(a: Admission) -> Option<String> {
        match a {
            Admission::Evicted { evicted, .. } => Some(evicted.to_string()),
            _ => None,
        }
    }

    #[test]
    fn the_least_recently_ticked_unsubscribed_symbol_is_evicted() {
        let mut map = SymbolMap::with_limit(3);
        for s in ["A", "B", "C"] {
            assert!(matches!(tick(&mut map, s), Admission::Added(_)));
        }
        assert!(
            matches!(tick(&mut map, "A"), Admission::Known(_)),
            "A is now the newest"
        );
        assert_eq!(evicted(tick(&mut map, "D")).as_deref(), Some("B"));
        assert_eq!(map.len(), 3);
        assert!(map.get("B").is_none());
        // A subscribed symbol is never evicted, however old.
        let c = map.get("C").unwrap();
        map.subscribe(c, 1);
        assert_eq!(evicted(tick(&mut map, "E")).as_deref(), Some("A"));
        assert_eq!(evicted(tick(&mut map, "F")).as_deref(), Some("D"));
        assert_eq!(evicted(tick(&mut map, "G")).as_deref(), Some("E"));
        // Unsubscribed again, it is evictable (as the most recent).
        map.unsubscribe(c, 1);
        assert_eq!(evicted(tick(&mut map, "H")).as_deref(), Some("F"));
        assert_eq!(evicted(tick(&mut map, "I")).as_deref(), Some("G"));
        assert_eq!(evicted(tick(&mut map, "J")).as_deref(), Some("C"));
    }

    #[test]
    fn full_of_subscribed_symbols_refuses_new_ones() {
        let mut map = SymbolMap::with_limit(2);
        for (slot, s) in ["A", "B"].into_iter().enumerate() {
            tick(&mut map, s);
            let id = map.get(s).unwrap();
            map.subscribe(id, slot as u32);
        }
        assert!(!map.incomplete());
        assert_eq!(tick(&mut map, "C"), Admission::Full);
        assert!(map.incomplete(), "C may have a stored value");
        assert!(matches!(tick(&mut map, "A"), Admission::Known(_)));
        // Subscribing goes past the limit (those entries are bounded by the connections).
        let d = map.intern("D");
        map.subscribe(d, 9);
        assert_eq!(map.len(), 3);
        assert_eq!(tick(&mut map, "E"), Admission::Full);
        // Unsubscribed symbols become evictable; past the limit the oldest goes at once.
        let a = map.get("A").unwrap();
        map.unsubscribe(a, 0);
        assert_eq!(
            map.len(),
            3,
            "A is the only evictable symbol and the newest: kept"
        );
        let b = map.get("B").unwrap();
        map.unsubscribe(b, 1);
        assert!(
            map.get("A").is_none(),
            "over the limit: the older unsubscribed one goes"
        );
        assert_eq!(map.len(), 2);
        assert_eq!(evicted(tick(&mut map, "E")).as_deref(), Some("B"));
        assert_eq!(
            evicted(tick(&mut map, "F")).as_deref(),
            Some("E"),
            "D is subscribed"
        );
        let f = map.get("F").unwrap();
        map.subscribe(f, 3);
        assert_eq!(tick(&mut map, "G"), Admission::Full);
        // Over the limit (D, F subscribed; H added by subscribing): leaving subscribers bring it back.
        let h = map.intern("H");
        map.subscribe(h, 4);
        map.set_latest(h, frame());
        assert_eq!(map.len(), 3);
        let before = map.evicted();
        map.unsubscribe(h, 4);
        assert_eq!(
            map.len(),
            3,
            "H is the newest unsubscribed symbol: kept alone"
        );
        let d = map.get("D").unwrap();
        map.set_latest(d, frame());
        map.unsubscribe(d, 9);
        assert_eq!(map.len(), 2, "back to the limit");
        assert!(map.get("H").is_none(), "the older one went");
        assert_eq!(map.evicted(), before + 1);
    }

    #[test]
    fn a_pending_fetch_keeps_the_entry_until_answered() {
        let mut map = SymbolMap::with_limit(2);
        let x = map.intern("X");
        map.subscribe(x, 1);
        map.entry_mut(x).fetch_pending = true;
        map.unsubscribe(x, 1);
        assert_eq!(
            map.get("X"),
            Some(x),
            "subscribing again will not ask again"
        );
        map.subscribe(x, 2);
        map.unsubscribe(x, 2);
        map.entry_mut(x).fetch_pending = false;
        map.remove(x);
        assert!(map.is_empty());
    }
}
