//! Login sessions: a random token in an HttpOnly cookie maps to the xauths the
//! operator proved they may use, so secrets stay on the server.

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use parking_lot::Mutex;

/// How long a session lasts.
pub const TTL: Duration = Duration::from_secs(12 * 3600);

/// What a session may do.
#[derive(Clone, Default)]
pub struct Session {
    /// Logged in with the FE password: every product, with its configured product_auth.
    pub all: bool,
    /// Products logged in with their own admin secret, and their xauth.
    pub xauths: HashMap<String, String>,
    expires: Option<Instant>,
}

/// What one login adds to a session.
pub enum Grant {
    All,
    Product(String, String),
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A live session by token.
    pub fn get(&self, token: &str) -> Option<Session> {
        let mut map = self.map.lock();
        let now = Instant::now();
        map.retain(|_, s| s.expires.is_some_and(|e| e > now));
        map.get(token).cloned()
    }

    /// Adds `grant` to the session `existing` (another product logged in), or to a new
    /// one; returns the token of the session.
    pub fn grant(&self, existing: Option<String>, grant: Grant) -> String {
        let token = existing.unwrap_or_else(new_token);
        let mut map = self.map.lock();
        let s = map.entry(token.clone()).or_default();
        s.expires = Some(Instant::now() + TTL);
        match grant {
            Grant::All => s.all = true,
            Grant::Product(p, x) => {
                s.xauths.insert(p, x);
            }
        }
        token
    }

    pub fn remove(&self, token: &str) {
        self.map.lock().remove(token);
    }
}

/// 128 random bits from the kernel, in hex.
fn new_token() -> String {
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("/dev/urandom is readable on Linux");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session token in the request's cookies.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == crate::COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}
