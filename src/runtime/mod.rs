//! The runtime: one worker thread per core, each with its own io_uring, listener and connections.
pub mod conn;
pub mod kernel;
pub mod listener;
pub mod signals;
pub mod stats;
pub mod uring;
pub mod worker;
