//! The stage: what was applied where. Each path a deployment wrote, unpacked
//! or made is a deployed package on the agent's host, with the artifact it
//! came from; a removed path is not observed (nothing is there to see).

use serde_json::{Map, Value, json};

/// The observations of a deployment's records, applied by `agent`.
pub fn observations(records: &[String], agent: &str) -> Result<Vec<Value>, String> {
    let mut seen = Vec::new();
    for text in records {
        let record: Map<String, Value> = jobstack_plugin::from_json("record", text)?;
        let action = record.get("action").and_then(Value::as_str).unwrap_or("");
        if action == "remove" {
            continue;
        }
        let path = record.get("path").and_then(Value::as_str).unwrap_or("");
        let attributes: Map<String, Value> = record
            .iter()
            .filter(|(k, _)| *k != "path")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        seen.push(json!({
            "kind": "package",
            "name": path,
            "keys": {"deployed": format!("{agent}:{path}")},
            "attributes": attributes,
            "relations": [{"relation": "installed_on", "to": {"kind": "host", "keys": {"agent": agent}}}],
        }));
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_paths_are_packages_on_the_agents_host() {
        let records = [
            json!({"action": "unpack", "path": "app", "files": 3, "dirs": 1, "sha256": "ab"}),
            json!({"action": "remove", "path": "old", "removed": true}),
        ]
        .map(|r| r.to_string());
        let seen = observations(&records, "web1").unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0]["keys"]["deployed"], "web1:app");
        assert_eq!(seen[0]["attributes"]["sha256"], "ab");
        assert_eq!(seen[0]["relations"][0]["to"]["keys"]["agent"], "web1");
    }
}
