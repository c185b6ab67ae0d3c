//! Ringcast: a WebSocket edge server on io_uring that pushes live market ticks to browsers.
//!
//! The data path, in the order bytes travel:
//! - `protocol`: RFC 6455 sans-IO (handshake, frames, close handshake);
//! - `runtime`: one io_uring worker per core (accept, receive, send, timers);
//! - `http`: the plain-HTTP routes on the same port;
//! - `ingest`: the Redis feed (one subscriber thread per process) and its data contract;
//! - `cli`: the feed-side subcommands (`publish`, `get`, `retire`, `feed --demo`, `demo`);
//! - `server`: starting and stopping workers and processes;
//! - `tls`: sans-IO TLS termination (rustls) for `wss://`, driven by the workers.
pub mod admission;
pub mod alloc;
pub mod auth;
pub mod cli;
pub mod config;
pub mod fanout;
pub mod http;
pub mod ingest;
pub mod protocol;
pub mod runtime;
pub mod secret;
pub mod server;
pub mod tls;
