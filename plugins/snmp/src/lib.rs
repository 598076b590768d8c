//! snmp: SNMP v2c and v3 (USM authPriv) inventory of devices, as a jobstack
//! task plugin.
//!
//! Parameters (JSON Schema in the manifest, see [`params`]): `devices` (IP
//! address with an optional port), `port`, `version` (`2c` or `3`),
//! `auth_protocol` (`SHA`, `SHA-256`), `priv_protocol` (`AES`), `timeout_ms`,
//! `retries`, `bulk`, `max_repetitions`. Secrets: `{"community": "..."}` (v2c)
//! or `{"user", "auth_password", "priv_password"}` (v3 authPriv, [`usm`]), read
//! only from the job's secrets, never logged.
//!
//! - `split`: one part per device; the part's target is the device's address.
//! - `execute`: GET of the system group, then a walk of ifTable's columns with
//!   GETBULK (or GETNEXT) over WASI UDP ([`udp`]), each request with a timeout
//!   and retries ([`client`]). Emits `{"kind": "system", "device", ...}` and one
//!   `{"kind": "interface", "device", ...}` per row; returns the whole
//!   inventory `{"device", "system": {...}, "interfaces": [...]}`. No answer at
//!   all ends the part as failed with a message naming the likely causes (a
//!   wrong community first: v2c agents drop such requests silently).
//!
//! Encoding: rasn-snmp ([`message`]), the SNMP modules of the rasn ASN.1 codec:
//! pure Rust, maintained, BER only, no I/O of its own, so it builds for
//! wasm32-wasip2 and the transport stays ours. Values are shown as the MIB
//! defines them: strings as text, OIDs dotted, counters, gauges, time ticks and
//! enumerations as numbers, `ifPhysAddress` as `aa:bb:cc:dd:ee:ff`.

pub mod client;
pub mod crypto;
pub mod inventory;
pub mod message;
pub mod oids;
pub mod params;
pub mod stage;
pub mod transport;
pub mod udp;
pub mod usm;
pub mod value;

use jobstack_plugin::{Capability, Guest, Job, Manifest, Origin, Part, host};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use std::net::SocketAddr;

use client::{Client, Security};

/// What a part carries: the device's address and port.
#[derive(Debug, Serialize, Deserialize)]
pub struct Payload {
    /// `10.0.0.1:161` or `[::1]:161`.
    pub device: SocketAddr,
}

/// The parts of a run: one per device.
pub fn split_plan(plan: &params::Plan) -> Vec<Part> {
    plan.devices
        .iter()
        .map(|d| Part {
            label: d.to_string(),
            targets: vec![d.ip().to_string()],
            payload: jobstack_plugin::to_json(&Payload { device: *d }),
        })
        .collect()
}

fn tagged(kind: &str, device: &str, fields: &Map<String, Json>) -> Json {
    let mut record = Map::new();
    record.insert("kind".into(), kind.into());
    record.insert("device".into(), device.into());
    record.extend(fields.clone());
    Json::Object(record)
}

struct Snmp;

impl Guest for Snmp {
    fn manifest() -> Manifest {
        Manifest {
            name: "snmp".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "SNMP v2c inventory: system group and interfaces table of each device"
                .into(),
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
        let security = match params::parse_secrets(&job.secrets, &plan)? {
            params::Credentials::Community(c) => Security::Community(c.into_bytes()),
            params::Credentials::Usm(c) => {
                Security::Usm(usm::UsmSession::new(c, wasip2::random::random::get_random_u64()))
            }
        };
        let payload: Payload = jobstack_plugin::from_json("part payload", &job.part.payload)?;
        let device = payload.device.to_string();
        let transport = udp::WasiUdp::connect(payload.device).map_err(|e| e.to_string())?;
        let first_id = (wasip2::random::random::get_random_u64() & 0x7fff_ffff) as i32;
        let mut client =
            Client::new(transport, &device, security, plan.timeout, plan.retries, first_id);
        host::progress(0, 2);
        let system = inventory::system(&mut client).map_err(|e| e.to_string())?;
        jobstack_plugin::emit(&tagged("system", &device, &system));
        host::progress(1, 2);
        if host::stop_requested() {
            return Err("stopped on request after the system group".into());
        }
        let interfaces = inventory::interfaces(&mut client, plan.bulk, plan.max_repetitions)
            .map_err(|e| e.to_string())?;
        for row in &interfaces {
            jobstack_plugin::emit(&tagged("interface", &device, row));
        }
        host::progress(2, 2);
        if client.ignored > 0 {
            jobstack_plugin::info(&format!(
                "{} datagrams ignored (late answers or not ours)",
                client.ignored
            ));
        }
        Ok(serde_json::json!({
            "device": device,
            "system": system,
            "interfaces": interfaces,
        })
        .to_string())
    }

    fn stage(records: Vec<String>, _origin: Origin) -> Result<Vec<String>, String> {
        Ok(stage::observations(&records)?.iter().map(jobstack_plugin::to_json).collect())
    }
}

jobstack_plugin::export!(Snmp);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_makes_one_part_per_device_targeting_its_address() {
        let plan = params::parse(r#"{"devices": ["10.0.0.1", "[::1]:1161"]}"#).unwrap();
        let parts = split_plan(&plan);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].targets, ["10.0.0.1"]);
        assert_eq!(parts[1].targets, ["::1"]);
        assert_eq!(parts[1].label, "[::1]:1161");
        let payload: Payload = serde_json::from_str(&parts[1].payload).unwrap();
        assert_eq!(payload.device.port(), 1161);
    }

    #[test]
    fn manifest_declares_network_and_a_schema() {
        let m = Snmp::manifest();
        assert_eq!(m.name, "snmp");
        assert_eq!(m.capabilities, [Capability::Network]);
        let schema: serde_json::Value = serde_json::from_str(&m.params_schema).unwrap();
        assert_eq!(schema["required"], serde_json::json!(["devices"]));
    }
}
