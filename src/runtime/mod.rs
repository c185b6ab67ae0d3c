//! The runtime: one worker thread per core, each with its own io_uring, listener and connections.
//!
//! - [`core`]: the connection engine without I/O (events in, intents out), unit-tested in memory;
//! - [`driver`]: the ring that carries out the core's intents and reports completions as events;
//! - [`wake`]: how other threads wake, shut down and stop a worker;
//! - [`uring`]: the io_uring operations (every `unsafe` of the runtime).
pub mod core;
pub mod driver;
pub mod histogram;
pub mod kernel;
pub mod listener;
pub mod signals;
pub mod stats;
pub mod uring;
pub mod wake;
