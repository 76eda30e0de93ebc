//! What can go wrong, each as one line that says what failed and what to do.

use codis_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No answer at all (connection refused, timeout, DNS).
    #[error("cannot reach the {role} at {addr}: {cause} (is it running, and is {addr} its admin address?)")]
    Unreachable { role: &'static str, addr: String, cause: String },

    /// The dashboard or proxy answered with an error.
    #[error("the {role} at {addr} refused to {what}: {cause}{hint}")]
    Refused { role: &'static str, addr: String, what: String, cause: String, hint: String },

    /// An answer that is not what a Codis 3.2 API gives.
    #[error("the {role} at {addr} gave an unexpected answer to {what}: {cause}")]
    Protocol { role: &'static str, addr: String, what: String, cause: String },

    /// A coordinator operation failed.
    #[error("{what}: {cause}")]
    Store { what: String, cause: StoreError },

    /// A file could not be read or parsed.
    #[error("{path}: {cause}")]
    File { path: String, cause: String },

    /// Missing or inconsistent flags, or an operation refused before anything was sent.
    #[error("{0}")]
    Usage(String),

    /// Something codis-rs does not do.
    #[error("{0}")]
    Unsupported(String),

    /// A preview: nothing was changed because --confirm was not given.
    #[error("nothing changed: {0}")]
    NotConfirmed(String),

    /// Writing the output failed (e.g. a closed pipe).
    #[error("cannot write the output: {0}")]
    Output(String),
}

// Messages carry their causes in the text (no `source()` chain), so printing an error
// with its chain never repeats a cause.
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Output(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn usage(msg: impl Into<String>) -> Error {
        Error::Usage(msg.into())
    }

    pub fn store(what: impl Into<String>, source: StoreError) -> Error {
        Error::Store { what: what.into(), cause: source }
    }

    /// The message as one line (causes from servers may contain newlines).
    pub fn one_line(&self) -> String {
        one_line(&self.to_string())
    }
}

/// Collapses whitespace runs that include newlines into single spaces.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut lines = s.lines().map(str::trim).filter(|l| !l.is_empty());
    if let Some(first) = lines.next() {
        out.push_str(first);
    }
    for l in lines {
        out.push(' ');
        out.push_str(l);
    }
    out
}

/// A flag an action needs.
pub fn need<T: Clone>(v: &Option<T>, flag: &str, action: &str) -> Result<T> {
    v.clone().ok_or_else(|| Error::usage(format!("{action} needs {flag}")))
}
