//! `jobstack inventory list|show|changes`: what the fleet's results say is out
//! there, through the daemon's inventory API.

use std::process::ExitCode;

use jobstack::protocol::{Asset, AssetDetail, AssetPage, Change, ChangePage, ProcessingFailure};

use anyhow::Context;

use super::table::{Table, time};
use super::{Admin, ServerArgs, print_json};

/// `jobstack inventory ...`.
#[derive(Debug, clap::Subcommand)]
pub enum InventoryCommand {
    /// List assets, filtered; every page with --all.
    List(ListArgs),
    /// An asset with its attributes' sources, relations and history.
    Show(ShowArgs),
    /// What changed, oldest first: of an asset, of a run, since a time.
    Changes(ChangesArgs),
    /// Every asset the filters select, as JSON, CSV, or GLPI's inventory
    /// documents (one file per asset).
    Export(ExportArgs),
    /// A run's results whose processing (the plugin's stage) failed, and why.
    Failures(RunArgs),
    /// Process a run's failed results again.
    Reprocess(RunArgs),
}

/// Arguments naming a run.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The run's id.
    pub run: i64,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The formats of `jobstack inventory export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON array on standard output.
    Json,
    /// One row per asset on standard output (keys and attributes as JSON).
    Csv,
    /// GLPI's native inventory format: one document per network device,
    /// hypervisor (with its VMs) or discovered host, written into --out.
    Glpi,
}

/// Arguments of `jobstack inventory export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// The directory GLPI documents are written into (created if needed).
    #[arg(long, required_if_eq("format", "glpi"))]
    pub out: Option<std::path::PathBuf>,
    /// Filters, as for `inventory list`.
    #[arg(value_name = "FILTER")]
    pub filters: Vec<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Arguments of `jobstack inventory list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Filters, as the API takes them: kind=host, cidr=10.1.0.0/16,
    /// attr=tcp_open=[443] (attr=name~text: contains; repeatable),
    /// seen_since=7d, not_seen_since=2026-12-01T00:00:00Z, q=text (in a name or
    /// a key); limit=N assets per page.
    #[arg(value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Every page, not only the first.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Arguments of `jobstack inventory show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The asset's id.
    pub asset: i64,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Arguments of `jobstack inventory changes`.
#[derive(Debug, clap::Args)]
pub struct ChangesArgs {
    /// Filters, as the API takes them: asset=ID, run=ID (what the run
    /// changed), since=7d (or an RFC 3339 time); limit=N changes.
    #[arg(value_name = "FILTER")]
    pub filters: Vec<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Run an inventory command.
pub async fn run(command: InventoryCommand) -> anyhow::Result<ExitCode> {
    match command {
        InventoryCommand::List(args) => list(args).await,
        InventoryCommand::Show(args) => show(args).await,
        InventoryCommand::Changes(args) => changes(args).await,
        InventoryCommand::Export(args) => export(args).await,
        InventoryCommand::Failures(args) => failures(args).await,
        InventoryCommand::Reprocess(args) => {
            let admin = args.server.client()?;
            let retried: serde_json::Value =
                admin.post(&format!("/runs/{}/reprocess", args.run)).await?;
            admin.print(&retried, |r| format!("{} results will be processed again", r["retried"]))
        }
    }
}

/// `path?` with `filters` (`name=value`), encoded, and `extra`.
fn with_query(path: &str, filters: &[String], extra: &[(&str, String)]) -> anyhow::Result<String> {
    let mut query = Vec::new();
    for filter in filters {
        let (name, value) = filter
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("filter {filter:?}: write it name=value"))?;
        query.push(format!("{}={}", encode(name), encode(value)));
    }
    query.extend(extra.iter().map(|(name, value)| format!("{name}={}", encode(value))));
    Ok(format!("{path}?{}", query.join("&")))
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The assets `filters` select: the first page, or with `all` every page.
async fn assets(admin: &Admin, filters: &[String], all: bool) -> anyhow::Result<Vec<Asset>> {
    let mut assets = Vec::new();
    let mut after = 0;
    loop {
        let path = with_query("/assets", filters, &[("after", after.to_string())])?;
        let page: AssetPage = admin.get(&path).await?;
        assets.extend(page.assets);
        match page.next {
            Some(next) if all => after = next,
            _ => return Ok(assets),
        }
    }
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let assets = assets(&admin, &args.filters, args.all).await?;
    admin.print_list(&assets, "no assets match", |assets| assets_table(assets).render())
}

async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let assets = assets(&admin, &args.filters, true).await?;
    match args.format {
        ExportFormat::Json => print_json(&assets)?,
        ExportFormat::Csv => print!("{}", csv_of(&assets)?),
        ExportFormat::Glpi => {
            let dir = args.out.expect("clap requires --out with --format glpi");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let mut written = 0;
            for asset in assets.iter().filter(|a| glpi_kind(&a.kind)) {
                let document: serde_json::Value =
                    admin.get(&format!("/assets/{}/glpi", asset.id)).await?;
                let path = dir.join(format!("{}-{}.json", asset.kind, asset.id));
                std::fs::write(&path, serde_json::to_string_pretty(&document)?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                written += 1;
            }
            eprintln!("{written} GLPI documents written into {}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn failures(args: RunArgs) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let failed: Vec<ProcessingFailure> =
        admin.get(&format!("/runs/{}/processing", args.run)).await?;
    admin.print_list(&failed, "every result of the run was processed", |failed| {
        let mut table = Table::new(&["PART", "ATTEMPT", "REASON"]);
        for f in failed {
            table.row(vec![f.part_id.to_string(), f.attempt.to_string(), f.reason.clone()]);
        }
        table.render()
    })
}

/// Kinds with a GLPI document of their own.
fn glpi_kind(kind: &str) -> bool {
    matches!(kind, "network_device" | "hypervisor" | "host")
}

/// One CSV row per asset; keys and attributes as JSON.
fn csv_of(assets: &[Asset]) -> anyhow::Result<String> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "id",
        "kind",
        "name",
        "keys",
        "attributes",
        "first_seen",
        "last_seen",
        "gone",
    ])?;
    for a in assets {
        out.write_record([
            a.id.to_string(),
            a.kind.clone(),
            a.name.clone().unwrap_or_default(),
            serde_json::to_string(&a.keys)?,
            serde_json::to_string(&a.attributes)?,
            a.first_seen.to_rfc3339(),
            a.last_seen.to_rfc3339(),
            a.disappeared_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        ])?;
    }
    Ok(String::from_utf8(out.into_inner()?)?)
}

async fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let detail: AssetDetail = admin.get(&format!("/assets/{}", args.asset)).await?;
    admin.print(&detail, describe)
}

async fn changes(args: ChangesArgs) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let page: ChangePage = admin.get(&with_query("/changes", &args.filters, &[])?).await?;
    admin.print_list(&page.changes, "no changes", |changes| changes_table(changes).render())
}

/// `ip=10.0.0.5 mac=0e:…`.
fn keys_text(asset: &Asset) -> String {
    let mut parts = Vec::new();
    for (name, values) in &asset.keys {
        parts.extend(values.iter().map(|v| format!("{name}={v}")));
    }
    parts.join(" ")
}

fn assets_table(assets: &[Asset]) -> Table {
    let mut table = Table::new(&["ID", "KIND", "NAME", "KEYS", "LAST SEEN", "GONE"]);
    for a in assets {
        table.row(vec![
            a.id.to_string(),
            a.kind.clone(),
            a.name.clone().unwrap_or_default(),
            keys_text(a),
            time(Some(a.last_seen)),
            a.disappeared_at.map(|t| time(Some(t))).unwrap_or_default(),
        ]);
    }
    table
}

fn value_text(value: &Option<serde_json::Value>) -> String {
    match value {
        None => "-".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

fn changes_table(changes: &[Change]) -> Table {
    let mut table = Table::new(&["ID", "AT", "ASSET", "CHANGE", "WHAT", "OLD", "NEW", "RUN"]);
    for c in changes {
        table.row(vec![
            c.id.to_string(),
            time(Some(c.at)),
            c.asset_id.to_string(),
            c.kind.as_str().to_string(),
            c.subject.clone().unwrap_or_default(),
            value_text(&c.old),
            value_text(&c.new),
            c.run_id.map(|r| r.to_string()).unwrap_or_default(),
        ]);
    }
    table
}

/// An asset for people: identity, attributes with their source, relations,
/// history.
fn describe(detail: &AssetDetail) -> String {
    let a = &detail.asset;
    let mut out = format!(
        "asset {} ({}){}\nkeys: {}\nfirst seen {}, last seen {}{}\n",
        a.id,
        a.kind,
        a.name.as_ref().map(|n| format!(" {n}")).unwrap_or_default(),
        keys_text(a),
        time(Some(a.first_seen)),
        time(Some(a.last_seen)),
        a.disappeared_at.map(|t| format!(", gone since {}", time(Some(t)))).unwrap_or_default(),
    );
    let mut attributes = Table::new(&["ATTRIBUTE", "VALUE", "PLUGIN", "RUN", "AGENT", "OBSERVED"]);
    for s in &detail.sources {
        attributes.row(vec![
            s.attribute.clone(),
            value_text(&a.attributes.get(&s.attribute).cloned()),
            s.source.plugin.clone(),
            s.source.run_id.to_string(),
            s.source.agent.clone(),
            time(Some(s.source.observed_at)),
        ]);
    }
    out.push('\n');
    out.push_str(&attributes.render());
    if !detail.relations.is_empty() {
        out.push('\n');
        for r in &detail.relations {
            let (arrow, other) =
                if r.from_id == a.id { ("->", r.to_id) } else { ("<-", r.from_id) };
            out.push_str(&format!("{} {arrow} asset {other} ({})\n", r.relation, r.other));
        }
    }
    out.push('\n');
    out.push_str(&changes_table(&detail.history).render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_the_query_percent_encoded() {
        let filters = ["attr=sysLocation=rack 4".to_string(), "cidr=10.0.0.0/8".to_string()];
        let path = with_query("/assets", &filters, &[("after", "7".into())]).unwrap();
        assert_eq!(path, "/assets?attr=sysLocation%3Drack%204&cidr=10.0.0.0%2F8&after=7");
        let err = with_query("/assets", &["kind".to_string()], &[]).unwrap_err();
        assert!(err.to_string().contains("name=value"), "{err}");
    }
}
