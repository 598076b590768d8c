//! The stage: each ESX host is a hypervisor (by its hardware UUID and its
//! object on the endpoint), each VM a virtual machine (by its UUID) that
//! runs on its host. Nothing that moves on its own is kept (no usage).

use serde_json::{Map, Value, json};

/// Host fields kept as attributes.
const HOST: [&str; 15] = [
    "vendor",
    "model",
    "cpu_model",
    "cpu_packages",
    "cpu_cores",
    "cpu_threads",
    "cpu_mhz",
    "memory_bytes",
    "bios_vendor",
    "bios_version",
    "bios_release_date",
    "product_name",
    "product_version",
    "product_build",
    "serial",
];

/// VM fields kept as attributes.
const VM: [&str; 4] = ["power_state", "cpus", "memory_mb", "guest_os"];

/// The observations of the inventory's records.
pub fn observations(records: &[String]) -> Result<Vec<Value>, String> {
    let mut seen = Vec::new();
    for text in records {
        let record: Map<String, Value> = jobstack_plugin::from_json("record", text)?;
        let text = |name: &str| record.get(name).and_then(Value::as_str).unwrap_or("");
        let moref = |id: &str| format!("{}/{id}", text("endpoint"));
        let mut keys = json!({"moref": moref(text("moref"))});
        if !text("uuid").is_empty() {
            keys["uuid"] = text("uuid").into();
        }
        let kept = |names: &[&str]| -> Map<String, Value> {
            names
                .iter()
                .filter_map(|n| {
                    record.get(*n).filter(|v| !v.is_null()).map(|v| (n.to_string(), v.clone()))
                })
                .collect()
        };
        let mut observation = match text("kind") {
            "host" => json!({"kind": "hypervisor", "keys": keys, "attributes": kept(&HOST)}),
            "vm" => {
                let host =
                    json!({"kind": "hypervisor", "keys": {"moref": moref(text("host_moref"))}});
                json!({"kind": "vm", "keys": keys, "attributes": kept(&VM),
                       "relations": [{"relation": "runs_on", "to": host}]})
            }
            other => return Err(format!("record of unknown kind {other:?}")),
        };
        if !text("name").is_empty() {
            observation["name"] = text("name").into();
        }
        seen.push(observation);
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_hypervisors_and_vms_run_on_them() {
        let records = [
            json!({"kind": "host", "endpoint": "https://127.0.0.1:8989/sdk", "moref": "host-21",
                   "name": "esx1", "uuid": "4c4c-1", "vendor": "VMware", "cpu_mhz": 2294}),
            json!({"kind": "vm", "endpoint": "https://127.0.0.1:8989/sdk", "moref": "vm-60",
                   "name": "web", "host": "esx1", "host_moref": "host-21", "uuid": "4231-9",
                   "power_state": "poweredOn", "cpus": 1}),
        ]
        .map(|r| r.to_string());
        let seen = observations(&records).unwrap();
        assert_eq!(seen[0]["kind"], "hypervisor");
        assert_eq!(seen[0]["keys"]["uuid"], "4c4c-1");
        assert_eq!(seen[0]["attributes"]["cpu_mhz"], 2294);
        assert_eq!(seen[1]["kind"], "vm");
        assert_eq!(
            seen[1]["relations"][0]["to"]["keys"]["moref"],
            "https://127.0.0.1:8989/sdk/host-21"
        );
        assert_eq!(seen[1]["name"], "web");
    }
}
