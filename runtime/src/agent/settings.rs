//! [`AgentSettings`]: what an agent's operator decides — its name and networks,
//! how much work it takes at once, and the capabilities it is willing to give
//! plugins ([`OperatorPolicy`]). A task can ask for capabilities; it only gets
//! those the operator allows here.

use ipnet::IpNet;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::scheduler::HEARTBEAT_INTERVAL;

/// A directory the operator offers to tasks under a name (`--dir NAME=PATH[:rw]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorDir {
    /// The directory on this machine.
    pub path: PathBuf,
    /// Whether plugins may write there.
    pub writable: bool,
}

/// The capabilities an operator lets plugins use on this agent. Deny by
/// default: an empty policy grants nothing a task asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorPolicy {
    /// Networks plugins may connect to. A part's target outside all of them
    /// is not granted.
    pub allow_net: Vec<IpNet>,
    /// Named directories tasks may ask for (`grants.dirs`); a plugin sees
    /// directory `NAME` at `/NAME`.
    pub dirs: BTreeMap<String, OperatorDir>,
}

impl OperatorPolicy {
    /// Parse `NAME=PATH` or `NAME=PATH:rw` (read-only unless `:rw`).
    pub fn parse_dir(spec: &str) -> Result<(String, OperatorDir), String> {
        let (name, rest) = spec
            .split_once('=')
            .ok_or_else(|| format!("--dir {spec:?}: expected NAME=PATH or NAME=PATH:rw"))?;
        let valid_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            return Err(format!("--dir {spec:?}: the name must be letters, digits, '-' or '_'"));
        }
        let (path, writable) = match rest.strip_suffix(":rw") {
            Some(path) => (path, true),
            None => (rest.strip_suffix(":ro").unwrap_or(rest), false),
        };
        if path.is_empty() {
            return Err(format!("--dir {spec:?}: the path is empty"));
        }
        Ok((name.to_string(), OperatorDir { path: PathBuf::from(path), writable }))
    }
}

/// Everything an agent loop needs to know that is not the link or the engine.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Executions at once (each holds one lease).
    pub slots: usize,
    /// How long one lease request may wait for work.
    pub lease_wait: Duration,
    /// How often leases in progress are extended: what the daemon asked for
    /// at registration ([`HEARTBEAT_INTERVAL`] by default).
    pub heartbeat_interval: Duration,
    /// How often progress is reported while it changes.
    pub progress_interval: Duration,
    /// How long a plugin asked to stop (revoked lease, shutdown) may take
    /// before it is canceled.
    pub stop_grace: Duration,
    /// Wait after the scheduler could not be reached, doubled up to
    /// [`AgentSettings::max_retry_delay`].
    pub retry_delay: Duration,
    /// The longest wait between two attempts to reach the scheduler.
    pub max_retry_delay: Duration,
    /// What plugins may use on this machine.
    pub policy: OperatorPolicy,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            slots: 4,
            lease_wait: Duration::from_secs(20),
            heartbeat_interval: HEARTBEAT_INTERVAL,
            progress_interval: Duration::from_secs(1),
            stop_grace: Duration::from_secs(5),
            retry_delay: Duration::from_millis(500),
            max_retry_delay: Duration::from_secs(10),
            policy: OperatorPolicy::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_specs_parse_with_read_only_default() {
        let (name, dir) = OperatorPolicy::parse_dir("deploy=/srv/apps:rw").unwrap();
        assert_eq!(name, "deploy");
        assert_eq!(dir.path, PathBuf::from("/srv/apps"));
        assert!(dir.writable);
        let (_, dir) = OperatorPolicy::parse_dir("mail=/etc/mail").unwrap();
        assert!(!dir.writable);
        for bad in ["nopath", "=/x", "bad name=/x", "x="] {
            assert!(OperatorPolicy::parse_dir(bad).is_err(), "{bad} accepted");
        }
    }
}
