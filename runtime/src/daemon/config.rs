//! `jobstack serve` configuration: a TOML file, environment variables and
//! flags, in rising order of precedence, over defaults that just work.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the daemon listens by default: loopback only, so a first start is
/// never exposed to the network.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The data directory by default, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "jobstack-data";

/// How long a graceful shutdown lets running parts finish.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Settings of `jobstack serve`; every field optional so that layers merge.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServeSettings {
    /// Address to listen on.
    pub listen: Option<SocketAddr>,
    /// Data directory (database, modules, compiled artifacts, credentials).
    pub data_dir: Option<PathBuf>,
    /// Database URL: `postgres://...`; SQLite in the data directory when absent.
    pub database: Option<String>,
    /// Run the daemon's own in-process agent.
    pub local_agent: Option<bool>,
    /// Admin token (else generated at first start).
    pub admin_token: Option<String>,
    /// Enrollment secret for agents (else generated at first start).
    pub enroll_secret: Option<String>,
    /// Directory of bundled plugins deployed at start (`*.wasm`, fixtures skipped).
    pub bundled_plugins: Option<PathBuf>,
    /// Graceful shutdown grace period, e.g. `10s`.
    #[serde(default, with = "humantime_serde_opt")]
    pub shutdown_grace: Option<Duration>,
    /// PEM certificate chain: serve HTTPS (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// An agent with no request for this long is down, e.g. `60s`.
    #[serde(default, with = "humantime_serde_opt")]
    pub agent_down_after: Option<Duration>,
    /// What a lease adds to a task's timeout, for tasks that set none, e.g. `30s`.
    #[serde(default, with = "humantime_serde_opt")]
    pub lease_grace: Option<Duration>,
    /// Hosts webhooks may be delivered to: names, addresses, networks.
    pub webhook_allow: Option<Vec<String>>,
    /// Attempts at a webhook event before it is dead-lettered.
    pub webhook_attempts: Option<u32>,
}

mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom)).transpose()
    }
}

impl ServeSettings {
    /// Read a TOML config file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("config file {} is invalid: {e}", path.display()))
    }

    /// `self` with every field that `over` sets replaced.
    pub fn overridden_by(self, over: ServeSettings) -> Self {
        Self {
            listen: over.listen.or(self.listen),
            data_dir: over.data_dir.or(self.data_dir),
            database: over.database.or(self.database),
            local_agent: over.local_agent.or(self.local_agent),
            admin_token: over.admin_token.or(self.admin_token),
            enroll_secret: over.enroll_secret.or(self.enroll_secret),
            bundled_plugins: over.bundled_plugins.or(self.bundled_plugins),
            shutdown_grace: over.shutdown_grace.or(self.shutdown_grace),
            tls_cert: over.tls_cert.or(self.tls_cert),
            tls_key: over.tls_key.or(self.tls_key),
            agent_down_after: over.agent_down_after.or(self.agent_down_after),
            lease_grace: over.lease_grace.or(self.lease_grace),
            webhook_allow: over.webhook_allow.or(self.webhook_allow),
            webhook_attempts: over.webhook_attempts.or(self.webhook_attempts),
        }
    }

    /// The resolved configuration, defaults filled in; a certificate without
    /// its key (or the reverse) is refused.
    pub fn resolve(self) -> anyhow::Result<ServeConfig> {
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => anyhow::bail!("TLS needs both a certificate (--tls-cert) and its key (--tls-key)"),
        };
        let webhook_allow =
            crate::notify::AllowList::parse(&self.webhook_allow.unwrap_or_default())
                .map_err(|e| anyhow::anyhow!(e))?;
        let mut retry = crate::notify::delivery::RetryPolicy::default();
        if let Some(attempts) = self.webhook_attempts {
            anyhow::ensure!(attempts >= 1, "webhook_attempts must be at least 1");
            retry.max_attempts = attempts;
        }
        let lease_grace = self.lease_grace.unwrap_or(crate::scheduler::LEASE_GRACE);
        let bounds = crate::scheduler::LEASE_GRACE_BOUNDS_MS;
        anyhow::ensure!(
            bounds.contains(&(lease_grace.as_millis() as u64)),
            "lease_grace must be between 1s and 1h"
        );
        Ok(ServeConfig {
            listen: self
                .listen
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default address")),
            data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            database: self.database,
            local_agent: self.local_agent.unwrap_or(true),
            admin_token: self.admin_token,
            enroll_secret: self.enroll_secret,
            bundled_plugins: self.bundled_plugins,
            shutdown_grace: self.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE),
            tls,
            agent_down_after: self
                .agent_down_after
                .unwrap_or(crate::scheduler::DEFAULT_AGENT_DOWN_AFTER),
            lease_grace,
            webhook_allow,
            webhook_retry: retry,
        })
    }
}

/// The daemon's TLS certificate chain and key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// The resolved configuration of a daemon.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// PostgreSQL URL, or `None` for the embedded SQLite.
    pub database: Option<String>,
    /// Run the in-process agent.
    pub local_agent: bool,
    /// Configured admin token.
    pub admin_token: Option<String>,
    /// Configured enrollment secret.
    pub enroll_secret: Option<String>,
    /// Bundled plugins to deploy at start.
    pub bundled_plugins: Option<PathBuf>,
    /// Graceful shutdown grace period.
    pub shutdown_grace: Duration,
    /// Serve HTTPS with these files; plain HTTP when absent.
    pub tls: Option<TlsFiles>,
    /// An agent with no request for this long is down.
    pub agent_down_after: Duration,
    /// What a lease adds to a task's timeout, for tasks that set none.
    pub lease_grace: Duration,
    /// Hosts webhooks may be delivered to.
    pub webhook_allow: crate::notify::AllowList,
    /// When to retry a webhook event, and when to give up.
    pub webhook_retry: crate::notify::delivery::RetryPolicy,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_over_defaults() {
        let file: ServeSettings = toml::from_str(
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/srv/js\"\nshutdown_grace = \"3s\"\n",
        )
        .unwrap();
        let flags = ServeSettings {
            listen: Some("127.0.0.1:9100".parse().unwrap()),
            ..ServeSettings::default()
        };
        let config = file.overridden_by(flags).resolve().unwrap();
        assert_eq!(config.listen.port(), 9100);
        assert_eq!(config.data_dir, PathBuf::from("/srv/js"));
        assert_eq!(config.shutdown_grace, Duration::from_secs(3));
        assert!(config.local_agent);
        assert!(toml::from_str::<ServeSettings>("lisen = 1").is_err());
    }

    #[test]
    fn the_database_comes_from_the_file_unless_a_flag_names_one() {
        let file: ServeSettings =
            toml::from_str("database = \"postgres://jobstack@db1/jobstack\"\n").unwrap();
        let config = file.clone().overridden_by(ServeSettings::default()).resolve().unwrap();
        assert_eq!(config.database.as_deref(), Some("postgres://jobstack@db1/jobstack"));
        let flags = ServeSettings {
            database: Some("postgres://jobstack@db2/jobstack".into()),
            ..ServeSettings::default()
        };
        let config = file.overridden_by(flags).resolve().unwrap();
        assert_eq!(config.database.as_deref(), Some("postgres://jobstack@db2/jobstack"));
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let half = ServeSettings { tls_cert: Some("cert.pem".into()), ..ServeSettings::default() };
        let err = half.resolve().unwrap_err().to_string();
        assert!(err.contains("--tls-key"), "{err}");
    }
}
