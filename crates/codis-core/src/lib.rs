//! The shared domain of codis-rs.
//!
//! Everything two components must agree on lives here exactly once: how a key maps to
//! a slot, the Codis 3.2 models and their JSON (byte-compatible with Codis, so existing
//! dashboards, proxies and tools interoperate), product-name rules, and the token and
//! xauth derivations used to authenticate admin calls.

pub mod auth;
pub mod clock;
pub mod json;
pub mod models;
pub mod product;
pub mod size;
pub mod slot;

pub use product::{ProductError, validate_product};
pub use slot::{MAX_SLOT_NUM, has_tag, hash_tag, slot_of, tag_crc};
