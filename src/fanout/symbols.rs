//! The per-core symbol map: symbol → latest prepared frame + this core's subscribers.
