//! The client's counters and histograms: one `Stats` per report interval, summed into totals.

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::common::*;

#[derive(Default, Clone)]
pub(super) struct Counters {
    pub(super) deliveries: u64,
    pub(super) snapshots: u64,
    pub(super) lost: u64,
    pub(super) duplicated: u64,
    pub(super) out_of_order: u64,
    pub(super) unsubscribed: u64,
    pub(super) unknown: u64,
    pub(super) acks: u64,
    pub(super) control_errors: u64,
    pub(super) bytes: u64,
    pub(super) frames: u64,
    pub(super) reads: u64,
    pub(super) connects: u64,
    pub(super) connect_errors: u64,
    pub(super) handshake_errors: u64,
    /// --tls: handshake failures (certificate refused, alert, EOF) and bad records afterwards.
    pub(super) tls_errors: u64,
    /// --tls: handshakes that resumed a session (`--tls-resume`).
    pub(super) tls_resumed: u64,
    pub(super) protocol_errors: u64,
    pub(super) server_closed: u64,
    pub(super) server_closed_churners: u64,
    pub(super) churn_closes: u64,
    pub(super) churn_deliveries: u64,
}

impl Counters {
    pub(super) fn add(&mut self, o: &Counters) {
        macro_rules! a { ($($f:ident),*) => { $( self.$f += o.$f; )* } }
        a!(
            deliveries,
            snapshots,
            lost,
            duplicated,
            out_of_order,
            unsubscribed,
            unknown,
            acks,
            control_errors,
            bytes,
            frames,
            reads,
            connects,
            connect_errors,
            handshake_errors,
            tls_errors,
            tls_resumed,
            protocol_errors,
            server_closed,
            server_closed_churners,
            churn_closes,
            churn_deliveries
        );
    }
    pub(super) fn to_json(&self) -> Value {
        json!({
            "deliveries": self.deliveries, "snapshots": self.snapshots, "lost": self.lost,
            "duplicated": self.duplicated, "out_of_order": self.out_of_order,
            "unsubscribed": self.unsubscribed, "unknown": self.unknown, "acks": self.acks,
            "control_errors": self.control_errors, "bytes": self.bytes, "frames": self.frames,
            "reads": self.reads, "connects": self.connects, "connect_errors": self.connect_errors,
            "handshake_errors": self.handshake_errors, "tls_errors": self.tls_errors, "tls_resumed": self.tls_resumed, "protocol_errors": self.protocol_errors,
            "server_closed": self.server_closed, "server_closed_churners": self.server_closed_churners, "churn_closes": self.churn_closes,
            "churn_deliveries": self.churn_deliveries,
        })
    }
}

pub(super) struct Stats {
    pub(super) c: Counters,
    /// publish→receive latency, stable (non-churning, reading) connections
    pub(super) hist: Histogram<u64>,
    /// publish→arrival in the client's socket (kernel receive timestamp), the same connections: the
    /// latency without the time deliveries waited for the load generator to read them
    pub(super) arrival_hist: Histogram<u64>,
    /// the same for churning connections
    pub(super) churn_hist: Histogram<u64>,
    /// connect() → upgrade done (TLS handshake included), µs
    pub(super) connect_hist: Histogram<u64>,
    /// Close frames the server started, by "CODE reason" (not the echoes of closes we started).
    pub(super) closes: std::collections::BTreeMap<String, u64>,
    pub(super) since_wall: u64,
    pub(super) since_cpu: u64,
}

impl Stats {
    pub(super) fn new() -> Stats {
        Stats {
            c: Counters::default(),
            hist: new_hist(),
            arrival_hist: new_hist(),
            churn_hist: new_hist(),
            connect_hist: new_hist(),
            closes: Default::default(),
            since_wall: monotonic_ns(),
            since_cpu: self_cpu_ns(),
        }
    }
}
