//! `jobstack plugin inspect FILE.wasm`: what a plugin file is (its manifest,
//! sha256, size and the version of the contract it implements), or why it is
//! not one.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use jobstack::engine::{Engine, EngineConfig, Plugin};

/// Arguments of `jobstack plugin inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The plugin component (.wasm).
    file: PathBuf,
}

pub async fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let plugin = load_file(&local_engine(1, 1)?, &args.file).await?;
    let report = serde_json::json!({
        "file": args.file,
        "sha256": plugin.sha256(),
        "size": plugin.size(),
        "manifest": plugin.manifest(),
        "contract": plugin.contract(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

/// An engine for one command: `pooled` slots on as many `threads`, one
/// dedicated slot.
pub fn local_engine(pooled: u32, threads: usize) -> anyhow::Result<Engine> {
    let config = EngineConfig {
        pooled_slots: pooled,
        dedicated_slots: 1,
        pooled_threads: threads,
        ..EngineConfig::default()
    };
    Ok(Engine::new(config)?)
}

/// Load the plugin in `file`, saying which file could not be read or is not
/// a plugin.
pub async fn load_file(engine: &Engine, file: &Path) -> anyhow::Result<Arc<Plugin>> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    engine
        .load(&bytes)
        .await
        .with_context(|| format!("{} is not a valid jobstack plugin", file.display()))
}
