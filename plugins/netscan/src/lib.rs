//! netscan: network discovery by TCP connect, as a jobstack task plugin.
//!
//! Parameters (JSON Schema in the manifest, see [`params`]): `targets` (addresses,
//! CIDR networks, ranges), `ports` (`"22,80,8000-8100"` or `[22, 80]`),
//! `block_size`, `timeout_ms`, `concurrency`. No secrets.
//!
//! - `split` merges the targets and cuts them into blocks of `block_size`
//!   addresses; each part's `targets` is the block written as the exact list of
//!   CIDR networks covering it, so the scheduler gives the part to an agent on
//!   that network and the engine lets the plugin connect only there.
//! - `execute` connects to every port of every address of the part, with at most
//!   `concurrency` connections in flight and `timeout_ms` per connection
//!   ([`scan`]). It emits one record per address as soon as all its ports are
//!   known, in address order: `{"address", "answered", "open": [ports], "closed",
//!   "filtered"}` ([`report`]), reports progress in connections done, and
//!   returns a summary `{"hosts", "answered", "open_ports", "ports_per_host",
//!   "stopped"}`. A stop request ends the scan early with the hosts finished so far.

pub mod params;
pub mod ports;
pub mod report;
pub mod scan;
pub mod stage;
pub mod targets;

use jobstack_plugin::{Capability, Guest, Job, Manifest, Origin, Part, host};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

use report::Tally;
use scan::{Ended, ScanConfig};

/// What a part carries: the block as CIDR networks (the same as its `targets`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Payload {
    /// The block's addresses as CIDR networks.
    pub targets: Vec<String>,
}

/// The part's result.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Addresses scanned (all of the part's, unless stopped).
    pub hosts: usize,
    /// Addresses that answered.
    pub answered: usize,
    /// Open ports found, over all addresses.
    pub open_ports: usize,
    /// Ports tried on each address.
    pub ports_per_host: usize,
    /// Whether the host asked to stop before the scan was complete.
    pub stopped: bool,
}

/// The parts of a run: one per block of addresses.
pub fn split_plan(plan: &params::Plan) -> Vec<Part> {
    targets::blocks(&plan.spans, u128::from(plan.block_size))
        .into_iter()
        .map(|block| {
            let cidrs: Vec<String> = block.iter().flat_map(|s| s.to_cidrs()).collect();
            let first = block.first().expect("blocks are not empty");
            let last = block.last().expect("blocks are not empty");
            let count: u128 = block.iter().map(|s| s.count()).sum();
            let label = if count == 1 {
                first.addr(first.lo).to_string()
            } else {
                format!("{}-{} ({count} addresses)", first.addr(first.lo), last.addr(last.hi))
            };
            Part {
                label,
                payload: jobstack_plugin::to_json(&Payload { targets: cidrs.clone() }),
                targets: cidrs,
            }
        })
        .collect()
}

/// Progress is reported about this often (in connections), and at the end.
const PROGRESS_EVERY: u64 = 512;

struct Netscan;

impl Guest for Netscan {
    fn manifest() -> Manifest {
        Manifest {
            name: "netscan".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Network discovery: TCP connect to every port of every address of a range, reporting per host whether it answered and which ports are open".into(),
            params_schema: params::schema().to_string(),
            capabilities: vec![Capability::Network],
        }
    }

    fn split(params: String) -> Result<Vec<Part>, String> {
        Ok(split_plan(&params::parse(&params)?))
    }

    fn init(params: String) -> Result<(), String> {
        params::parse(&params).map(|_| ())
    }

    fn execute(job: Job) -> Result<String, String> {
        let plan = params::parse(&job.params)?;
        let payload: Payload = jobstack_plugin::from_json("part payload", &job.part.payload)?;
        let spans = targets::parse_targets(&payload.targets)?;
        let addresses: Vec<IpAddr> = spans.iter().flat_map(|s| s.addresses()).collect();
        let mut tally = Tally::new(&addresses, &plan.ports);
        let probes = tally.probes();
        jobstack_plugin::info(&format!(
            "scanning {} addresses x {} ports ({} connections, {} at once, timeout {} ms)",
            addresses.len(),
            plan.ports.len(),
            probes,
            plan.concurrency,
            plan.timeout.as_millis()
        ));
        let mut summary = Summary {
            hosts: 0,
            answered: 0,
            open_ports: 0,
            ports_per_host: plan.ports.len(),
            stopped: false,
        };
        let mut settled: u64 = 0;
        let total = probes as u64;
        host::progress(0, total);
        let targets_of =
            |i: usize| (addresses[i / plan.ports.len()], plan.ports[i % plan.ports.len()]);
        let ended = scan::scan(
            probes,
            targets_of,
            ScanConfig { timeout: plan.timeout, concurrency: plan.concurrency as usize },
            |i, state| {
                tally.record(i, state);
                for report in tally.take_complete() {
                    summary.hosts += 1;
                    summary.answered += usize::from(report.answered);
                    summary.open_ports += report.open.len();
                    jobstack_plugin::emit(&report);
                }
                settled += 1;
                if settled.is_multiple_of(PROGRESS_EVERY) || settled == total {
                    host::progress(settled, total);
                }
            },
            host::stop_requested,
        )?;
        summary.stopped = ended == Ended::Stopped;
        if summary.stopped {
            jobstack_plugin::warn(&format!(
                "stopped on request after {} of {} addresses",
                summary.hosts,
                addresses.len()
            ));
        }
        Ok(jobstack_plugin::to_json(&summary))
    }

    fn stage(records: Vec<String>, _origin: Origin) -> Result<Vec<String>, String> {
        Ok(stage::observations(&records)?.iter().map(jobstack_plugin::to_json).collect())
    }
}

jobstack_plugin::export!(Netscan);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_makes_blocks_whose_targets_cover_them_exactly() {
        let plan = params::parse(
            r#"{"targets": ["127.0.0.1-127.0.0.16", "10.0.0.5"], "ports": "22", "block_size": 8}"#,
        )
        .unwrap();
        let parts = split_plan(&plan);
        let targets: Vec<Vec<String>> = parts.iter().map(|p| p.targets.clone()).collect();
        assert_eq!(
            targets,
            [
                vec!["10.0.0.5", "127.0.0.1", "127.0.0.2/31", "127.0.0.4/30"],
                vec!["127.0.0.8/29"],
                vec!["127.0.0.16"],
            ]
        );
        assert_eq!(parts[0].label, "10.0.0.5-127.0.0.7 (8 addresses)");
        assert_eq!(parts[2].label, "127.0.0.16");
        for p in &parts {
            let payload: Payload = serde_json::from_str(&p.payload).unwrap();
            assert_eq!(payload.targets, p.targets);
        }
    }

    #[test]
    fn split_refuses_bad_params() {
        assert!(Netscan::split(r#"{"targets": ["x"], "ports": "22"}"#.into()).is_err());
        assert!(Netscan::split("not json".into()).unwrap_err().contains("invalid params"));
    }

    #[test]
    fn manifest_declares_network_and_a_schema() {
        let m = Netscan::manifest();
        assert_eq!(m.name, "netscan");
        assert_eq!(m.capabilities, [Capability::Network]);
        let schema: serde_json::Value = serde_json::from_str(&m.params_schema).unwrap();
        assert_eq!(schema["required"], serde_json::json!(["targets", "ports"]));
    }
}
