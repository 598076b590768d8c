//! Assets as GLPI's native inventory documents (the format its agents send,
//! `inventory.schema.json` of glpi-project/inventory_format), one per asset:
//!
//! - a network device (SNMP) is a `NetworkEquipment`, with its interfaces as
//!   `network_ports`;
//! - a hypervisor (ESX) is a `Computer`, with its VMs as `virtualmachines`;
//! - a host only discovered is `Unmanaged`.
//!
//! Other kinds travel inside those (interfaces, VMs) or have no GLPI form.
//! Values GLPI would refuse (a date in another format, a status out of its
//! range) are left out rather than sent wrong.

use serde_json::{Map, Value, json};

use super::view::Asset;

/// The GLPI document of `asset`, given the assets related to it (its
/// interfaces, its VMs); `None` for a kind GLPI has no document for.
pub fn document(asset: &Asset, related: &[Asset]) -> Option<Value> {
    let (itemtype, content) = match asset.kind.as_str() {
        "network_device" => ("NetworkEquipment", network_equipment(asset, related)),
        "hypervisor" => ("Computer", computer(asset, related)),
        "host" => ("Unmanaged", unmanaged(asset)),
        _ => return None,
    };
    let mut content = content;
    content
        .insert("versionclient".into(), format!("jobstack-{}", env!("CARGO_PKG_VERSION")).into());
    Some(json!({
        "deviceid": format!("jobstack-asset-{}", asset.id),
        "itemtype": itemtype,
        "content": content,
    }))
}

fn text(asset: &Asset, name: &str) -> Option<Value> {
    asset.attributes.get(name).and_then(Value::as_str).filter(|s| !s.is_empty()).map(Value::from)
}

fn integer(asset: &Asset, name: &str) -> Option<i64> {
    asset.attributes.get(name).and_then(Value::as_i64)
}

fn ips(asset: &Asset) -> Value {
    asset.keys.get("ip").cloned().unwrap_or_default().into()
}

/// `fields` that have a value, as an object.
fn object(fields: impl IntoIterator<Item = (&'static str, Option<Value>)>) -> Map<String, Value> {
    fields.into_iter().filter_map(|(name, value)| value.map(|v| (name.to_string(), v))).collect()
}

fn network_equipment(asset: &Asset, related: &[Asset]) -> Map<String, Value> {
    let device = object([
        ("type", Some("Networking".into())),
        ("name", asset.name.clone().map(Value::from).or_else(|| text(asset, "sysName"))),
        ("description", text(asset, "sysDescr")),
        ("location", text(asset, "sysLocation")),
        ("contact", text(asset, "sysContact")),
        ("ips", Some(ips(asset))),
    ]);
    let ports: Vec<Value> = related
        .iter()
        .filter(|a| a.kind == "interface")
        .map(|port| {
            let index = port
                .keys
                .get("port")
                .and_then(|p| p.first())
                .and_then(|p| p.rsplit('#').next().and_then(|i| i.parse::<i64>().ok()));
            let status = |name, max| integer(port, name).filter(|s| (1..=max).contains(s));
            let mac = port.keys.get("mac").and_then(|m| m.first()).cloned();
            Value::Object(object([
                ("ifnumber", index.map(Value::from)),
                ("ifdescr", text(port, "ifDescr")),
                ("ifname", text(port, "ifDescr")),
                ("mac", mac.map(Value::from)),
                ("ifspeed", integer(port, "ifSpeed").map(Value::from)),
                ("ifmtu", integer(port, "ifMtu").map(Value::from)),
                ("iftype", integer(port, "ifType").map(Value::from)),
                ("ifstatus", status("ifOperStatus", 7).map(Value::from)),
                ("ifinternalstatus", status("ifAdminStatus", 3).map(Value::from)),
            ]))
        })
        .collect();
    let mut content = Map::new();
    content.insert("network_device".into(), device.into());
    content.insert("network_ports".into(), ports.into());
    content
}

/// A GLPI date (`YYYY-MM-DD`) from a vSphere one (`2014-03-14T00:00:00Z`).
fn date(value: Option<Value>) -> Option<Value> {
    let text = value?.as_str()?.to_string();
    let day = text.get(..10)?;
    let valid = day.len() == 10
        && day
            .bytes()
            .enumerate()
            .all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    valid.then(|| day.into())
}

fn computer(asset: &Asset, related: &[Asset]) -> Map<String, Value> {
    let memory_mb = integer(asset, "memory_bytes").map(|b| Value::from(b >> 20));
    let uuid = asset.keys.get("uuid").and_then(|u| u.first()).cloned().map(Value::from);
    let hardware = object([
        ("name", asset.name.clone().map(Value::from)),
        ("uuid", uuid),
        ("memory", memory_mb),
        ("vmsystem", Some("Physical".into())),
    ]);
    let bios = object([
        ("bmanufacturer", text(asset, "bios_vendor")),
        ("bversion", text(asset, "bios_version")),
        ("bdate", date(text(asset, "bios_release_date"))),
        ("smanufacturer", text(asset, "vendor")),
        ("smodel", text(asset, "model")),
        ("ssn", text(asset, "serial")),
    ]);
    let cpu = object([
        ("name", text(asset, "cpu_model")),
        ("core", integer(asset, "cpu_cores").map(Value::from)),
        ("thread", integer(asset, "cpu_threads").map(Value::from)),
        ("speed", integer(asset, "cpu_mhz").map(Value::from)),
    ]);
    let vms: Vec<Value> = related
        .iter()
        .filter(|a| a.kind == "vm")
        .map(|vm| {
            let status = match vm.attributes.get("power_state").and_then(Value::as_str) {
                Some("poweredOn") => Some("running"),
                Some("poweredOff") => Some("off"),
                Some("suspended") => Some("paused"),
                _ => None,
            };
            let uuid = vm.keys.get("uuid").and_then(|u| u.first()).cloned().map(Value::from);
            Value::Object(object([
                ("name", Some(vm.name.clone().unwrap_or_else(|| format!("vm {}", vm.id)).into())),
                ("uuid", uuid),
                ("status", status.map(Value::from)),
                ("vcpu", integer(vm, "cpus").map(Value::from)),
                ("memory", integer(vm, "memory_mb").map(Value::from)),
                ("subsystem", Some("VmWare ESX".into())),
                ("comment", text(vm, "guest_os")),
            ]))
        })
        .collect();
    let mut content = Map::new();
    content.insert("hardware".into(), hardware.into());
    content.insert("bios".into(), bios.into());
    content.insert("cpus".into(), vec![Value::Object(cpu)].into());
    content.insert("virtualmachines".into(), vms.into());
    content
}

fn unmanaged(asset: &Asset) -> Map<String, Value> {
    let device = object([
        ("type", Some("Unmanaged".into())),
        ("name", asset.name.clone().map(Value::from)),
        ("ips", Some(ips(asset))),
    ]);
    let mut content = Map::new();
    content.insert("network_device".into(), device.into());
    content
}

#[cfg(test)]
mod tests;
