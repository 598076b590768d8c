//! Which agent may take which part.
//!
//! A task targets either an explicit list of agents (by name) or, automatically,
//! the agents whose networks hold the part's targets. For automatic targeting a
//! part's targets (addresses, CIDR blocks, `a-b` ranges) are folded into the one
//! address span that covers them; an agent may take the part when one of its
//! networks contains that whole span. A part with no address targets (none at
//! all, or host names, which resolve anywhere) may be taken by any agent.
//!
//! Addresses are compared as 128-bit numbers, IPv4 as IPv4-mapped IPv6, and
//! stored as fixed-width hex text, so `lo <= x AND x <= hi` works as plain text
//! comparison in every SQL dialect and can use an index.
//!
//! # Where this rule is restated
//!
//! The whole rule in Rust is [`agent_may_take`]:
//! the agent accepts the run's plugin; a part pinned to an agent (`each_agent`)
//! goes to that agent only; a run targeting agents by name goes to those;
//! otherwise [`networks_cover`] of [`span_of_targets`]. The scheduler asks it
//! which parts no agent may take
//! ([`Scheduler::unassignable_parts`](super::Scheduler::unassignable_parts)).
//! Leasing does not call it: each store restates it in SQL, beside what only a
//! lease checks (the part waits and its backoff is over, its run waits or
//! runs, the agent holds no other part of the run):
//!
//! - SQLite: `RUNS_TO_LEASE` (the agents named, one part per run per agent)
//!   and `PART_TO_LEASE` (the pin, the networks over the part's stored span)
//!   in `runtime/src/store/sqlite/writer/ops/statements.rs`, and `lease` in
//!   `runtime/src/store/sqlite/writer/ops/lease.rs` (the plugin, in Rust).
//! - PostgreSQL: the SQL functions `jobstack_lease_in` (a lease alone, and the
//!   lease after a single result) and `jobstack_finish_and_lease` (the leases
//!   after a batch of finished results, for several agents at once), whose
//!   definitions are `runtime/migrations/postgres/functions/<name>.sql`,
//!   called from `runtime/src/store/postgres/leasing.rs` (and `results.rs`,
//!   `finish_batch.rs`).
//!
//! Both stores keep the spans this module computes: [`span_of_targets`] of a
//! part when it is stored, [`AddressSpan::of_net`] of an agent's networks when
//! it registers.
//!
//! tests/scheduler/policy/ runs one table of cases through each copy.

use ipnet::IpNet;
use std::net::IpAddr;

use super::{Agent, Part, Run, State};

/// A closed span of addresses `[lo, hi]` as 128-bit numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressSpan {
    /// The first address.
    pub lo: u128,
    /// The last address.
    pub hi: u128,
}

impl AddressSpan {
    /// The span of a network, e.g. `10.0.0.0/24`.
    pub fn of_net(net: &IpNet) -> Self {
        Self { lo: to_u128(net.network()), hi: to_u128(net.broadcast()) }
    }

    /// Whether `other` lies entirely inside this span.
    pub fn contains(&self, other: &AddressSpan) -> bool {
        self.lo <= other.lo && other.hi <= self.hi
    }

    /// `lo` as 32 lowercase hex digits (the stored form).
    pub fn lo_hex(&self) -> String {
        format!("{:032x}", self.lo)
    }

    /// `hi` as 32 lowercase hex digits (the stored form).
    pub fn hi_hex(&self) -> String {
        format!("{:032x}", self.hi)
    }

    fn union(self, other: AddressSpan) -> AddressSpan {
        AddressSpan { lo: self.lo.min(other.lo), hi: self.hi.max(other.hi) }
    }
}

fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Parse one target into a span, or `None` when it is not an address form
/// (a host name, with or without a port).
pub fn parse_target(target: &str) -> Option<AddressSpan> {
    let target = target.trim();
    if let Ok(addr) = target.parse::<IpAddr>() {
        let x = to_u128(addr);
        return Some(AddressSpan { lo: x, hi: x });
    }
    if let Ok(net) = target.parse::<IpNet>() {
        return Some(AddressSpan::of_net(&net.trunc()));
    }
    if let Some((a, b)) = target.split_once('-')
        && let (Ok(a), Ok(b)) = (a.trim().parse::<IpAddr>(), b.trim().parse::<IpAddr>())
        && a.is_ipv4() == b.is_ipv4()
    {
        let (a, b) = (to_u128(a), to_u128(b));
        return Some(AddressSpan { lo: a.min(b), hi: a.max(b) });
    }
    // `address:port` and `[v6]:port`.
    if let Ok(sock) = target.parse::<std::net::SocketAddr>() {
        let x = to_u128(sock.ip());
        return Some(AddressSpan { lo: x, hi: x });
    }
    None
}

/// The span covering every address target of a part, or `None` when the part
/// has no address target (any agent may take it).
pub fn span_of_targets<S: AsRef<str>>(targets: &[S]) -> Option<AddressSpan> {
    targets.iter().filter_map(|t| parse_target(t.as_ref())).reduce(AddressSpan::union)
}

/// Whether an agent with `networks` may take a part whose targets span `span`.
pub fn networks_cover(networks: &[IpNet], span: Option<AddressSpan>) -> bool {
    match span {
        None => true,
        Some(span) => networks.iter().any(|net| AddressSpan::of_net(&net.trunc()).contains(&span)),
    }
}

/// Whether `agent` may take `part` of `run` (the same rule as the leasing query).
pub fn agent_may_take(agent: &Agent, run: &Run, part: &Part) -> bool {
    if !agent.accepts(&run.spec.plugin) {
        return false;
    }
    let name = &agent.registration.name;
    if let Some(pinned) = &part.pinned_agent {
        return pinned == name;
    }
    if !run.spec.targeting.agents.is_empty() {
        return run.spec.targeting.agents.contains(name);
    }
    networks_cover(&agent.registration.networks, span_of_targets(&part.targets))
}

/// Say on each waiting part of `run` that no agent of `agents` may take why
/// (`Part::unassignable`).
pub fn explain_waiting(agents: &[Agent], run: &Run, parts: &mut [Part]) {
    for part in parts.iter_mut().filter(|p| matches!(p.state, State::Waiting | State::Suspended)) {
        part.unassignable = why_unassignable(agents, run, part);
    }
}

/// Why no agent of `agents` may take `part` of `run`, in words an admin can
/// act on; `None` when one may.
pub fn why_unassignable(agents: &[Agent], run: &Run, part: &Part) -> Option<String> {
    if agents.iter().any(|a| agent_may_take(a, run, part)) {
        return None;
    }
    let plugin = &run.spec.plugin;
    let named = &run.spec.targeting.agents;
    Some(if agents.is_empty() {
        "no agent is registered".to_string()
    } else if !agents.iter().any(|a| a.accepts(plugin)) {
        format!("no registered agent accepts plugin {plugin}")
    } else if let Some(pinned) = &part.pinned_agent {
        format!("agent {pinned} is not registered, or does not accept plugin {plugin}")
    } else if !named.is_empty() {
        format!(
            "none of the agents the task names ({}) is registered and accepts plugin {plugin}",
            named.join(", ")
        )
    } else {
        let shown: Vec<&str> = part.targets.iter().take(3).map(String::as_str).collect();
        let more = if part.targets.len() > 3 { ", …" } else { "" };
        format!("no registered agent's networks contain {}{more}", shown.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn address_forms() {
        let one = parse_target("192.168.0.7").unwrap();
        assert_eq!(one.lo, one.hi);
        let block = parse_target("192.168.0.0/28").unwrap();
        assert_eq!(block.hi - block.lo, 15);
        let range = parse_target("10.0.0.9 - 10.0.0.1").unwrap();
        assert_eq!(range.hi - range.lo, 8);
        assert_eq!(parse_target("127.0.0.1:8443"), parse_target("127.0.0.1"));
        assert!(parse_target("esx1.example.org").is_none());
        assert!(parse_target("esx1.example.org:443").is_none());
        assert!(parse_target("10.0.0.1-::1").is_none());
    }

    #[test]
    fn part_goes_to_the_agent_whose_network_holds_it() {
        let part = span_of_targets(&["192.168.0.16/28"]);
        assert!(networks_cover(&nets(&["192.168.0.0/24"]), part));
        assert!(!networks_cover(&nets(&["10.0.0.0/8"]), part));
        // A block straddling two networks needs one network holding all of it.
        let wide = span_of_targets(&["192.168.0.0/23"]);
        assert!(!networks_cover(&nets(&["192.168.0.0/24", "192.168.1.0/24"]), wide));
    }

    #[test]
    fn parts_without_addresses_go_anywhere() {
        let none: [&str; 0] = [];
        assert!(networks_cover(&nets(&[]), span_of_targets(&none)));
        assert!(networks_cover(&[], span_of_targets(&["esx.example.org"])));
    }

    #[test]
    fn hex_form_orders_like_numbers() {
        let a = parse_target("9.255.255.255").unwrap();
        let b = parse_target("10.0.0.0").unwrap();
        assert!(a.lo_hex() < b.lo_hex());
        assert_eq!(a.lo_hex().len(), 32);
    }
}
