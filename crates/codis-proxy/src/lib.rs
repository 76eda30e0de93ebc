//! codis-proxy: a stateless RESP proxy in front of groups of redis servers.
//!
//! Request path: a [`session`] parses client requests, the [`command`] table says how
//! to treat each one, the [`router`]'s slot-table snapshot picks the backend (or the
//! command is split per backend), the [`backend`] connection pipelines it, and the
//! reply comes back through the session's inbox ([`reply`]) in request order.
//! [`admin`] serves Codis's HTTP API; [`sentinel`] follows redis-sentinel failovers;
//! [`jodis`] registers the proxy for client-side discovery; [`discovery`] finds the
//! dashboard; [`proxy`] ties the pieces together.

pub mod admin;
pub mod backend;
pub mod command;
pub mod config;
pub mod discovery;
pub mod io;
pub mod jodis;
pub mod proxy;
pub mod reply;
pub mod router;
pub mod sentinel;
pub mod session;
pub mod slowlog;
pub mod stats;
pub mod worker;

pub use config::Config;
pub use proxy::{Options, Proxy, ProxyError};

// The binary's allocator; linked into the library too, for `worker`'s calls to it.
#[cfg(feature = "mimalloc")]
use mimalloc as _;
