//! `jobstack bench`: measurements printed as one JSON object.

use std::process::ExitCode;

/// Benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Measure the engine (see `jobstack::bench`).
    Engine {
        /// Print JSON (the only format for now).
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(_cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
