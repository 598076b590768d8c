use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::*;

/// Validate `document` against GLPI's schema (formats checked too).
pub(crate) fn glpi_errors(document: &Value) -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/glpi/inventory.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::options().should_validate_formats(true).build(&schema).unwrap();
    validator.iter_errors(document).map(|e| format!("{} at {}", e, e.instance_path)).collect()
}

fn asset(id: i64, kind: &str, name: &str, keys: &[(&str, &str)], attributes: Value) -> Asset {
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in keys {
        by_name.entry(k.to_string()).or_default().push(v.to_string());
    }
    Asset {
        id,
        kind: kind.into(),
        name: Some(name.into()),
        keys: by_name,
        attributes: serde_json::from_value(attributes).unwrap(),
        first_seen: DateTime::<Utc>::UNIX_EPOCH,
        last_seen: DateTime::<Utc>::UNIX_EPOCH,
        disappeared_at: None,
    }
}

#[test]
fn glpis_own_examples_pass_the_schema_the_tests_use() {
    for example in ["networkequipment_1.json", "computer_2_partial_vms.json"] {
        let path = format!("{}/tests/data/glpi/{example}", env!("CARGO_MANIFEST_DIR"));
        let document: Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(glpi_errors(&document), Vec::<String>::new(), "{example}");
    }
    // And the schema refuses what GLPI would.
    let wrong = json!({"deviceid": "x", "itemtype": "Toaster", "content": {}});
    assert_eq!(glpi_errors(&wrong).len(), 2, "{:?}", glpi_errors(&wrong));
}

#[test]
fn a_network_device_is_network_equipment_with_its_ports() {
    let device = asset(
        1,
        "network_device",
        "sw1",
        &[("ip", "10.0.0.5"), ("snmp_id", "sw1|1.3.6")],
        json!({"sysDescr": "Linux", "sysLocation": "rack 4", "sysObjectID": "1.3.6"}),
    );
    let port = asset(
        2,
        "interface",
        "eth0",
        &[("port", "10.0.0.5#2"), ("mac", "0e:5a:00:01:02:03")],
        json!({"ifDescr": "eth0", "ifSpeed": 1000000000, "ifOperStatus": 1, "ifAdminStatus": 1,
               "ifType": 6, "ifMtu": 1500}),
    );
    let loopback = asset(
        3,
        "interface",
        "lo",
        &[("port", "10.0.0.5#1")],
        json!({"ifDescr": "lo", "ifOperStatus": 9}),
    );
    let document = document(&device, &[port, loopback]).unwrap();
    assert_eq!(glpi_errors(&document), Vec::<String>::new(), "{document:#}");
    assert_eq!(document["itemtype"], "NetworkEquipment");
    assert_eq!(document["content"]["network_device"]["location"], "rack 4");
    let ports = document["content"]["network_ports"].as_array().unwrap();
    assert_eq!(ports.len(), 2);
    assert_eq!(ports[0]["ifnumber"], 2);
    assert!(ports[1].get("ifstatus").is_none(), "a status GLPI does not know is left out");
}

#[test]
fn a_hypervisor_is_a_computer_with_its_virtual_machines() {
    let host = asset(
        1,
        "hypervisor",
        "esx1",
        &[("uuid", "4c4c-1")],
        json!({
        "vendor": "VMware, Inc.", "model": "VMware Virtual Platform", "memory_bytes": 4294430720i64,
        "cpu_model": "Intel(R) Xeon(R)", "cpu_cores": 2, "cpu_mhz": 2294,
        "bios_vendor": "Phoenix", "bios_version": "6.00", "bios_release_date": "2014-03-14T00:00:00Z",
        "serial": "VMware-56 4d"}),
    );
    let vm = asset(
        2,
        "vm",
        "web",
        &[("uuid", "4231-9")],
        json!({"power_state": "poweredOn", "cpus": 1, "memory_mb": 32, "guest_os": "otherGuest"}),
    );
    let document = document(&host, &[vm]).unwrap();
    assert_eq!(glpi_errors(&document), Vec::<String>::new(), "{document:#}");
    assert_eq!(document["itemtype"], "Computer");
    assert_eq!(document["content"]["bios"]["bdate"], "2014-03-14");
    assert_eq!(document["content"]["bios"]["ssn"], "VMware-56 4d");
    assert_eq!(document["content"]["virtualmachines"][0]["status"], "running");
}

#[test]
fn a_discovered_host_is_unmanaged_and_other_kinds_have_no_document() {
    let host = asset(1, "host", "h", &[("ip", "10.0.0.9")], json!({"tcp_open": [22]}));
    let document = document(&host, &[]).unwrap();
    assert_eq!(glpi_errors(&document), Vec::<String>::new(), "{document:#}");
    assert_eq!(document["itemtype"], "Unmanaged");
    let account = asset(2, "mail_account", "a@b", &[("account", "mx/a@b")], json!({}));
    assert!(super::document(&account, &[]).is_none());
}
