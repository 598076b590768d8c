//! Command-line parsing and dispatch. Each subcommand lives in its own module;
//! errors reach the user through `anyhow` with their context.

mod admin;
mod agent;
mod bench;
mod exec;
mod inspect;
mod serve;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// jobstack: a WebAssembly-plugin task runtime for fleet inventory and management.
#[derive(Debug, Parser)]
#[command(name = "jobstack", version, about, propagate_version = true)]
struct Cli {
    /// How logs are written to stderr: `text` (coloured only on a terminal) or
    /// `json` (one object per line, for a log collector).
    #[arg(long, global = true, env = "JOBSTACK_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The `--log-format` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with plugin files, and the daemon's plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Upload and list the files deploy tasks install.
    #[command(subcommand)]
    Artifact(admin::artifact::ArtifactCommand),
    /// Define, run and follow tasks on the daemon.
    #[command(subcommand)]
    Task(admin::task::TaskCommand),
    /// Ask the inventory: assets, their history, what changed.
    #[command(subcommand)]
    Inventory(admin::inventory::InventoryCommand),
    /// Subscribe URLs to events (webhooks); see and re-send dead letters.
    #[command(subcommand)]
    Webhook(admin::webhook::WebhookCommand),
    /// Print the results of a task's latest run (or of --run ID).
    Results(admin::results::ResultsArgs),
    /// Run a plugin locally: `split` without --part, `init` + `execute` with it.
    Exec(exec::ExecArgs),
    /// Run the daemon: scheduler, API and the local agent on one port.
    Serve(serve::ServeArgs),
    /// Run a remote agent: register with a daemon, pull parts, run them.
    Agent(agent::AgentArgs),
    /// Measure the engine.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Print a plugin's manifest, sha256 and size, or why it is not a valid plugin.
    Inspect(inspect::InspectArgs),
    /// Upload a plugin to the daemon (validated there; the same file twice is fine).
    Push(admin::UploadArgs),
    /// List the daemon's plugins and their versions.
    List(admin::ServerArgs),
    /// Retire a plugin version: no new run uses it (it stays for the runs
    /// that did; uploading the same file again puts it back).
    Retire(admin::plugin::RetireArgs),
}

/// Parse the command line, run it, and map the result to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Plugin(PluginCommand::Inspect(args)) => inspect::run(args).await,
            Command::Plugin(PluginCommand::Push(args)) => admin::plugin::push(args).await,
            Command::Plugin(PluginCommand::List(args)) => admin::plugin::list(args).await,
            Command::Plugin(PluginCommand::Retire(args)) => admin::plugin::retire(args).await,
            Command::Artifact(cmd) => admin::artifact::run(cmd).await,
            Command::Task(cmd) => admin::task::run(cmd).await,
            Command::Inventory(cmd) => admin::inventory::run(cmd).await,
            Command::Webhook(cmd) => admin::webhook::run(cmd).await,
            Command::Results(args) => admin::results::run(args).await,
            Command::Exec(args) => exec::run(args).await,
            Command::Bench(cmd) => bench::run(cmd).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Agent(args) => agent::run(args).await,
        }
    });
    // Executions may still be parked in the engine's runtime; do not wait for them.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (stdout is for the command's JSON), filtered by `RUST_LOG`,
/// warnings and errors by default. Colour codes only reach a terminal: a log
/// file or a collector gets plain text.
fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => logs.json().try_init(),
    };
}
