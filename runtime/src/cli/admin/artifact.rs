//! `jobstack artifact push FILE` and `jobstack artifact list`: the files deploy
//! tasks install, kept by the daemon under their sha256.

use std::process::ExitCode;

use jobstack::protocol::ArtifactInfo;

use super::table::time;
use super::{ServerArgs, UploadArgs};

/// `jobstack artifact ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ArtifactCommand {
    /// Upload a file (at most 512 MiB); prints its sha256, which tasks name in
    /// `--artifact`.
    Push(UploadArgs),
    /// List the stored artifacts.
    List(ServerArgs),
}

/// Run an artifact command.
pub async fn run(command: ArtifactCommand) -> anyhow::Result<ExitCode> {
    match command {
        ArtifactCommand::Push(args) => push(args).await,
        ArtifactCommand::List(args) => list(args).await,
    }
}

async fn push(args: UploadArgs) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let info: ArtifactInfo =
        admin.upload("/artifacts", &args.file, "application/octet-stream").await?;
    admin.print(&info, |info| format!("stored: sha256 {} ({} bytes)", info.sha256, info.size))
}

async fn list(server: ServerArgs) -> anyhow::Result<ExitCode> {
    let admin = server.client()?;
    let artifacts: Vec<ArtifactInfo> = admin.get("/artifacts").await?;
    admin.print_list(
        &artifacts,
        "no artifacts; upload one with `jobstack artifact push FILE`",
        artifacts_table,
    )
}

/// One line per artifact. Not a [`Table`](super::table::Table): its cells are
/// cut for width, and the full sha256 is what `task --artifact` needs.
fn artifacts_table(artifacts: &[ArtifactInfo]) -> String {
    let width =
        artifacts.iter().map(|a| a.size.to_string().len()).max().unwrap_or(0).max("SIZE".len());
    let mut out = format!("{:<64}  {:>width$}  CREATED\n", "SHA256", "SIZE");
    for a in artifacts {
        out.push_str(&format!("{}  {:>width$}  {}\n", a.sha256, a.size, time(Some(a.created))));
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
