//! Log set-up shared by the binaries. Levels take Codis's names (`error`, `warn`,
//! `info`, `debug`, `none`) and can change while running (the `loglevel` admin
//! routes); lines are human-readable text, or JSON objects (`--log-format json`) with
//! the event's fields as keys, for log shippers.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry, reload};

static HANDLE: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(format!("invalid log format {other:?}: use text or json")),
        }
    }
}

/// Codis's level names to a filter.
pub fn filter_for(level: &str) -> Result<EnvFilter, String> {
    let level = match level.to_ascii_lowercase().as_str() {
        "error" => "error",
        "warn" | "warning" => "warn",
        "info" => "info",
        "debug" => "debug",
        "none" => "off",
        other => return Err(format!("invalid log level {other:?}: use error, warn, info, debug or none")),
    };
    EnvFilter::try_new(level).map_err(|e| e.to_string())
}

/// Logs to `file` (appending) or standard error, from `level` up. Colours only on a
/// terminal: redirected output stays plain text.
pub fn init(level: &str, file: Option<&Path>, format: Format) -> Result<()> {
    let (filter, handle) = reload::Layer::new(filter_for(level).map_err(anyhow::Error::msg)?);
    let registry = tracing_subscriber::registry().with(filter);
    let writer = match file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::sync::Mutex::new(f))
        }
        None => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    };
    let ansi = file.is_none() && std::io::stderr().is_terminal();
    match format {
        Format::Text => registry.with(tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(writer)).init(),
        Format::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(writer),
            )
            .init(),
    }
    let _ = HANDLE.set(handle);
    Ok(())
}

/// Changes the level of the logging [`init`] set up.
pub fn set_level(level: &str) -> Result<(), String> {
    let filter = filter_for(level)?;
    let handle = HANDLE.get().ok_or("log level cannot be changed in this process")?;
    handle.reload(filter).map_err(|e| e.to_string())?;
    tracing::warn!("set loglevel to {level}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codis_level_names() {
        for ok in ["error", "WARN", "warning", "info", "debug", "none"] {
            assert!(filter_for(ok).is_ok(), "{ok}");
        }
        assert!(filter_for("verbose").unwrap_err().contains("use error, warn, info, debug or none"));
        assert_eq!("JSON".parse::<Format>(), Ok(Format::Json));
        assert!("xml".parse::<Format>().unwrap_err().contains("use text or json"));
    }
}
