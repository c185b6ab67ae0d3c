//! The ticker on a worker: feed events from ingest go through the symbol map into subscribers' outboxes;
//! client commands change subscriptions. Each delivery is a refcount increment and a queue push: the bytes
//! were built once by ingest, and one send per socket per loop iteration carries everything queued.

use std::cmp::Reverse;
use std::rc::Rc;

use super::{State, WorkerStats};
use crate::config::SlowPolicy;
use crate::fanout::FeedEvent;
use crate::fanout::command::{self, ClientCommand, CommandError};
use crate::fanout::symbols::{Admission, LocalFrame, SymbolId};
use crate::protocol::CloseCode;
use crate::protocol::session::CloseState;
use crate::runtime::conn::Phase;

/// What the slow-consumer policy made of one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Queued,
    Conflated,
    Dropped,
    Close,
}

impl State {
    /// Take every queued feed event (bulk: a burst costs one wake-up and one flush).
    pub(super) fn drain_feed(&mut self) {
        let Some(feed) = self.feed.take() else { return };
        for event in feed.try_iter() {
            self.on_feed_event(event);
        }
        self.feed = Some(feed);
    }

    fn on_feed_event(&mut self, event: FeedEvent) {
        match event {
            FeedEvent::Tick { symbol, frame } => {
                let Some(id) = self.admit_symbol(&symbol) else {
                    return;
                };
                let frame: LocalFrame = Rc::new(frame);
                self.symbols.set_latest(id, frame.clone());
                self.deliver_to_subscribers(id, &frame);
            }
            FeedEvent::Snapshot(ticks) => {
                for (symbol, frame) in ticks.iter() {
                    let Some(id) = self.admit_symbol(symbol) else {
                        continue;
                    };
                    if self
                        .symbols
                        .entry(id)
                        .latest
                        .as_ref()
                        .is_some_and(|old| old[..] == frame[..])
                    {
                        continue; // unchanged: subscribers already have it
                    }
                    let frame: LocalFrame = Rc::new(frame.clone());
                    self.symbols.set_latest(id, frame.clone());
                    self.deliver_to_subscribers(id, &frame);
                }
            }
            FeedEvent::Latest { symbol, frame } => {
                let Some(id) = self.symbols.get(&symbol) else {
                    return; // unsubscribed meanwhile
                };
                let entry = self.symbols.entry_mut(id);
                entry.fetch_pending = false;
                if entry.latest.is_some() {
                    return; // a live tick came first: it is at least as new
                }
                match frame {
                    Some(frame) => {
                        let frame: LocalFrame = Rc::new(frame);
                        self.symbols.set_latest(id, frame.clone());
                        self.deliver_to_subscribers(id, &frame);
                    }
                    // Nobody waits for it any more: forget it, as an unsubscribe would have.
                    None if entry.subscribers.is_empty() => {
                        self.symbols.remove(id);
                    }
                    None => {}
                }
            }
            FeedEvent::Status { frame, .. } => {
                let frame: LocalFrame = Rc::new(frame);
                for slot in 0..self.conns.len() as u32 {
                    if self.is_open(slot) {
                        self.deliver(slot, &frame, None);
                    }
                }
            }
            FeedEvent::User { user, frame } => self.deliver_to_user(&user, &Rc::new(frame)),
            FeedEvent::Retire { symbol, frame } => {
                let Some(id) = self.symbols.get(&symbol) else {
                    return;
                };
                let frame: LocalFrame = Rc::new(frame);
                for slot in self.symbols.remove(id) {
                    self.conns[slot as usize].subs.remove(id);
                    self.deliver(slot, &frame, None);
                }
            }
        }
    }

    /// The map's id for a tick of `symbol` under `--max-symbols`: None if the tick is refused (the map is
    /// full of subscribed symbols; counted and logged at most once a second).
    fn admit_symbol(&mut self, symbol: &str) -> Option<SymbolId> {
        let stats = &self.control.stats;
        match self.symbols.admit(symbol) {
            Admission::Known(id) | Admission::Added(id) | Admission::Evicted { id, .. } => Some(id),
            Admission::Full => {
                WorkerStats::add(&stats.symbol_ticks_refused, 1);
                if let Some(suppressed) = self.symbols_full_log.allow(std::time::Instant::now()) {
                    tracing::warn!(
                        worker = self.id,
                        symbol,
                        limit = self.settings.max_symbols,
                        suppressed,
                        "tick refused: the symbol table is full and every symbol in it has subscribers (--max-symbols)"
                    );
                }
                None
            }
        }
    }

    /// Ask ingest for the stored latest tick of a subscribed symbol this worker has no value for, when it
    /// may have evicted or refused it (at most one request in flight per symbol).
    fn fetch_latest(&mut self, id: SymbolId) {
        let Some(fetch) = &self.settings.fetch else {
            return;
        };
        let entry = self.symbols.entry_mut(id);
        if entry.latest.is_some() || entry.fetch_pending {
            return;
        }
        let request = crate::fanout::FetchRequest {
            worker: self.id,
            symbol: entry.symbol.clone(),
        };
        if fetch.send(request).is_ok() {
            entry.fetch_pending = true;
            WorkerStats::add(&self.control.stats.symbol_fetches, 1);
        }
    }

    fn deliver_to_subscribers(&mut self, id: u32, frame: &LocalFrame) {
        // Index loop: `deliver` may close a slow consumer, which unsubscribes it (swap_remove).
        let mut i = 0;
        while let Some(&slot) = self.symbols.entry(id).subscribers.get(i) {
            if self.deliver(slot, frame, Some(id)) {
                i += 1;
            }
        }
    }

    /// Queue a frame to one connection under the slow-consumer policy; false if that closed it.
    ///
    /// Within `--max-backlog` every frame is queued. Past it: `conflate` replaces the waiting tick of the
    /// same symbol (only the latest value waits), `drop` drops the tick, `close` closes at once; a client
    /// still over the limit after `--slow-grace` is closed with 1013. Control messages are always queued.
    pub(super) fn deliver(
        &mut self,
        slot: u32,
        frame: &LocalFrame,
        symbol: Option<SymbolId>,
    ) -> bool {
        let now = self.now_ms();
        let settings = &self.settings;
        let conn = &mut self.conns[slot as usize];
        let outbox = conn.frames();
        let before = outbox.pending_bytes();
        let mut verdict = Verdict::Queued;
        if before + frame.len() <= settings.max_backlog {
            outbox.over_limit_since_ms = None;
        } else {
            let since = *outbox.over_limit_since_ms.get_or_insert(now);
            verdict = match (settings.slow_policy, symbol) {
                (SlowPolicy::Close, _) => Verdict::Close,
                _ if now.saturating_sub(since) > settings.slow_grace_ms => Verdict::Close,
                (SlowPolicy::Conflate, Some(id)) if outbox.conflate(id, frame) => {
                    Verdict::Conflated
                }
                (SlowPolicy::Drop, Some(_)) => Verdict::Dropped,
                _ => Verdict::Queued,
            };
        }
        if verdict == Verdict::Queued {
            match symbol {
                Some(id) => outbox.push_tick(id, frame.clone()),
                None => outbox.push_shared(frame.clone()),
            }
        }
        self.backlog += outbox.pending_bytes() as i64 - before as i64;
        let stats = &self.control.stats;
        match verdict {
            Verdict::Queued => WorkerStats::add(&stats.deliveries, 1),
            Verdict::Conflated => WorkerStats::add(&stats.conflated, 1),
            Verdict::Dropped => WorkerStats::add(&stats.dropped, 1),
            Verdict::Close => {
                WorkerStats::add(&stats.slow_consumers, 1);
                tracing::debug!(worker = self.id, slot, peer = ?conn.peer, backlog = before, "slow consumer; closing with 1013");
                self.close_with(slot, CloseCode::TRY_AGAIN_LATER, "slow consumer");
                return false;
            }
        }
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(slot);
        }
        true
    }

    pub(super) fn is_open(&self, slot: u32) -> bool {
        matches!(&self.conns[slot as usize].phase, Phase::Open { session, .. } if session.state() == CloseState::Open)
    }

    /// Server-initiated close: send a Close frame and wait for the peer's (bounded by the close timeout).
    pub(super) fn close_with(&mut self, slot: u32, code: CloseCode, reason: &str) {
        self.unsubscribe_all(slot);
        let now = self.now_ms();
        let conn = &mut self.conns[slot as usize];
        let Phase::Open { session, .. } = &mut conn.phase else {
            return;
        };
        if session.state() != CloseState::Open {
            return;
        }
        session.close(code, reason, &self.settings.limits, now, &mut self.scratch);
        if let Some(deadline) = session.deadline_ms() {
            let generation = conn.generation;
            self.timers.push(Reverse((deadline, slot, generation)));
        }
        self.queue_scratch(slot);
    }

    pub(super) fn unsubscribe_all(&mut self, slot: u32) {
        for &id in self.conns[slot as usize].subs.take().iter() {
            self.symbols.unsubscribe(id, slot);
        }
    }

    /// Act on the commands a connection just sent, replying in order.
    pub(super) fn run_commands(&mut self, slot: u32) {
        let now = self.now_ms();
        for cmd in std::mem::take(&mut self.inbox) {
            if let Some(limit) = self.settings.message_limit
                && !self.conns[slot as usize].rate.try_take(&limit, now)
            {
                WorkerStats::add(&self.control.stats.rate_limited, 1);
                tracing::debug!(
                    worker = self.id,
                    slot,
                    "message rate over the limit; closing 1008"
                );
                self.close_with(slot, CloseCode::POLICY_VIOLATION, "message rate limit");
                return;
            }
            match cmd {
                Ok(ClientCommand::Subscribe(symbols)) => self.subscribe(slot, symbols),
                Ok(ClientCommand::Unsubscribe(symbols)) => {
                    for symbol in &symbols {
                        if let Some(id) = self.symbols.get(symbol)
                            && self.conns[slot as usize].subs.remove(id)
                        {
                            self.symbols.unsubscribe(id, slot);
                        }
                    }
                    self.reply(slot, command::unsubscribed_json(&symbols));
                }
                Ok(ClientCommand::Auth(token)) => self.refresh_auth(slot, &token),
                Err(CommandError::Ping) => {}
                Err(err) => {
                    WorkerStats::add(&self.control.stats.bad_commands, 1);
                    self.reply(slot, err.to_json());
                }
            }
        }
    }

    /// Subscribe, then send the ack and the latest tick of each symbol that has one, before any live tick.
    fn subscribe(&mut self, slot: u32, symbols: Vec<String>) {
        let limit = self.settings.max_symbols_per_conn;
        let conn = &self.conns[slot as usize];
        let new = symbols
            .iter()
            .filter(|s| self.symbols.get(s).is_none_or(|id| !conn.subs.contains(id)))
            .count();
        if let Some(denied) = symbols.iter().find(|s| !self.allowed(slot, s)) {
            WorkerStats::add(&self.control.stats.bad_commands, 1);
            return self.reply(slot, CommandError::Forbidden(denied.clone()).to_json());
        }
        if conn.subs.len() + new > limit {
            WorkerStats::add(&self.control.stats.bad_commands, 1);
            return self.reply(slot, CommandError::TooManySymbols { limit }.to_json());
        }
        let mut snapshot = Vec::with_capacity(symbols.len());
        let mut unknown = Vec::new();
        let mut missing = Vec::new();
        let mut added = Vec::with_capacity(new);
        for symbol in &symbols {
            let id = self.symbols.intern(symbol);
            if self.symbols.subscribe(id, slot) {
                added.push(id);
            }
            match &self.symbols.entry(id).latest {
                Some(frame) => snapshot.push((id, frame.clone())),
                None => {
                    unknown.push(symbol.as_str());
                    missing.push(id);
                }
            }
        }
        self.conns[slot as usize].subs.extend(&added);
        let ack = command::subscribed_json(&symbols, &unknown);
        self.reply(slot, ack);
        let conn = &mut self.conns[slot as usize];
        let outbox = conn.frames();
        WorkerStats::add(&self.control.stats.deliveries, snapshot.len() as u64);
        let before = outbox.pending_bytes();
        for (id, frame) in snapshot {
            outbox.push_tick(id, frame);
        }
        self.backlog += (outbox.pending_bytes() - before) as i64;
        // A symbol without a value here may have been evicted: its stored value follows the ack (as a
        // tick), once ingest has read it from Redis.
        if self.symbols.incomplete() {
            for id in missing {
                self.fetch_latest(id);
            }
        }
    }

    /// Queue a control message (JSON text frame) to one connection.
    pub(super) fn reply(&mut self, slot: u32, json: Vec<u8>) {
        crate::protocol::frame::encode_frame(
            crate::protocol::OpCode::Text,
            &json,
            &mut self.scratch,
        );
        self.queue_scratch(slot);
    }
}
