//! codis-admin: the command-line tool for codis-rs (and Codis 3.2) clusters.
//!
//! [`cli`] defines Codis's flags; [`run`] dispatches to the [`proxy`], [`dashboard`]
//! or [`coordinator`] commands, which call the admin APIs through [`http`] (or open
//! the coordinator) and print tables from [`render`] or the raw JSON. Every failure is
//! an [`Error`] whose message is one line saying what failed and what to do.

pub mod cli;
pub mod coordinator;
pub mod dashboard;
pub mod error;
pub mod http;
pub mod proxy;
pub mod render;
pub mod view;

use std::io::Write;

pub use cli::Cli;
pub use error::{Error, Result};

/// Runs the command `cli` describes, writing its output to `out`.
pub async fn run(cli: &Cli, out: &mut dyn Write) -> Result<()> {
    if let Some(addr) = &cli.proxy {
        return proxy::run(cli, addr, out).await;
    }
    if let Some(addr) = &cli.dashboard {
        return dashboard::run(cli, addr, out).await;
    }
    coordinator::run(cli, out).await
}
