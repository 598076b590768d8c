//! `jobstack bench`: measurements printed as one JSON object.

use std::path::PathBuf;
use std::process::ExitCode;

use jobstack::bench::engine::EngineBenchPlan;

/// Benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Measure the engine: latency and throughput per mode, baselines, parked memory.
    Engine {
        /// Print one JSON object (otherwise a readable listing).
        #[arg(long)]
        json: bool,
        /// Where the built fixtures are.
        #[arg(long, default_value = "plugins/target/wasm32-wasip2/release")]
        plugin_dir: PathBuf,
        /// Executions parked at once for the memory figure.
        #[arg(long, default_value_t = 10_000)]
        parked: usize,
        /// Worker threads of the pooled executor.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Engine {
            json,
            plugin_dir,
            parked,
            threads,
        } => {
            let plan = EngineBenchPlan {
                parked,
                threads,
                ..EngineBenchPlan::default()
            };
            let report = jobstack::bench::engine::run(&plugin_dir, &plan).await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
