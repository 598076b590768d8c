//! `jobstack agent`: a remote engine. Registers with the daemon, pulls parts,
//! runs them, sends results back (see the `agent` module of the library).

use anyhow::Context;
use ipnet::IpNet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use jobstack::agent::{AgentLoop, AgentSettings, HttpLink, OperatorPolicy, Spool};
use jobstack::artifacts::ArtifactStore;
use jobstack::client::{ApiClient, ClientTls};
use jobstack::daemon::wait_for_signal;
use jobstack::engine::{Engine, EngineConfig};
use jobstack::protocol::AgentRegistration;

/// Arguments of `jobstack agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The daemon's URL, e.g. https://jobs.example.org:8080.
    #[arg(long, env = "JOBSTACK_SERVER")]
    server: String,
    /// The daemon's enrollment secret (printed at its first start).
    #[arg(long, env = "JOBSTACK_ENROLL_SECRET", hide_env_values = true)]
    enroll: String,
    /// The name to register under [default: the host name].
    #[arg(long)]
    name: Option<String>,
    /// A network this agent reaches (repeatable); parts whose targets lie in
    /// one come to this agent [default: the networks of its interfaces, loopback excluded].
    #[arg(long = "network", value_name = "CIDR")]
    networks: Vec<IpNet>,
    /// Networks plugins may connect to (repeatable) [default: the agent's networks].
    #[arg(long = "allow-net", value_name = "CIDR")]
    allow_net: Vec<IpNet>,
    /// A directory tasks may ask for by name: NAME=PATH (read-only) or NAME=PATH:rw (repeatable).
    #[arg(long = "dir", value_name = "NAME=PATH[:rw]")]
    dirs: Vec<String>,
    /// Accept only parts of these plugins (repeatable) [default: every plugin].
    #[arg(long = "plugin", value_name = "NAME")]
    plugins: Vec<String>,
    /// Parts executed at once.
    #[arg(long, default_value_t = 4)]
    slots: usize,
    /// Where the agent keeps its result spool and module cache.
    #[arg(long, env = "JOBSTACK_AGENT_STATE", default_value = "jobstack-agent")]
    state_dir: PathBuf,
    /// A PEM file of the CA that signed the daemon's certificate.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// How long running parts may take to finish at shutdown or when their
    /// lease is revoked (e.g. 5s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    stop_grace: Duration,
    /// The longest pause between two tries to reach an unreachable daemon.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    max_retry_delay: Duration,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let mut policy = OperatorPolicy::default();
    for spec in &args.dirs {
        let (name, dir) = OperatorPolicy::parse_dir(spec).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            dir.path.is_dir(),
            "--dir {spec}: {} is not a directory",
            dir.path.display()
        );
        policy.dirs.insert(name, dir);
    }
    let networks =
        if args.networks.is_empty() { interface_networks()? } else { args.networks.clone() };
    policy.allow_net =
        if args.allow_net.is_empty() { networks.clone() } else { args.allow_net.clone() };
    let name = match &args.name {
        Some(n) => n.clone(),
        None => gethostname::gethostname().to_string_lossy().into_owned(),
    };
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("cannot create {}", args.state_dir.display()))?;
    let spool = Spool::open(&args.state_dir.join("spool"))?;
    let engine = Engine::new(EngineConfig {
        data_dir: Some(args.state_dir.join("engine")),
        ..EngineConfig::default()
    })
    .context("cannot start the engine")?;
    let registration = AgentRegistration {
        name: name.clone(),
        networks: networks.clone(),
        plugins: args.plugins.clone(),
        pooled_slots: args.slots as u32,
        dedicated_slots: engine.config().dedicated_slots,
    };
    let client = ApiClient::new(&args.server, ClientTls { ca_file: args.ca_file.clone() })?;

    // The daemon may not be up yet (or be restarting): keep trying, unless it
    // refuses us for good (wrong secret).
    let mut delay = Duration::from_millis(500);
    let link = loop {
        tokio::select! {
            registered = HttpLink::register(client.clone(), &args.enroll, &registration) => match registered {
                Ok(link) => break link,
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot register yet");
                }
                Err(e) => anyhow::bail!("registration refused by {}: {e}", args.server),
            },
            () = wait_for_signal() => return Ok(ExitCode::SUCCESS),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(args.max_retry_delay);
    };
    let settings = AgentSettings {
        slots: args.slots.max(1),
        heartbeat_interval: Duration::from_millis(link.registered().heartbeat_interval_ms),
        stop_grace: args.stop_grace,
        max_retry_delay: args.max_retry_delay,
        policy,
        ..AgentSettings::default()
    };
    // A line for people and for scripts that wait for the agent.
    println!(
        "jobstack agent: registered as {name} (id {}) with {}, networks {}",
        link.registered().agent_id,
        args.server,
        networks.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    );
    let artifacts = ArtifactStore::open(args.state_dir.join("artifacts"))
        .with_context(|| format!("cannot open {}", args.state_dir.join("artifacts").display()))?;
    AgentLoop::new(Arc::new(link), engine, spool, artifacts, settings)
        .run(wait_for_signal())
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// The networks of this machine's interfaces, loopback excluded.
fn interface_networks() -> anyhow::Result<Vec<IpNet>> {
    let mut networks = Vec::new();
    for interface in if_addrs::get_if_addrs().context("cannot list network interfaces")? {
        if interface.is_loopback() {
            continue;
        }
        let net = match &interface.addr {
            if_addrs::IfAddr::V4(a) => IpNet::with_netmask(a.ip.into(), a.netmask.into()),
            if_addrs::IfAddr::V6(a) => IpNet::with_netmask(a.ip.into(), a.netmask.into()),
        };
        if let Ok(net) = net {
            let net = net.trunc();
            if !networks.contains(&net) {
                networks.push(net);
            }
        }
    }
    anyhow::ensure!(
        !networks.is_empty(),
        "no network interface besides loopback: give the agent's networks with --network CIDR"
    );
    Ok(networks)
}
