//! Log set-up with a level that can change at runtime (the `loglevel` route).

use std::path::Path;
use std::sync::OnceLock;

use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry, reload};

static HANDLE: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

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

/// Logs to `file` (appending) or standard error.
pub fn init(level: &str, file: Option<&Path>) -> anyhow::Result<()> {
    let (filter, handle) = reload::Layer::new(filter_for(level).map_err(anyhow::Error::msg)?);
    let registry = tracing_subscriber::registry().with(filter);
    match file {
        Some(path) => {
            let f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            registry
                .with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(std::sync::Mutex::new(f)))
                .init();
        }
        None => registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).init(),
    }
    let _ = HANDLE.set(handle);
    Ok(())
}

pub fn set_level(level: &str) -> Result<(), String> {
    let filter = filter_for(level)?;
    let handle = HANDLE.get().ok_or("log level cannot be changed in this process")?;
    handle.reload(filter).map_err(|e| e.to_string())?;
    tracing::warn!("set loglevel to {level}");
    Ok(())
}
