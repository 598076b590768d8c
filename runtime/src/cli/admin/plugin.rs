//! `jobstack plugin push FILE.wasm`, `jobstack plugin list` and `jobstack
//! plugin retire NAME VERSION`.

use std::process::ExitCode;

use jobstack::protocol::{PluginRecord, PluginUploaded};

use jobstack::client::segment;

use super::table::{Table, time};
use super::{ServerArgs, UploadArgs};

/// Upload a plugin: the daemon validates it and answers its sha256, name and
/// version; the same bytes again are "already known", not an error.
pub async fn push(args: UploadArgs) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let uploaded: PluginUploaded = admin.upload("/plugins", &args.file, "application/wasm").await?;
    admin.print(&uploaded, push_line)
}

/// One line: `created hello 0.1.0 sha256 ab12...`.
fn push_line(uploaded: &PluginUploaded) -> String {
    let p = &uploaded.plugin;
    let what = if uploaded.created { "created" } else { "already known" };
    format!("{what}: {} {} sha256 {}", p.name, p.version, p.sha256)
}

/// Arguments of `jobstack plugin retire`.
#[derive(Debug, clap::Args)]
pub struct RetireArgs {
    /// The plugin's name.
    name: String,
    /// The version to retire.
    version: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// Retire a plugin version: no new run uses it; refused while a run that
/// has not ended uses it, or a task has no other version to run.
pub async fn retire(args: RetireArgs) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let path = format!("/plugins/{}/{}/retire", segment(&args.name), segment(&args.version));
    let retired: PluginRecord = admin.post(&path).await?;
    admin.print(&retired, |p| format!("retired: {} {} sha256 {}", p.name, p.version, p.sha256))
}

/// List the uploaded plugins, every version.
pub async fn list(server: ServerArgs) -> anyhow::Result<ExitCode> {
    let admin = server.client()?;
    let plugins: Vec<PluginRecord> = admin.get("/plugins").await?;
    admin.print_list(
        &plugins,
        "no plugins; upload one with `jobstack plugin push FILE.wasm`",
        |plugins| plugins_table(plugins).render(),
    )
}

fn plugins_table(plugins: &[PluginRecord]) -> Table {
    let mut table = Table::new(&["NAME", "VERSION", "SHA256", "SIZE", "UPLOADED", "RETIRED"]);
    for p in plugins {
        table.row(vec![
            p.name.clone(),
            p.version.clone(),
            p.sha256.chars().take(16).collect(),
            p.size.to_string(),
            time(Some(p.uploaded_at)),
            time(p.retired_at),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> PluginRecord {
        PluginRecord {
            sha256: "ab".repeat(32),
            name: "hello".into(),
            version: "0.1.0".into(),
            manifest: serde_json::json!({}),
            size: 1234,
            uploaded_at: "2026-11-28T07:00:00Z".parse().unwrap(),
            retired_at: None,
        }
    }

    #[test]
    fn push_line_says_created_or_known() {
        let mut uploaded = PluginUploaded { plugin: record(), created: true };
        assert_eq!(
            push_line(&uploaded),
            format!("created: hello 0.1.0 sha256 {}", "ab".repeat(32))
        );
        uploaded.created = false;
        assert!(push_line(&uploaded).starts_with("already known: hello 0.1.0"));
    }

    #[test]
    fn table_shows_a_short_sha256() {
        let rendered = plugins_table(&[record()]).render();
        assert_eq!(
            rendered,
            "NAME   VERSION  SHA256            SIZE  UPLOADED              RETIRED\n\
             hello  0.1.0    abababababababab  1234  2026-11-28 07:00:00Z  -\n"
        );
    }
}
