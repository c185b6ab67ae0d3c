//! What the tests read of a core: facts about its connections, and the invariants checked after every
//! simulated event (test-only, kept out of the production file; as a child module of `core` it reads
//! the core's private fields).

use crate::runtime::core::Core;
use crate::runtime::core::conn::{Conn, Stage};
use crate::runtime::stats::WorkerStats;

/// Facts about one connection, for tests and invariant checks.
impl Core {
    pub(crate) fn conns(&self) -> &[Conn] {
        &self.conns
    }

    pub(crate) fn stats(&self) -> &WorkerStats {
        &self.stats
    }

    /// The bytes of the send in flight on `slot` (what a `Send` intent points to).
    pub(crate) fn in_flight(&self, slot: u32) -> Vec<&[u8]> {
        self.conns[slot as usize]
            .outbox
            .as_ref()
            .map_or_else(Vec::new, |o| o.in_flight())
    }

    /// Check what must hold after every event: the backlog gauge is the sum of the outboxes, subscriber
    /// lists match the connections' subscriptions both ways (each listed once, only while open), free
    /// slots hold nothing, the open and WebSocket counts match the slots.
    pub(crate) fn check_invariants(&self) {
        let sum: usize = self.conns.iter().map(Conn::pending_bytes).sum();
        assert_eq!(
            self.backlog.bytes(),
            sum,
            "backlog gauge = sum of the outboxes"
        );
        for (slot, conn) in self.conns.iter().enumerate() {
            let slot = slot as u32;
            for id in self.symbols.subscriptions(slot) {
                assert!(
                    self.symbols.entry(id).subscribers().contains(&slot),
                    "slot {slot} subscribed to {id} but not in its list"
                );
            }
            if matches!(conn.stage, Stage::Free) {
                assert!(conn.outbox.is_none() && !conn.sending);
                assert_eq!(
                    self.symbols.subscription_count(slot),
                    0,
                    "free slot {slot} subscribed"
                );
            }
        }
        for id in self.symbols.ids() {
            for &slot in self.symbols.entry(id).subscribers() {
                assert!(
                    self.symbols.is_subscribed(slot, id),
                    "slot {slot} listed under {id} without the subscription"
                );
            }
        }
        // Each subscription listed exactly once (no duplicate on either side), and only while the
        // connection is open (closing unsubscribes).
        let subscriptions: usize = (0..self.conns.len() as u32)
            .map(|slot| self.symbols.subscription_count(slot))
            .sum();
        let listed: usize = self
            .symbols
            .ids()
            .map(|id| self.symbols.entry(id).subscribers().len())
            .sum();
        assert_eq!(subscriptions, listed, "each subscription listed once");
        for slot in 0..self.conns.len() as u32 {
            let mut ids: Vec<_> = self.symbols.subscriptions(slot).collect();
            let count = ids.len();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), count, "slot {slot} lists a symbol twice");
            assert!(
                count == 0 || self.is_open(slot),
                "slot {slot} keeps subscriptions while closing"
            );
        }
        let upgraded = self.conns.iter().filter(|c| c.upgraded).count() as u32;
        assert_eq!(self.upgraded, upgraded, "WebSocket count");
        let open = self
            .conns
            .iter()
            .filter(|c| !matches!(c.stage, Stage::Free))
            .count() as u32;
        assert_eq!(self.open, open, "open slots");
    }
}
