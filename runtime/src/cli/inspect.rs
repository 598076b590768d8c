//! `jobstack plugin inspect FILE.wasm`: what a plugin file is, or why it is not one.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

use jobstack::engine::{Engine, EngineConfig};

/// Arguments of `jobstack plugin inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The plugin component (.wasm).
    file: PathBuf,
}

pub async fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let engine = Engine::new(EngineConfig {
        pooled_slots: 1,
        dedicated_slots: 1,
        pooled_threads: 1,
        ..EngineConfig::default()
    })?;
    let plugin = engine
        .load(&bytes)
        .await
        .with_context(|| format!("{} is not a valid jobstack plugin", args.file.display()))?;
    let report = serde_json::json!({
        "file": args.file,
        "sha256": plugin.sha256(),
        "size": plugin.size(),
        "manifest": plugin.manifest(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}
