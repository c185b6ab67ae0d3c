//! The ticker on a worker: feed events from ingest go through the symbol map into subscribers' outboxes;
//! client commands change subscriptions. Each delivery is a refcount increment and a queue push: the bytes
//! were built once by ingest, and one send per socket per loop iteration carries everything queued.

use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Core, Inbound, SlowPolicy, WorkerStats};
use crate::fanout::FeedEvent;
use crate::fanout::command::{self, ClientCommand, CommandError};
use crate::fanout::symbols::{Admission, LocalFrame, SymbolId};
use crate::protocol::CloseCode;
use crate::protocol::session::CloseState;
use crate::runtime::core::conn::Stage;

/// Something to queue to one connection. Everything a client can be sent after the upgrade goes through
/// `deliver`, so all of it counts against its backlog and obeys the slow-consumer policy.
pub(super) enum Outgoing<'a> {
    /// A tick of a symbol (live or a subscription's snapshot): conflated or dropped past the backlog.
    Tick(SymbolId, &'a LocalFrame),
    /// A control frame shared by many connections (feed status, retirement, a per-user message).
    Shared(&'a LocalFrame),
    /// A reply built for this connection (ack, error, auth status).
    Owned(Vec<u8>),
    /// The answer to a Ping with this payload: replaces the pong still waiting, if any.
    Pong(&'a [u8]),
}

impl Outgoing<'_> {
    fn len(&self) -> usize {
        match self {
            Outgoing::Tick(_, frame) | Outgoing::Shared(frame) => frame.len(),
            Outgoing::Owned(bytes) => bytes.len(),
            Outgoing::Pong(payload) => payload.len() + 2,
        }
    }
}

/// What the slow-consumer policy made of one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Queued,
    Conflated,
    Dropped,
    Close,
}

impl Core {
    pub(super) fn on_feed_event(&mut self, event: FeedEvent) {
        match event {
            FeedEvent::Tick {
                symbol,
                frame,
                ts_us,
            } => {
                let Some(id) = self.admit_symbol(&symbol) else {
                    return;
                };
                let entry = self.symbols.entry_mut(id);
                if std::mem::take(&mut entry.from_store)
                    && entry
                        .latest
                        .as_ref()
                        .is_some_and(|old| old[..] == frame[..])
                {
                    // The live copy of the tick a snapshot or fetch already gave (ingest subscribes,
                    // then reads): subscribers have it, as a snapshot or a live tick.
                    return;
                }
                let frame: LocalFrame = Rc::new(frame);
                self.symbols.set_latest(id, frame.clone());
                self.deliver_to_subscribers(id, &frame);
                if let Some(ts) = ts_us
                    && !self.symbols.entry(id).subscribers().is_empty()
                {
                    // Queued to every subscriber's outbox: the sends go out at the end of this loop
                    // iteration. One clock read per tick (vDSO), not per delivery.
                    let now_us = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_micros() as u64);
                    self.stats
                        .publish_to_send
                        .observe(now_us.saturating_sub(ts));
                }
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
                    self.symbols.entry_mut(id).from_store = true;
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
                        self.symbols.entry_mut(id).from_store = true;
                        self.deliver_to_subscribers(id, &frame);
                    }
                    // Nobody waits for it any more: forget it, as an unsubscribe would have.
                    None if entry.subscribers().is_empty() => {
                        self.symbols.remove(id);
                    }
                    None => {}
                }
            }
            FeedEvent::Status { up, frame } => {
                let frame: LocalFrame = Rc::new(frame);
                // Kept while down: a client that connects during the outage is told at once.
                self.feed_down = (!up).then(|| frame.clone());
                for slot in 0..self.conns.len() as u32 {
                    if self.is_open(slot) {
                        self.deliver(slot, Outgoing::Shared(&frame));
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
                    self.deliver(slot, Outgoing::Shared(&frame));
                }
            }
        }
    }

    /// The map's id for a tick of `symbol` under `--max-symbols`: None if the tick is refused (the map is
    /// full of subscribed symbols; counted and logged at most once a second).
    fn admit_symbol(&mut self, symbol: &str) -> Option<SymbolId> {
        let stats = &self.stats;
        match self.symbols.admit(symbol) {
            Admission::Known(id) | Admission::Added(id) | Admission::Evicted { id, .. } => Some(id),
            Admission::Full => {
                WorkerStats::add(&stats.symbol_ticks_refused, 1);
                if let Some(suppressed) = self.symbols_full_log_allowed() {
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

    /// At most one log line a second about refused ticks: `Some(lines suppressed since the last)`.
    fn symbols_full_log_allowed(&mut self) -> Option<u64> {
        let (last, suppressed) = &mut self.symbols_full_log;
        if last.is_some_and(|at| self.now_ms < at + 1000) {
            *suppressed += 1;
            return None;
        }
        *last = Some(self.now_ms);
        Some(std::mem::take(suppressed))
    }

    /// Ask ingest for the stored latest tick of a subscribed symbol this worker has no value for, when it
    /// may have evicted or refused it (at most one request in flight per symbol): queued for the driver
    /// (`Core::next_fetch`), which reports whether ingest got it (`Core::on_fetch_sent`).
    fn fetch_latest(&mut self, id: SymbolId) {
        if !self.settings.fetch_latest {
            return;
        }
        let entry = self.symbols.entry_mut(id);
        if entry.latest.is_some() || entry.fetch_pending {
            return;
        }
        entry.fetch_pending = true;
        self.fetches.push_back(entry.symbol.clone());
    }

    fn deliver_to_subscribers(&mut self, id: u32, frame: &LocalFrame) {
        // Index loop: `deliver` may close a slow consumer, which unsubscribes it (swap_remove).
        let mut i = 0;
        while let Some(&slot) = self.symbols.entry(id).subscribers().get(i) {
            if self.deliver(slot, Outgoing::Tick(id, frame)) {
                i += 1;
            }
        }
    }

    /// Queue bytes to one connection under the slow-consumer policy; false if that closed it.
    ///
    /// Within `--max-backlog` everything is queued. Past it: `conflate` replaces the waiting tick of the
    /// same symbol (only the latest value waits), `drop` drops the tick, `close` closes at once; a client
    /// still over the limit after `--slow-grace` is closed with 1013 (by the timer armed here when the
    /// limit is first passed, even if nothing more is sent to it). Other frames are queued within the
    /// grace (a pong replaces the one still waiting, so at most one waits).
    pub(super) fn deliver(&mut self, slot: u32, item: Outgoing<'_>) -> bool {
        let now = self.now_ms;
        let settings = &self.settings;
        let conn = &mut self.conns[slot as usize];
        let generation = conn.generation;
        let outbox = conn.frames();
        let before = outbox.pending_bytes();
        let mut verdict = Verdict::Queued;
        if before + item.len() <= settings.max_backlog {
            outbox.over_limit_since_ms = None;
        } else {
            let since = *outbox.over_limit_since_ms.get_or_insert(now);
            if outbox.slow_timer_ms.is_none() {
                let due = since + settings.slow_grace_ms + 1;
                outbox.slow_timer_ms = Some(due);
                self.timers.push(std::cmp::Reverse((due, slot, generation)));
            }
            verdict = match (settings.slow_policy, &item) {
                (SlowPolicy::Close, _) => Verdict::Close,
                _ if now.saturating_sub(since) > settings.slow_grace_ms => Verdict::Close,
                (SlowPolicy::Conflate, Outgoing::Tick(id, frame))
                    if outbox.conflate(*id, frame, &mut self.backlog) =>
                {
                    Verdict::Conflated
                }
                (SlowPolicy::Drop, Outgoing::Tick(..)) => Verdict::Dropped,
                _ => Verdict::Queued,
            };
        }
        let feed = matches!(item, Outgoing::Tick(..) | Outgoing::Shared(_));
        if verdict == Verdict::Queued {
            match item {
                Outgoing::Tick(id, frame) => outbox.push_tick(id, frame.clone(), &mut self.backlog),
                Outgoing::Shared(frame) => outbox.push_shared(frame.clone(), &mut self.backlog),
                Outgoing::Owned(bytes) => outbox.push_owned(bytes, &mut self.backlog),
                Outgoing::Pong(payload) => outbox.set_pong(payload, &mut self.backlog),
            }
        }
        let stats = &self.stats;
        match verdict {
            Verdict::Queued if feed => WorkerStats::add(&stats.deliveries, 1),
            Verdict::Queued => {}
            Verdict::Conflated => WorkerStats::add(&stats.conflated, 1),
            Verdict::Dropped => WorkerStats::add(&stats.dropped, 1),
            Verdict::Close => {
                self.close_slow(slot, before);
                return false;
            }
        }
        self.mark_dirty(slot);
        true
    }

    fn close_slow(&mut self, slot: u32, backlog: usize) {
        WorkerStats::add(&self.stats.slow_consumers, 1);
        let peer = self.conns[slot as usize].peer;
        tracing::debug!(
            worker = self.id,
            slot,
            ?peer,
            backlog,
            "slow consumer; closing with 1013"
        );
        crate::admission::refusals::refused(&self.stats.refusals, 1013, "slow consumer", peer);
        self.send_close(slot, CloseCode::TRY_AGAIN_LATER, "slow consumer");
    }

    /// A timer fired for an open connection: if it is the slow-grace timer and the connection is still
    /// over its backlog past `--slow-grace`, close it with 1013 (no further tick needed); if its clock
    /// restarted since, arm the timer again. False if the connection was closed.
    pub(super) fn slow_timer(&mut self, slot: u32, now: u64) -> bool {
        if !self.is_open(slot) {
            return true; // already closing: its close timeout ends it
        }
        let grace = self.settings.slow_grace_ms;
        let conn = &mut self.conns[slot as usize];
        let generation = conn.generation;
        let Some(frames) = conn.frames_if_any() else {
            return true;
        };
        if frames.slow_timer_ms.is_none_or(|due| due > now) {
            return true; // another timer of this connection
        }
        frames.slow_timer_ms = None;
        let Some(since) = frames.over_limit_since_ms else {
            return true; // back under the limit since
        };
        if now.saturating_sub(since) > grace {
            let backlog = frames.pending_bytes();
            self.close_slow(slot, backlog);
            return false;
        }
        let due = since + grace + 1;
        frames.slow_timer_ms = Some(due);
        self.timers.push(std::cmp::Reverse((due, slot, generation)));
        true
    }

    pub(super) fn is_open(&self, slot: u32) -> bool {
        matches!(&self.conns[slot as usize].stage, Stage::Open { session, .. } if session.state() == CloseState::Open)
    }

    pub(super) fn unsubscribe_all(&mut self, slot: u32) {
        self.symbols.unsubscribe_all(slot);
    }

    /// Act on the commands (and pings) a connection just sent, replying in order. Each costs work
    /// bounded by `--max-symbols-per-conn` and counts against `--max-msgs-per-s` (a flood is closed with
    /// 1008 at the first one over), and the batch is bounded by one receive buffer, so one client never
    /// holds the worker for long. Stops as soon as the connection is closed.
    pub(super) fn run_commands(&mut self, slot: u32) {
        let mut inbox = std::mem::take(&mut self.inbox);
        self.run_inbox(slot, &mut inbox);
        inbox.clear();
        self.inbox = inbox;
    }

    fn run_inbox(&mut self, slot: u32, inbox: &mut Vec<Inbound>) {
        let now = self.now_ms;
        for cmd in inbox.drain(..) {
            if !self.is_open(slot) {
                return;
            }
            if let Some(limit) = self.settings.message_limit
                && !self.conns[slot as usize].rate.try_take(&limit, now)
            {
                WorkerStats::add(&self.stats.rate_limited, 1);
                crate::admission::refusals::refused(
                    &self.stats.refusals,
                    1008,
                    "message rate limit",
                    self.conns[slot as usize].peer,
                );
                self.send_close(slot, CloseCode::POLICY_VIOLATION, "message rate limit");
                return;
            }
            let cmd = match cmd {
                Inbound::Ping(payload) => {
                    if !self.deliver(slot, Outgoing::Pong(payload.get())) {
                        return;
                    }
                    continue;
                }
                Inbound::Command(cmd) => cmd,
            };
            match cmd {
                Ok(ClientCommand::Subscribe(symbols)) => self.subscribe(slot, symbols),
                Ok(ClientCommand::Unsubscribe(symbols)) => {
                    for symbol in &symbols {
                        if let Some(id) = self.symbols.get(symbol) {
                            self.symbols.unsubscribe(id, slot);
                        }
                    }
                    self.reply(slot, command::unsubscribed_json(&symbols));
                }
                Ok(ClientCommand::Auth(token)) => self.refresh_auth(slot, &token),
                // Rate-limited above and queued through `deliver` (backlog) like any reply.
                Ok(ClientCommand::Ping) => {
                    if !self.reply(slot, command::pong_json()) {
                        return;
                    }
                }
                Err(err) => {
                    WorkerStats::add(&self.stats.bad_commands, 1);
                    self.reply(slot, err.to_json());
                }
            }
        }
    }

    /// Subscribe, then send the ack and the latest tick of each newly subscribed symbol that has one,
    /// before any live tick. A symbol already subscribed gets no snapshot again (the client has it, and
    /// live ticks since). All of it goes through `deliver`: it counts against the backlog.
    fn subscribe(&mut self, slot: u32, symbols: Vec<String>) {
        let limit = self.settings.max_symbols_per_conn;
        if let Some(denied) = symbols.iter().find(|s| !self.allowed(slot, s)) {
            WorkerStats::add(&self.stats.bad_commands, 1);
            self.reply(slot, CommandError::Forbidden(denied.clone()).to_json());
            return;
        }
        let new = symbols
            .iter()
            .filter(|s| {
                self.symbols
                    .get(s)
                    .is_none_or(|id| !self.symbols.is_subscribed(slot, id))
            })
            .count();
        if self.symbols.subscription_count(slot) + new > limit {
            WorkerStats::add(&self.stats.bad_commands, 1);
            self.reply(slot, CommandError::TooManySymbols { limit }.to_json());
            return;
        }
        let mut snapshot = Vec::new();
        let mut unknown = Vec::new();
        let mut missing = Vec::new();
        for symbol in &symbols {
            let id = self.symbols.intern(symbol);
            let fresh = self.symbols.subscribe(id, slot);
            match &self.symbols.entry(id).latest {
                Some(frame) if fresh => snapshot.push((id, frame.clone())),
                Some(_) => {}
                None => {
                    unknown.push(symbol.as_str());
                    if fresh {
                        missing.push(id);
                    }
                }
            }
        }
        let ack = command::subscribed_json(&symbols, &unknown);
        if !self.reply(slot, ack) {
            return;
        }
        for (id, frame) in snapshot {
            if !self.deliver(slot, Outgoing::Tick(id, &frame)) {
                return;
            }
        }
        // A symbol without a value here may have been evicted: its stored value follows the ack (as a
        // tick), once ingest has read it from Redis.
        if self.symbols.incomplete() {
            for id in missing {
                self.fetch_latest(id);
            }
        }
    }

    /// Queue a control message (JSON text frame) to one connection; false if that closed it.
    pub(super) fn reply(&mut self, slot: u32, json: Vec<u8>) -> bool {
        let mut frame = Vec::with_capacity(json.len() + crate::protocol::frame::MAX_SERVER_HEADER);
        crate::protocol::frame::encode_frame(crate::protocol::OpCode::Text, &json, &mut frame);
        self.deliver(slot, Outgoing::Owned(frame))
    }
}
