//! What one leased part may touch: the part's targets (sockets to their
//! addresses, outgoing HTTP to their hosts) and the task's grants (directories
//! by name, self-signed TLS), narrowed to what the agent's operator allows. The engine narrows once more to
//! the capabilities the plugin declared in its manifest.

use ipnet::{IpNet, Ipv4Subnets, Ipv6Subnets};
use std::net::IpAddr;

use super::settings::OperatorPolicy;
use crate::engine::Grants;
use crate::protocol::Lease;

/// A capability the task asks for that this agent cannot give: the part fails
/// with this message (the operator must configure it, or the task target
/// another agent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// `grants.dirs` names a directory the operator did not configure.
    #[error(
        "the task needs directory {0:?}, which this agent does not offer (start it with --dir {0}=PATH)"
    )]
    UnknownDir(String),
}

/// The grants of one execution of `lease` on this agent.
pub fn grants_for(lease: &Lease, policy: &OperatorPolicy) -> Result<Grants, GrantError> {
    let mut grants = Grants::new();
    let (granted, outside) = narrow_to_targets(&lease.part.targets, &policy.allow_net);
    for net in outside {
        tracing::warn!(
            part = lease.part_id,
            %net,
            "target outside the networks this agent allows; not granted"
        );
    }
    for net in granted {
        grants = grants.allow_network(net);
    }
    for target in &lease.part.targets {
        if let Some(host) = http_host(target) {
            match host_address(host) {
                // An address target must lie in the networks this agent allows.
                Some(addr) if !policy.allow_net.iter().any(|n| n.contains(&addr)) => {}
                // A host name was named by the admin for this part; the plugin
                // reaches it only if it declared the `http` capability.
                _ => grants = grants.allow_http_host(host),
            }
        }
    }
    grants = grants.accept_self_signed_tls(lease.grants.tls_accept_self_signed);
    for name in &lease.grants.dirs {
        let dir = policy.dirs.get(name).ok_or_else(|| GrantError::UnknownDir(name.clone()))?;
        grants = grants.preopen(&dir.path, format!("/{name}"), dir.writable);
    }
    Ok(grants)
}

/// The networks a part's sockets may reach: those its `targets` name that lie
/// inside one of `allow_net`; and those they name outside it (not granted).
/// `jobstack exec` narrows its `--allow-net` with this too, as an agent does.
pub fn narrow_to_targets(targets: &[String], allow_net: &[IpNet]) -> (Vec<IpNet>, Vec<IpNet>) {
    targets
        .iter()
        .flat_map(|t| target_networks(t))
        .partition(|net| allow_net.iter().any(|allowed| allowed.contains(net)))
}

/// The `host` or `host:port` a target names for outgoing HTTP: not a block
/// of addresses or a range.
fn http_host(target: &str) -> Option<&str> {
    let target = target.trim();
    let block = !target_networks(target).is_empty() && target.parse::<IpAddr>().is_err();
    (!target.is_empty() && !block).then_some(target)
}

/// The address of `host` or `host:port` when it is an IP address.
fn host_address(host: &str) -> Option<IpAddr> {
    if let Ok(addr) = host.parse::<IpAddr>() {
        return Some(addr);
    }
    if let Ok(sock) = host.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    None
}

/// The networks a part target names: an address, a CIDR block or an `a-b`
/// range (as the smallest list of blocks). Host names name no network.
pub fn target_networks(target: &str) -> Vec<IpNet> {
    let target = target.trim();
    if let Ok(net) = target.parse::<IpNet>() {
        return vec![net.trunc()];
    }
    if let Ok(addr) = target.parse::<IpAddr>() {
        return vec![IpNet::from(addr)];
    }
    let Some((lo, hi)) = target.split_once('-') else {
        return Vec::new();
    };
    match (lo.trim().parse::<IpAddr>(), hi.trim().parse::<IpAddr>()) {
        (Ok(IpAddr::V4(lo)), Ok(IpAddr::V4(hi))) if lo <= hi => {
            Ipv4Subnets::new(lo, hi, 0).map(IpNet::V4).collect()
        }
        (Ok(IpAddr::V6(lo)), Ok(IpAddr::V6(hi))) if lo <= hi => {
            Ipv6Subnets::new(lo, hi, 0).map(IpNet::V6).collect()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn sockets_are_narrowed_to_the_targets_inside_the_allowed_networks() {
        let targets = ["127.0.0.1".to_string(), "10.0.0.0/30".to_string()];
        let (granted, outside) = narrow_to_targets(&targets, &nets(&["127.0.0.0/8"]));
        assert_eq!((granted, outside), (nets(&["127.0.0.1/32"]), nets(&["10.0.0.0/30"])));
    }

    #[test]
    fn targets_become_networks() {
        assert_eq!(target_networks("10.0.0.5"), nets(&["10.0.0.5/32"]));
        assert_eq!(target_networks("10.0.0.7/24"), nets(&["10.0.0.0/24"]));
        assert_eq!(
            target_networks("10.0.0.1-10.0.0.4"),
            nets(&["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/32"])
        );
        assert_eq!(target_networks("::1"), nets(&["::1/128"]));
        assert!(target_networks("esx1.example.org").is_empty());
        assert!(target_networks("10.0.0.9-10.0.0.1").is_empty());
    }

    #[test]
    fn http_hosts_are_targets_that_are_not_blocks() {
        assert_eq!(http_host("esx1.example.org"), Some("esx1.example.org"));
        assert_eq!(http_host("127.0.0.1:8443"), Some("127.0.0.1:8443"));
        assert_eq!(http_host("my-host.example"), Some("my-host.example"));
        assert_eq!(http_host("10.0.0.0/24"), None);
        assert_eq!(http_host("10.0.0.1-10.0.0.4"), None);
        assert_eq!(host_address("127.0.0.1:8443"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(host_address("esx1"), None);
    }

    #[test]
    fn address_hosts_outside_the_allowed_networks_are_not_granted() {
        let lease: Lease = serde_json::from_value(serde_json::json!({
            "part_id": 1, "run_id": 1, "task_id": 1, "attempt": 1,
            "expires_at": "2026-01-01T00:00:00Z", "plugin": "esx",
            "plugin_sha256": "00", "params": {}, "secrets": {},
            "part": {"label": "p", "targets": ["127.0.0.1:8443", "192.0.2.7:443", "esx.example"], "payload": "{}"},
            "timeout_ms": 1000, "mode": "pooled",
            "grants": {"tls_accept_self_signed": true}
        }))
        .unwrap();
        let policy =
            OperatorPolicy { allow_net: nets(&["127.0.0.0/8"]), ..OperatorPolicy::default() };
        let grants = grants_for(&lease, &policy).unwrap();
        assert_eq!(grants.http_hosts(), ["127.0.0.1:8443", "esx.example"]);
        assert!(grants.accepts_self_signed_tls());
        assert!(grants.networks().is_empty(), "host:port targets are for HTTP only");
        let mut asks_dir = lease.clone();
        asks_dir.grants.dirs = vec!["deploy".into()];
        assert_eq!(
            grants_for(&asks_dir, &policy).unwrap_err(),
            GrantError::UnknownDir("deploy".into())
        );
    }
}
