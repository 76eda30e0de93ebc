//! `codis-admin`: parses Codis's flags, runs the command, prints one line on failure.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use codis_admin::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("codis-admin: {}", codis_admin::error::one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start")?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = runtime.block_on(codis_admin::run(cli, &mut out));
    let _ = out.flush();
    result.map_err(anyhow::Error::from)
}
