//! The stage: the device is a network device (by its address, and by sysName
//! with sysObjectID), each interface an asset of its own, part of it. Values
//! that move on their own (sysUpTime, octet counters) are not kept: they are
//! state, not inventory, and would be a change at every run.

use serde_json::{Map, Value, json};

/// System group fields kept as the device's attributes.
const SYSTEM: [&str; 5] = ["sysDescr", "sysObjectID", "sysContact", "sysName", "sysLocation"];

/// Interface columns kept as the interface's attributes.
const INTERFACE: [&str; 7] =
    ["ifDescr", "ifType", "ifMtu", "ifSpeed", "ifPhysAddress", "ifAdminStatus", "ifOperStatus"];

/// The observations of one device's records (its system group, then its
/// interfaces).
pub fn observations(records: &[String]) -> Result<Vec<Value>, String> {
    let mut seen = Vec::new();
    for text in records {
        let record: Map<String, Value> = jobstack_plugin::from_json("record", text)?;
        let device = record.get("device").and_then(Value::as_str).ok_or("record without device")?;
        // The device as the plugin reached it (address and UDP port): the
        // address is the device's.
        let device = device
            .parse::<std::net::SocketAddr>()
            .map(|s| s.ip().to_string())
            .unwrap_or_else(|_| device.to_string());
        let device = device.as_str();
        match record.get("kind").and_then(Value::as_str) {
            Some("system") => seen.push(device_observation(device, &record)),
            Some("interface") => seen.push(interface_observation(device, &record)),
            other => return Err(format!("record of unknown kind {other:?}")),
        }
    }
    Ok(seen)
}

fn kept(record: &Map<String, Value>, names: &[&str]) -> Map<String, Value> {
    names
        .iter()
        .filter_map(|n| record.get(*n).filter(|v| !v.is_null()).map(|v| (n.to_string(), v.clone())))
        .collect()
}

fn device_observation(device: &str, record: &Map<String, Value>) -> Value {
    let text = |name: &str| record.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
    let mut keys = json!({"ip": device});
    if let (Some(name), Some(oid)) = (text("sysName"), text("sysObjectID")) {
        keys["snmp_id"] = format!("{name}|{oid}").into();
    }
    let mut seen =
        json!({"kind": "network_device", "keys": keys, "attributes": kept(record, &SYSTEM)});
    if let Some(name) = text("sysName") {
        seen["name"] = name.into();
    }
    seen
}

fn interface_observation(device: &str, record: &Map<String, Value>) -> Value {
    let index = record.get("ifIndex").cloned().unwrap_or(Value::Null);
    let mut keys = json!({"port": format!("{device}#{index}")});
    if let Some(mac) = record.get("ifPhysAddress").and_then(Value::as_str).filter(|m| m.len() >= 17)
    {
        keys["mac"] = mac.into();
    }
    let mut seen = json!({
        "kind": "interface",
        "keys": keys,
        "attributes": kept(record, &INTERFACE),
        "relations": [{"relation": "part_of", "to": {"kind": "network_device", "keys": {"ip": device}}}],
    });
    if let Some(name) = record.get("ifDescr").and_then(Value::as_str) {
        seen["name"] = name.into();
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_and_its_interfaces_without_the_values_that_move() {
        let records = [
            json!({"kind": "system", "device": "127.0.0.1:1161", "sysDescr": "Linux", "sysObjectID":
                   "1.3.6.1.4.1.8072.3.2.10", "sysUpTime": 149, "sysContact": null,
                   "sysName": "box", "sysLocation": "rack 4"}),
            json!({"kind": "interface", "device": "127.0.0.1", "ifIndex": 2, "ifDescr": "eth0",
                   "ifPhysAddress": "0e:5a:00:01:02:03", "ifSpeed": 1000, "ifInOctets": 5,
                   "ifOperStatus": 1}),
            json!({"kind": "interface", "device": "127.0.0.1", "ifIndex": 1, "ifDescr": "lo",
                   "ifPhysAddress": ""}),
        ]
        .map(|r| r.to_string());
        let seen = observations(&records).unwrap();
        assert_eq!(
            seen[0]["keys"],
            json!({"ip": "127.0.0.1", "snmp_id": "box|1.3.6.1.4.1.8072.3.2.10"})
        );
        assert_eq!(seen[0]["name"], "box");
        assert!(seen[0]["attributes"].get("sysUpTime").is_none());
        assert!(seen[0]["attributes"].get("sysContact").is_none(), "null values are not kept");
        assert_eq!(seen[1]["keys"], json!({"port": "127.0.0.1#2", "mac": "0e:5a:00:01:02:03"}));
        assert!(seen[1]["attributes"].get("ifInOctets").is_none());
        assert_eq!(seen[1]["relations"][0]["to"]["keys"]["ip"], "127.0.0.1");
        assert_eq!(seen[2]["keys"], json!({"port": "127.0.0.1#1"}), "no MAC, no mac key");
    }

    #[test]
    fn a_record_of_another_kind_fails_the_stage() {
        let records = [json!({"kind": "route", "device": "x"}).to_string()];
        assert!(observations(&records).unwrap_err().contains("unknown kind"));
    }
}
