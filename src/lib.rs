//! Ringcast: a WebSocket edge server on io_uring that pushes live market ticks to browsers.
pub mod protocol;
