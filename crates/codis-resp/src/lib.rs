//! RESP framing for codis-rs.
//!
//! The proxy never builds a tree of values for the traffic it forwards: requests are
//! parsed into one contiguous buffer plus the offsets of their arguments
//! ([`Request`]), and replies are only *measured* ([`ReplyScanner`]) so that they can
//! be handed to the client as the very bytes the server sent. Both parsers resume
//! where they stopped, so a frame trickling in over many reads is scanned once.
//!
//! This crate depends on `bytes` only; the proxy, the dashboard and the tests share it.

mod encode;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod reply;
mod request;

pub use encode::{Encoder, encode_request, int_bytes};
pub use error::ProtocolError;
pub use reply::{ReplyKind, ReplyScanner, ReplyView, parse_integer};
pub use request::{Frame, Limits, Parsed, Request, RequestParser, RequestRef};
