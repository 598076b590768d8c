//! What one leased part may touch: the part's targets and the task's grants,
//! narrowed to what the agent's operator allows. The engine narrows once more to
//! the capabilities the plugin declared in its manifest.

use ipnet::{IpNet, Ipv4Subnets, Ipv6Subnets};
use std::net::IpAddr;

use super::settings::OperatorPolicy;
use crate::api::wire::Lease;
use crate::engine::Grants;

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
    for target in &lease.part.targets {
        for net in target_networks(target) {
            if policy
                .allow_net
                .iter()
                .any(|allowed| allowed.contains(&net))
            {
                grants = grants.allow_network(net);
            } else {
                tracing::warn!(
                    part = lease.part_id,
                    %net,
                    "target outside the networks this agent allows; not granted"
                );
            }
        }
    }
    for name in &lease.grants.dirs {
        let dir = policy
            .dirs
            .get(name)
            .ok_or_else(|| GrantError::UnknownDir(name.clone()))?;
        grants = grants.preopen(&dir.path, format!("/{name}"), dir.writable);
    }
    Ok(grants)
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
}
