//! `jobstack inventory list|show|changes`: what the fleet's results say is out
//! there, through the daemon's inventory API.

use std::process::ExitCode;

use jobstack::protocol::{Asset, AssetDetail, AssetPage, Change, ChangePage};

use super::ServerArgs;
use super::table::{Table, time};

/// `jobstack inventory ...`.
#[derive(Debug, clap::Subcommand)]
pub enum InventoryCommand {
    /// List assets, filtered; every page with --all.
    List(ListArgs),
    /// An asset with its attributes' sources, relations and history.
    Show(ShowArgs),
    /// What changed, oldest first: of an asset, of a run, since a time.
    Changes(ChangesArgs),
}

/// Arguments of `jobstack inventory list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Of this kind (host, network_device, interface, hypervisor, vm, mail_account, package, …).
    #[arg(long)]
    pub kind: Option<String>,
    /// With an address in this network (10.1.0.0/16).
    #[arg(long)]
    pub cidr: Option<String>,
    /// With this attribute: `name=value` (value as JSON, else text) or
    /// `name~text` (contains); repeatable.
    #[arg(long = "attr")]
    pub attributes: Vec<String>,
    /// Seen since: an RFC 3339 time, or a duration ago (7d).
    #[arg(long)]
    pub seen_since: Option<String>,
    /// Not seen since: an RFC 3339 time, or a duration ago (7d).
    #[arg(long)]
    pub not_seen_since: Option<String>,
    /// Whose name or one of whose keys contains this text.
    #[arg(long)]
    pub search: Option<String>,
    /// Assets per page (at most 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
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
    /// Of this asset.
    #[arg(long)]
    pub asset: Option<i64>,
    /// Made by this run (what the run changed).
    #[arg(long)]
    pub run: Option<i64>,
    /// Since: an RFC 3339 time, or a duration ago (7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Changes per page (at most 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Run an inventory command.
pub async fn run(command: InventoryCommand) -> anyhow::Result<ExitCode> {
    match command {
        InventoryCommand::List(args) => list(args).await,
        InventoryCommand::Show(args) => show(args).await,
        InventoryCommand::Changes(args) => changes(args).await,
    }
}

/// `path?` with the given parameters, encoded.
fn with_query(path: &str, params: &[(&str, String)]) -> String {
    let query: Vec<String> =
        params.iter().map(|(name, value)| format!("{name}={}", encode(value))).collect();
    format!("{path}?{}", query.join("&"))
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

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let mut params: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
    let optional = [
        ("kind", &args.kind),
        ("cidr", &args.cidr),
        ("seen_since", &args.seen_since),
        ("not_seen_since", &args.not_seen_since),
        ("q", &args.search),
    ];
    params.extend(optional.into_iter().filter_map(|(n, v)| v.clone().map(|v| (n, v))));
    params.extend(args.attributes.iter().map(|a| ("attr", a.clone())));
    let mut assets = Vec::new();
    let mut after = 0;
    loop {
        let mut page_params = params.clone();
        page_params.push(("after", after.to_string()));
        let page: AssetPage = admin.get(&with_query("/assets", &page_params)).await?;
        assets.extend(page.assets);
        match page.next {
            Some(next) if args.all => after = next,
            _ => break,
        }
    }
    admin.print_list(&assets, "no assets match", |assets| assets_table(assets).render())
}

async fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let detail: AssetDetail = admin.get(&format!("/assets/{}", args.asset)).await?;
    admin.print(&detail, describe)
}

async fn changes(args: ChangesArgs) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let mut params: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
    params.extend(args.asset.map(|a| ("asset", a.to_string())));
    params.extend(args.run.map(|r| ("run", r.to_string())));
    params.extend(args.since.clone().map(|s| ("since", s)));
    let page: ChangePage = admin.get(&with_query("/changes", &params)).await?;
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
            s.plugin.clone(),
            s.run_id.to_string(),
            s.agent.clone(),
            time(Some(s.observed_at)),
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
    fn query_values_are_percent_encoded() {
        let path = with_query(
            "/assets",
            &[("attr", "sysLocation=rack 4".into()), ("cidr", "10.0.0.0/8".into())],
        );
        assert_eq!(path, "/assets?attr=sysLocation%3Drack%204&cidr=10.0.0.0%2F8");
    }
}
