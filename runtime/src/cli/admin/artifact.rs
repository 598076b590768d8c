//! `jobstack artifact push FILE` and `jobstack artifact list`: the files deploy
//! tasks install, kept by the daemon under their sha256.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use jobstack::api::wire::ArtifactInfo;

use super::table::{Table, time};
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
        print!("{}", artifacts_table(&artifacts).render());
    }
    Ok(ExitCode::SUCCESS)
}

fn artifacts_table(artifacts: &[ArtifactInfo]) -> Table {
    let mut table = Table::new(&["SHA256", "SIZE", "CREATED"]);
    for a in artifacts {
        table.row(vec![
            a.sha256.clone(),
            a.size.to_string(),
            time(Some(a.created)),
        ]);
    }
    table
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
        let rendered = artifacts_table(&[info]).render();
        assert!(rendered.contains(&"ab".repeat(32)), "{rendered}");
        assert!(rendered.contains("42"), "{rendered}");
    }
}
