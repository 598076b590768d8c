//! `jobstack bench`: measurements printed as one JSON object.

use std::path::PathBuf;
use std::process::ExitCode;

use jobstack::bench::e2e::E2eBenchPlan;
use jobstack::bench::engine::EngineBenchPlan;
use jobstack::bench::inventory::InventoryBenchPlan;
use jobstack::bench::scheduler::SchedulerBenchPlan;

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
    /// Measure the scheduler on a store: lease + result throughput, lease
    /// latency with 1,000 and 1,000,000 waiting parts, a /16 split stored.
    Scheduler {
        /// Print one JSON object (otherwise a readable listing).
        #[arg(long)]
        json: bool,
        /// A PostgreSQL server (postgres://...): the bench works in a scratch
        /// database it creates and drops. SQLite in a temporary file when absent.
        #[arg(long)]
        database: Option<String>,
        /// Parts of the throughput run.
        #[arg(long, default_value_t = 20_000)]
        parts: usize,
        /// Concurrent agents of the throughput run.
        #[arg(long, default_value_t = 10)]
        agents: usize,
        /// Waiting parts of the large latency figure.
        #[arg(long, default_value_t = 1_000_000)]
        large_parts: usize,
    },
    /// Measure the inventory on a store: observations merged per second, and
    /// listings by a network and an attribute among 100,000 assets.
    Inventory {
        /// Print one JSON object (otherwise a readable listing).
        #[arg(long)]
        json: bool,
        /// A PostgreSQL server (postgres://...): the bench works in a scratch
        /// database it creates and drops. SQLite in a temporary file when absent.
        #[arg(long)]
        database: Option<String>,
        /// Hosts observed (twice each).
        #[arg(long, default_value_t = 100_000)]
        assets: usize,
    },
    /// Measure the whole system from outside: daemons (this binary) on
    /// loopback ports, agents over HTTP; lease + result throughput and
    /// latency over HTTP, then a run executed by complete agents.
    E2e {
        /// Print one JSON object (otherwise a readable listing).
        #[arg(long)]
        json: bool,
        /// A PostgreSQL server (postgres://...) all daemons share, in a scratch
        /// database the bench creates and drops. SQLite (one daemon) when absent.
        #[arg(long)]
        database: Option<String>,
        /// Daemons serving the agents (more than one needs --database).
        #[arg(long, default_value_t = 1)]
        daemons: usize,
        /// Agents, spread round-robin over the daemons.
        #[arg(long, default_value_t = 50)]
        agents: usize,
        /// Slots of each agent when it executes the plugin.
        #[arg(long, default_value_t = 4)]
        slots: usize,
        /// Parts of each phase's run.
        #[arg(long, default_value_t = 10_000)]
        parts: usize,
        /// Forced one-part runs timed from enqueue to start.
        #[arg(long, default_value_t = 50)]
        wake_samples: usize,
        /// Where the built plugins are (fixture_steps.wasm).
        #[arg(long, default_value = "plugins/target/wasm32-wasip2/release")]
        plugin_dir: PathBuf,
        /// Also run the execution phase with a webhook subscription to every
        /// event kind, against a receiver the bench starts.
        #[arg(long)]
        webhooks: bool,
    },
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Engine { json, plugin_dir, parked, threads } => {
            let plan = EngineBenchPlan { parked, threads, ..EngineBenchPlan::default() };
            let report = jobstack::bench::engine::run(&plugin_dir, &plan).await?;
            print(json, &report)
        }
        BenchCommand::Scheduler { json, database, parts, agents, large_parts } => {
            let plan = SchedulerBenchPlan {
                database,
                parts,
                agents,
                large_parts,
                ..SchedulerBenchPlan::default()
            };
            let report = jobstack::bench::scheduler::run(&plan).await?;
            print(json, &report)
        }
        BenchCommand::Inventory { json, database, assets } => {
            let plan = InventoryBenchPlan { database, assets, ..InventoryBenchPlan::default() };
            let report = jobstack::bench::inventory::run(&plan).await?;
            print(json, &report)
        }
        BenchCommand::E2e {
            json,
            database,
            daemons,
            agents,
            slots,
            parts,
            wake_samples,
            plugin_dir,
            webhooks,
        } => {
            let plan = E2eBenchPlan {
                jobstack: std::env::current_exe()?,
                plugin_dir,
                database,
                daemons,
                agents,
                slots,
                parts,
                wake_samples,
                webhooks,
            };
            let report = jobstack::bench::e2e::run(&plan).await?;
            print(json, &report)
        }
    }
}

fn print(json: bool, report: &impl serde::Serialize) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{}", serde_json::to_string_pretty(report)?);
    }
    Ok(ExitCode::SUCCESS)
}
