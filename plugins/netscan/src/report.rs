//! Per-host results: folds the outcome of every connection into one record per
//! address, released in address order as soon as all of its ports are known.

use serde::Serialize;
use std::collections::VecDeque;
use std::net::IpAddr;

/// What one connection attempt found, named as nmap names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    /// The connection was accepted.
    Open,
    /// The address answered with a refusal (TCP reset).
    Closed,
    /// No answer within the timeout, or the network said the host is unreachable.
    Filtered,
}

/// The record emitted for one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HostReport {
    /// The address scanned.
    pub address: String,
    /// Whether the address answered at all (a port open or refused).
    pub answered: bool,
    /// Open ports, ascending.
    pub open: Vec<u16>,
    /// How many ports refused the connection.
    pub closed: u32,
    /// How many ports gave no answer.
    pub filtered: u32,
}

/// Collects connection outcomes for probes numbered host-major: probe `i` is
/// port `ports[i % ports.len()]` of address `i / ports.len()`.
pub struct Tally<'a> {
    addresses: &'a [IpAddr],
    ports: &'a [u16],
    /// Reports not yet released, for addresses `first..`.
    pending: VecDeque<(HostReport, usize)>,
    first: usize,
}

impl<'a> Tally<'a> {
    /// An empty tally for these addresses and ports (both non-empty).
    pub fn new(addresses: &'a [IpAddr], ports: &'a [u16]) -> Self {
        Tally { addresses, ports, pending: VecDeque::new(), first: 0 }
    }

    /// Number of probes: every port of every address.
    pub fn probes(&self) -> usize {
        self.addresses.len() * self.ports.len()
    }

    /// Record the outcome of probe `i` (each probe once).
    pub fn record(&mut self, i: usize, state: PortState) {
        let host = i / self.ports.len();
        assert!(host >= self.first, "probe {i} recorded after its host was released");
        while self.first + self.pending.len() <= host {
            let address = self.addresses[self.first + self.pending.len()].to_string();
            self.pending.push_back((
                HostReport { address, answered: false, open: Vec::new(), closed: 0, filtered: 0 },
                self.ports.len(),
            ));
        }
        let (report, left) = &mut self.pending[host - self.first];
        match state {
            PortState::Open => {
                report.answered = true;
                let port = self.ports[i % self.ports.len()];
                let at = report.open.partition_point(|p| *p < port);
                report.open.insert(at, port);
            }
            PortState::Closed => {
                report.answered = true;
                report.closed += 1;
            }
            PortState::Filtered => report.filtered += 1,
        }
        *left -= 1;
    }

    /// Release the reports of the leading addresses whose ports are all known.
    pub fn take_complete(&mut self) -> Vec<HostReport> {
        let mut out = Vec::new();
        while self.pending.front().is_some_and(|(_, left)| *left == 0) {
            let (report, _) = self.pending.pop_front().expect("front exists");
            out.push(report);
            self.first += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_hosts_in_order_once_complete() {
        let addrs: Vec<IpAddr> = ["10.0.0.1", "10.0.0.2"].map(|a| a.parse().unwrap()).to_vec();
        let ports = [22, 80, 443];
        let mut t = Tally::new(&addrs, &ports);
        assert_eq!(t.probes(), 6);
        // The second host completes first but waits for the first.
        t.record(3, PortState::Closed);
        t.record(4, PortState::Filtered);
        t.record(5, PortState::Filtered);
        assert!(t.take_complete().is_empty());
        t.record(2, PortState::Open);
        t.record(0, PortState::Open);
        assert!(t.take_complete().is_empty());
        t.record(1, PortState::Closed);
        let done = t.take_complete();
        assert_eq!(
            done,
            [
                HostReport {
                    address: "10.0.0.1".into(),
                    answered: true,
                    open: vec![22, 443],
                    closed: 1,
                    filtered: 0
                },
                HostReport {
                    address: "10.0.0.2".into(),
                    answered: true,
                    open: vec![],
                    closed: 1,
                    filtered: 2
                },
            ]
        );
        assert!(t.take_complete().is_empty());
    }

    #[test]
    fn a_host_with_only_filtered_ports_did_not_answer() {
        let addrs: Vec<IpAddr> = vec!["::1".parse().unwrap()];
        let mut t = Tally::new(&addrs, &[1]);
        t.record(0, PortState::Filtered);
        let done = t.take_complete();
        assert!(!done[0].answered);
        assert_eq!(done[0].filtered, 1);
    }
}
