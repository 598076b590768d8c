//! `jobstack artifact push FILE` and `jobstack artifact list`: the files deploy
//! tasks install, kept by the daemon under their sha256.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use jobstack::protocol::ArtifactInfo;

use super::table::time;
use super::{ServerArgs, print_json};

/// `jobstack artifact ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ArtifactCommand {
    /// Upload a file (at most 512 MiB); prints its sha256, which tasks name in
    /// `--artifact`.
    Push(PushArgs),
    /// List the stored artifacts.
    List(ListArgs),
}

/// Arguments of `jobstack artifact push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The file.
    pub file: PathBuf,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Arguments of `jobstack artifact list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Run an artifact command.
pub async fn run(command: ArtifactCommand) -> anyhow::Result<ExitCode> {
    match command {
        ArtifactCommand::Push(args) => push(args).await,
        ArtifactCommand::List(args) => list(args).await,
    }
}

async fn push(args: PushArgs) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let info: ArtifactInfo = admin
        .client
        .post_bytes("/artifacts", bytes, "application/octet-stream")
        .await
        .map_err(|e| admin.explain(e))?;
    if args.server.json {
        print_json(&info)?;
    } else {
        println!("stored: sha256 {} ({} bytes)", info.sha256, info.size);
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let artifacts: Vec<ArtifactInfo> = admin
        .client
        .get_json("/artifacts")
        .await
        .map_err(|e| admin.explain(e))?;
    if args.server.json {
        print_json(&artifacts)?;
    } else if artifacts.is_empty() {
        println!("no artifacts; upload one with `jobstack artifact push FILE`");
    } else {
        print!("{}", artifacts_table(&artifacts));
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per artifact. Not a [`Table`](super::table::Table): its cells are
/// cut for width, and the full sha256 is what `task --artifact` needs.
fn artifacts_table(artifacts: &[ArtifactInfo]) -> String {
    let width = artifacts
        .iter()
        .map(|a| a.size.to_string().len())
        .max()
        .unwrap_or(0)
        .max("SIZE".len());
    let mut out = format!("{:<64}  {:>width$}  CREATED\n", "SHA256", "SIZE");
    for a in artifacts {
        out.push_str(&format!(
            "{}  {:>width$}  {}\n",
            a.sha256,
            a.size,
            time(Some(a.created))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_the_full_sha256_tasks_name() {
        let info = ArtifactInfo {
            sha256: "ab".repeat(32),
            size: 42,
            created: "2026-11-28T07:00:00Z".parse().unwrap(),
        };
        let rendered = artifacts_table(&[info]);
        assert_eq!(
            rendered,
            format!(
                "{:<64}  SIZE  CREATED\n{}    42  2026-11-28 07:00:00Z\n",
                "SHA256",
                "ab".repeat(32)
            )
        );
    }
}
