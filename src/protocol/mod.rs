//! The WebSocket protocol, sans-IO: bytes in, events and bytes out, time passed in.
//!
//! Nothing here touches a socket or a runtime type, so every RFC 6455 rule is unit-tested and fuzzed
//! without I/O. The runtime (`crate::runtime`) drives these types:
//!
//! ```text
//!   recv bytes ──► handshake::parse ──► Request ──► handshake::validate_upgrade ──► 101 bytes out
//!   recv bytes ──► Session::receive ──► Message (text/binary)  ──► caller
//!                                   └─► control replies (pong, close echo) appended to `out`
//!   caller     ──► frame::encode_* ──► bytes out
//! ```
pub mod close;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod proxy;
pub mod response;
pub mod session;
pub mod utf8;

pub use close::CloseCode;
pub use error::ProtocolError;
pub use frame::OpCode;
pub use session::{Limits, Message, Session};
