//! The stage: each address with an open port is a host, with its open TCP
//! ports. An address that only refused is not one: firewalls and routers
//! refuse for addresses where nothing is (and on loopback every address
//! refuses), so a refusal proves no host.

use serde_json::{Value, json};

use crate::report::HostReport;

/// The observations of the scan's records (one per address).
pub fn observations(records: &[String]) -> Result<Vec<Value>, String> {
    let mut seen = Vec::new();
    for text in records {
        let report: HostReport = jobstack_plugin::from_json("record", text)?;
        if !report.open.is_empty() {
            seen.push(json!({
                "kind": "host",
                "keys": {"ip": report.address},
                "attributes": {"tcp_open": report.open},
            }));
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_open_ports_are_hosts_with_their_open_ports() {
        let records = [
            r#"{"address":"10.0.0.5","answered":true,"open":[22,80],"closed":998,"filtered":0}"#,
            r#"{"address":"10.0.0.6","answered":false,"open":[],"closed":0,"filtered":1000}"#,
            r#"{"address":"10.0.0.7","answered":true,"open":[],"closed":1000,"filtered":0}"#,
        ]
        .map(String::from);
        let seen = observations(&records).unwrap();
        assert_eq!(
            seen,
            [
                json!({"kind": "host", "keys": {"ip": "10.0.0.5"}, "attributes": {"tcp_open": [22, 80]}})
            ]
        );
    }

    #[test]
    fn a_record_that_is_not_a_report_fails_the_stage() {
        assert!(observations(&["{}".to_string()]).unwrap_err().contains("invalid record"));
    }
}
