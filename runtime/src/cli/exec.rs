//! `jobstack exec`: run a plugin on this machine, the way an agent would, and
//! print one JSON object describing the outcome.
//!
//! Without `--part` it runs `split` and prints the parts as the output; with it,
//! `init` + `execute`. Capabilities are denied unless granted with `--allow-net`,
//! `--allow-http` (and `--tls-accept-self-signed`) and `--dir`. As on an agent,
//! sockets reach only the part's targets inside `--allow-net`. The parameters
//! are checked against the plugin's schema first, as `task create` checks
//! them. The exit code is 0 only when the execution finished.

use anyhow::{Context, bail};
use ipnet::IpNet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use jobstack::agent::narrow_to_targets;
use jobstack::engine::http::HttpHost;
use jobstack::engine::{
    ExecutionLimits, ExecutionRequest, Grants, Mode, Part, Status, check_params,
};

/// Arguments of `jobstack exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The plugin component (.wasm).
    file: PathBuf,
    /// Task parameters (JSON).
    #[arg(long, default_value = "{}")]
    params: String,
    /// Task secrets (JSON object).
    #[arg(long, default_value = "{}")]
    secrets: String,
    /// The part to execute (JSON, as printed by split). Without it, split runs.
    #[arg(long)]
    part: Option<String>,
    /// Pooled (1:N) or dedicated (1:1) execution.
    #[arg(long, value_enum, default_value = "pooled")]
    mode: ModeArg,
    /// Wall-clock deadline; the fuel budget follows from it (e.g. 500ms, 30s, 2m).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Linear memory limit in MiB.
    #[arg(long, default_value_t = 128)]
    memory_mib: u64,
    /// Allow TCP/UDP to the part's targets inside this network (repeatable),
    /// e.g. 127.0.0.0/8: an agent's `--allow-net`, narrowed the agent's way.
    #[arg(long = "allow-net", value_name = "CIDR")]
    allow_net: Vec<IpNet>,
    /// Allow outgoing HTTP to HOST (any port) or HOST:PORT (repeatable).
    #[arg(long = "allow-http", value_name = "HOST[:PORT]", value_parser = parse_http_host)]
    allow_http: Vec<String>,
    /// Accept any TLS certificate from the allowed HTTP hosts (self-signed ESX hosts).
    #[arg(long = "tls-accept-self-signed")]
    tls_accept_self_signed: bool,
    /// Make a host directory visible: HOST_PATH or HOST_PATH::GUEST_PATH (repeatable).
    #[arg(long = "dir", value_name = "HOST_PATH[::GUEST_PATH]")]
    dirs: Vec<String>,
    /// Attempt number handed to the plugin.
    #[arg(long, default_value_t = 1)]
    attempt: u32,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Pooled,
    Dedicated,
}

/// Check an `--allow-http` value (the engine would silently ignore a bad one).
fn parse_http_host(text: &str) -> Result<String, String> {
    text.parse::<HttpHost>().map(|_| text.to_string())
}

pub async fn run(args: ExecArgs) -> anyhow::Result<ExitCode> {
    for (what, text) in [("--params", &args.params), ("--secrets", &args.secrets)] {
        serde_json::from_str::<serde_json::Value>(text)
            .with_context(|| format!("{what} is not valid JSON"))?;
    }
    let part: Option<Part> = match &args.part {
        Some(text) => Some(
            serde_json::from_str(text)
                .context("--part is not a part object {\"label\", \"targets\", \"payload\"}")?,
        ),
        None => None,
    };
    let mut grants = Grants::new();
    let targets = part.as_ref().map(|p| p.targets.as_slice()).unwrap_or_default();
    let (granted, outside) = narrow_to_targets(targets, &args.allow_net);
    for net in outside {
        tracing::warn!(%net, "target outside --allow-net; not granted");
    }
    for net in granted {
        grants = grants.allow_network(net);
    }
    for host in &args.allow_http {
        grants = grants.allow_http_host(host.clone());
    }
    grants = grants.accept_self_signed_tls(args.tls_accept_self_signed);
    for dir in &args.dirs {
        let (host, guest) = match dir.split_once("::") {
            Some((h, g)) => (h.to_string(), g.to_string()),
            None => (dir.clone(), dir.clone()),
        };
        if !std::path::Path::new(&host).is_dir() {
            bail!("--dir {host}: not a directory");
        }
        grants = grants.preopen(host, guest, true);
    }
    let engine = super::inspect::local_engine(4, 2)?;
    let plugin = super::inspect::load_file(&engine, &args.file).await?;
    // Refused here as `task create` would refuse them.
    let params: serde_json::Value = serde_json::from_str(&args.params)?;
    check_params(&plugin.manifest().params_schema, &params).map_err(|e| {
        anyhow::anyhow!(
            "--params do not match the schema of plugin {}: {e}",
            plugin.manifest().name
        )
    })?;

    let outcome = match part {
        None => engine.split_outcome(&plugin, &args.params).await,
        Some(part) => {
            let limits = ExecutionLimits {
                memory: args.memory_mib << 20,
                ..ExecutionLimits::with_timeout(args.timeout)
            };
            let request = ExecutionRequest::new(args.params.clone(), part)
                .secrets(args.secrets.clone())
                .mode(match args.mode {
                    ModeArg::Pooled => Mode::Pooled,
                    ModeArg::Dedicated => Mode::Dedicated,
                })
                .limits(limits)
                .grants(grants);
            let request = ExecutionRequest { attempt: args.attempt, ..request };
            engine.execute(&plugin, request).await
        }
    };
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(if outcome.status == Status::Finished { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
