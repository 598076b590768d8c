//! `jobstack serve`: flags and environment over the config file, then the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use jobstack::daemon::{self, ServeSettings};

/// Arguments of `jobstack serve`. Each may also come from the environment or
/// the config file; flags win over the environment, which wins over the file.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML config file with the same keys (listen, data_dir, database, ...).
    #[arg(long, env = "JOBSTACK_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "JOBSTACK_LISTEN")]
    listen: Option<SocketAddr>,
    /// Data directory [default: ./jobstack-data].
    #[arg(long, env = "JOBSTACK_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL for several daemons; the embedded SQLite when absent.
    #[arg(long, env = "JOBSTACK_DATABASE")]
    database: Option<String>,
    /// Do not run the daemon's own in-process agent.
    #[arg(long)]
    no_local_agent: bool,
    /// Admin token [default: generated at first start and printed once].
    #[arg(long, env = "JOBSTACK_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Enrollment secret agents register with [default: generated, printed once].
    #[arg(long, env = "JOBSTACK_ENROLL_SECRET", hide_env_values = true)]
    enroll_secret: Option<String>,
    /// Directory of plugins to deploy at start (fixture_* files skipped).
    #[arg(long, env = "JOBSTACK_BUNDLED_PLUGINS")]
    bundled_plugins: Option<PathBuf>,
    /// How long a graceful shutdown waits for running parts (e.g. 10s).
    #[arg(long, value_parser = humantime::parse_duration)]
    shutdown_grace: Option<std::time::Duration>,
    /// PEM certificate chain: serve HTTPS instead of HTTP (needs --tls-key).
    #[arg(long, env = "JOBSTACK_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "JOBSTACK_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// An agent with no request for this long is down (e.g. 60s).
    #[arg(long, value_parser = humantime::parse_duration)]
    agent_down_after: Option<std::time::Duration>,
    /// What a lease adds to a task's timeout for the agent's start-up and
    /// the result's trip back, for tasks that set no lease_grace_ms; agents
    /// heartbeat every third of it (1s to 1h) [default: 30s].
    #[arg(long, value_parser = humantime::parse_duration)]
    lease_grace: Option<std::time::Duration>,
    /// A host name, address or network webhooks may be delivered to
    /// (repeat, or separate with commas) [default: none].
    #[arg(long, env = "JOBSTACK_WEBHOOK_ALLOW", value_delimiter = ',')]
    webhook_allow: Vec<String>,
    /// Attempts at a webhook event before it is dead-lettered [default: 10].
    #[arg(long)]
    webhook_attempts: Option<u32>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => ServeSettings::from_file(path)?,
        None => ServeSettings::default(),
    };
    let flags = ServeSettings {
        listen: args.listen,
        data_dir: args.data_dir,
        database: args.database,
        local_agent: args.no_local_agent.then_some(false),
        admin_token: args.admin_token,
        enroll_secret: args.enroll_secret,
        bundled_plugins: args.bundled_plugins,
        shutdown_grace: args.shutdown_grace,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        agent_down_after: args.agent_down_after,
        lease_grace: args.lease_grace,
        webhook_allow: (!args.webhook_allow.is_empty()).then_some(args.webhook_allow),
        webhook_attempts: args.webhook_attempts,
    };
    daemon::serve(file.overridden_by(flags).resolve()?).await?;
    Ok(ExitCode::SUCCESS)
}
