//! Calls to Codis-style admin APIs: JSON bodies, errors as HTTP 800 `{"Cause": ...}`.

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// One dashboard's or proxy's admin API.
pub struct Api {
    http: reqwest::Client,
    role: &'static str,
    addr: String,
    verbose: bool,
}

/// How long one call may take. Creating a proxy or resyncing slots waits for every
/// proxy to acknowledge, which the dashboard bounds itself.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Api {
    /// `role` names the peer in messages ("dashboard", "proxy"); `addr` is its admin
    /// address, with or without `http://`.
    pub fn new(role: &'static str, addr: &str, verbose: bool) -> Result<Api> {
        let addr = addr.trim().trim_start_matches("http://").trim_end_matches('/').to_string();
        if addr.is_empty() {
            return Err(Error::usage(format!("empty {role} address: use host:port")));
        }
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| Error::Unreachable { role, addr: addr.clone(), cause: e.to_string() })?;
        Ok(Api { http, role, addr, verbose })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn role(&self) -> &'static str {
        self.role
    }

    /// GET `path`; `what` says what the call does, for messages.
    pub async fn get<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T> {
        self.call(reqwest::Method::GET, path, None, what).await
    }

    /// PUT `path` with an optional JSON body.
    pub async fn put<T: DeserializeOwned>(&self, path: &str, body: Option<Vec<u8>>, what: &str) -> Result<T> {
        self.call(reqwest::Method::PUT, path, body, what).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        what: &str,
    ) -> Result<T> {
        if self.verbose {
            eprintln!("codis-admin: {method} {} to {} at {} ({what})", redact(path), self.role, self.addr);
        }
        let mut req = self.http.request(method, format!("http://{}{path}", self.addr));
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
        if self.verbose {
            eprintln!("codis-admin: HTTP {} ({} bytes)", status.as_u16(), bytes.len());
        }
        if !status.is_success() {
            return Err(self.refused(status, &bytes, what));
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::Protocol {
            role: self.role,
            addr: self.addr.clone(),
            what: what.to_string(),
            cause: format!("invalid JSON ({e})"),
        })
    }

    fn unreachable(&self, e: &reqwest::Error) -> Error {
        let cause = if e.is_timeout() { format!("no answer within {}s", CALL_TIMEOUT.as_secs()) } else { innermost(e) };
        Error::Unreachable { role: self.role, addr: self.addr.clone(), cause }
    }

    fn refused(&self, status: reqwest::StatusCode, body: &[u8], what: &str) -> Error {
        let cause = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("Cause").and_then(|c| c.as_str()).map(str::to_string));
        let Some(cause) = cause else {
            let cause = if status == reqwest::StatusCode::NOT_FOUND {
                format!("HTTP 404: it has no such route (is {} a Codis 3.2 {} admin address?)", self.addr, self.role)
            } else {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string();
                if text.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {text}") }
            };
            return Error::Protocol { role: self.role, addr: self.addr.clone(), what: what.to_string(), cause };
        };
        let hint = if cause.contains("xauth") {
            if self.role == "dashboard" {
                " (pass the product's password with --auth when product_auth is set, and check the dashboard serves \
                 the product you mean)"
            } else {
                " (pass the product's password with --auth when product_auth is set)"
            }
        } else if cause.contains("not implemented") {
            " (this build of the dashboard lacks it; upgrade the dashboard)"
        } else {
            ""
        };
        Error::Refused {
            role: self.role,
            addr: self.addr.clone(),
            what: what.to_string(),
            cause: crate::error::one_line(&cause),
            hint: hint.to_string(),
        }
    }
}

/// The deepest cause of an error (reqwest's own message names the URL, which holds
/// the xauth, and hides the useful part like "Connection refused").
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A path with its xauth segment (32 hex digits) hidden, for -v output.
fn redact(path: &str) -> String {
    path.split('/')
        .map(|s| if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) { "<xauth>" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// Percent-encodes one path segment (addresses keep their `:` and `.`).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_redaction() {
        assert_eq!(seg("127.0.0.1:6379"), "127.0.0.1:6379");
        assert_eq!(seg("dc 1/x"), "dc%201%2Fx");
        assert_eq!(
            redact("/api/topom/group/create/95b62887719520f17e312eaa76d28f2b/1"),
            "/api/topom/group/create/<xauth>/1"
        );
    }
}
