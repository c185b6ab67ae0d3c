//! WebSocket frames in: the upgrade response, data/control frames, ticks (loss, order, latency).

use serde_json::json;

use super::{Client, State};
use crate::common::*;
use crate::tick::{Item, for_each_item};
use crate::ws;

impl Client {
    /// Parses frames in `data`; returns the bytes used.
    pub(super) fn consume(
        &mut self,
        idx: usize,
        data: &[u8],
        now_rt: u64,
    ) -> Result<usize, Closed> {
        let mut pos = 0;
        if self.conns[idx].state == State::Handshaking {
            let key = self.conns[idx].key;
            match ws::check_response(data, &key) {
                ws::Handshake::Partial => return Ok(0),
                ws::Handshake::Failed(e) => return Err(Closed::Handshake(e)),
                ws::Handshake::Done(n) => {
                    pos = n;
                    self.opened(idx);
                }
            }
        }
        while pos < data.len() {
            match ws::parse_frame(&data[pos..], self.cfg.max_frame) {
                ws::Parsed::Partial => break,
                ws::Parsed::Error(e) => return Err(Closed::Protocol(e)),
                ws::Parsed::Frame(f, used) => {
                    pos += used;
                    self.st.c.frames += 1;
                    match f.opcode {
                        ws::OP_TEXT | ws::OP_BINARY => {
                            if f.fin {
                                self.on_message(idx, f.payload, now_rt);
                            } else {
                                self.conns[idx].frag.clear();
                                self.conns[idx].frag.extend_from_slice(f.payload);
                            }
                        }
                        ws::OP_CONT => {
                            self.conns[idx].frag.extend_from_slice(f.payload);
                            if f.fin {
                                let msg = std::mem::take(&mut self.conns[idx].frag);
                                self.on_message(idx, &msg, now_rt);
                            }
                        }
                        ws::OP_PING => {
                            let mut out = Vec::with_capacity(f.payload.len() + 8);
                            ws::encode_frame(
                                &mut out,
                                ws::OP_PONG,
                                f.payload,
                                self.rng.next() as u32,
                            );
                            self.send(idx, &out);
                        }
                        ws::OP_PONG => {}
                        ws::OP_CLOSE => {
                            self.conns[idx].close_code = match f.payload {
                                [a, b, ..] => u16::from_be_bytes([*a, *b]),
                                _ => 1005,
                            };
                            if self.conns[idx].state != State::Closing {
                                let reason =
                                    String::from_utf8_lossy(f.payload.get(2..).unwrap_or(&[]));
                                let key = format!("{} {reason}", self.conns[idx].close_code);
                                self.storm_closed(&key);
                                *self.st.closes.entry(key).or_insert(0) += 1;
                                let mut out = Vec::with_capacity(8);
                                let code = if f.payload.len() >= 2 {
                                    &f.payload[..2]
                                } else {
                                    &[]
                                };
                                ws::encode_frame(
                                    &mut out,
                                    ws::OP_CLOSE,
                                    code,
                                    self.rng.next() as u32,
                                );
                                self.send(idx, &out);
                            }
                            return Err(Closed::CloseFrame);
                        }
                        _ => return Err(Closed::Protocol("unknown opcode")),
                    }
                }
            }
        }
        Ok(pos)
    }

    fn opened(&mut self, idx: usize) {
        let now = monotonic_ns();
        self.inflight -= 1;
        self.open += 1;
        self.st.c.connects += 1;
        let c = &mut self.conns[idx];
        c.state = State::Open;
        let us = ((now - c.t0) / 1000).clamp(1, 60_000_000);
        let _ = self.st.connect_hist.record(us);
        // subscribe
        let names: Vec<String> = c.syms.iter().map(|&s| symbol_name(s)).collect();
        let msg = if self.cfg.json_form {
            serde_json::to_string(&json!({"op": "subscribe", "symbols": names})).unwrap()
        } else {
            names.join(",")
        };
        c.sub_ns = realtime_ns();
        if c.initial {
            c.initial = false;
            self.initial_pending -= 1;
            self.initial_last = c.sub_ns;
        }
        let mut out = Vec::with_capacity(msg.len() + 14);
        ws::encode_frame(
            &mut out,
            ws::OP_TEXT,
            msg.as_bytes(),
            self.rng.next() as u32,
        );
        self.send(idx, &out);
        self.storm_opened(idx, realtime_ns());
    }

    #[inline]
    fn on_message(&mut self, idx: usize, msg: &[u8], now_rt: u64) {
        let c = &mut self.conns[idx];
        let st = &mut self.st;
        let churner = c.churner;
        let arrival_rt = self.arrival_rt;
        let timeline = &mut self.timeline;
        // storm: ticks published after the restart signal, on a connection made after it
        let mark = match &self.storm {
            Some(s) if c.reconnected && !c.back => s.mark_rt,
            _ => 0,
        };
        for_each_item(msg, |item| match item {
            Item::Tick { symbol, seq, ts_ns } => {
                let Ok(i) = c.syms.binary_search(&symbol) else {
                    st.c.unsubscribed += 1;
                    return;
                };
                if mark > 0 && ts_ns >= mark && i < 64 {
                    c.fresh |= 1 << i;
                }
                let seq = seq as u32;
                let last = c.last[i];
                st.c.deliveries += 1;
                if churner {
                    st.c.churn_deliveries += 1;
                }
                if last == 0 {
                    c.last[i] = seq;
                    if ts_ns < c.sub_ns {
                        st.c.snapshots += 1;
                        return;
                    }
                } else if seq == last.wrapping_add(1) {
                    c.last[i] = seq;
                } else if seq > last {
                    st.c.lost += (seq - last - 1) as u64;
                    c.last[i] = seq;
                } else if seq == last {
                    st.c.duplicated += 1;
                } else {
                    st.c.out_of_order += 1;
                }
                let us = (now_rt.saturating_sub(ts_ns) / 1000).clamp(1, 60_000_000);
                if churner {
                    let _ = st.churn_hist.record(us);
                } else {
                    let _ = st.hist.record(us);
                    let mut arrival_us = 0;
                    if arrival_rt > 0 {
                        arrival_us = (arrival_rt.saturating_sub(ts_ns) / 1000).clamp(1, 60_000_000);
                        let _ = st.arrival_hist.record(arrival_us);
                    }
                    if let Some(t) = timeline.as_mut() {
                        t.record(now_rt, us, arrival_us);
                    }
                }
            }
            Item::Control { error } => {
                if error {
                    st.c.control_errors += 1;
                } else if !c.acked {
                    c.acked = true;
                    st.c.acks += 1;
                }
            }
            Item::Unknown => st.c.unknown += 1,
        });
        if mark > 0 {
            self.storm_check(idx, now_rt);
        }
    }
}

/// Why `consume` stopped reading a connection.
pub(super) enum Closed {
    Protocol(&'static str),
    Handshake(String),
    CloseFrame,
}
