//! Observations: what a plugin's stage says it saw, checked before anything
//! is merged.
//!
//! A stage answers one JSON object per observation:
//!
//! ```json
//! {"kind": "network_device", "name": "core-sw1",
//!  "keys": {"ip": "10.0.0.5", "snmp_id": "core-sw1|1.3.6.1.4.1.9.1.1"},
//!  "attributes": {"sysLocation": "rack 4"},
//!  "relations": [{"relation": "runs_on", "to": {"kind": "hypervisor", "keys": {"uuid": "…"}}}]}
//! ```
//!
//! A key's value may be one string or a list (a host with two addresses).
//! Attributes whose names say they hold a secret (`password`, `secret`,
//! `token`, `hash`, `private_key`) are dropped: secrets never enter the
//! inventory, whatever a plugin sends.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::keys::Key;

/// Observations one result may bring; more is refused as a whole.
pub const MAX_OBSERVATIONS: usize = 100_000;

/// The largest attribute value kept, as JSON text.
pub const MAX_ATTRIBUTE_BYTES: usize = 16 * 1024;

/// Words that mark an attribute as a secret.
const SECRET_WORDS: [&str; 5] = ["password", "secret", "token", "hash", "private_key"];

/// Kinds jobstack knows; a plugin may declare others.
pub const KNOWN_KINDS: [&str; 7] =
    ["host", "network_device", "interface", "hypervisor", "vm", "mail_account", "package"];

/// One observation as a stage writes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    kind: String,
    #[serde(default)]
    name: Option<String>,
    keys: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    attributes: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    relations: Vec<WrittenRelation>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct WrittenRelation {
    relation: String,
    to: WrittenReference,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct WrittenReference {
    kind: String,
    keys: BTreeMap<String, OneOrMany>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// An observation, checked: a known or well-formed kind, at least one key,
/// keys normalized, no secret attributes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    /// What was seen: `host`, `vm`, …
    pub kind: String,
    /// A name for people, if the plugin knows one.
    pub name: Option<String>,
    /// How it is recognized, strongest first.
    pub keys: Vec<Key>,
    /// What was seen of it.
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// What it is related to.
    pub relations: Vec<RelationObservation>,
}

/// `relation` from the observed asset to the one `to` names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RelationObservation {
    /// `runs_on`, `part_of`, `account_of`, `installed_on`, or a plugin's own.
    pub relation: String,
    /// The other asset.
    pub to: Reference,
}

/// An asset named by its kind and keys (created when not known yet).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reference {
    /// Its kind.
    pub kind: String,
    /// Its keys, strongest first.
    pub keys: Vec<Key>,
}

impl Observation {
    /// Parse and check one observation (JSON text from a stage).
    pub fn parse(text: &str) -> Result<Self, String> {
        let written: Written =
            serde_json::from_str(text).map_err(|e| format!("not an observation: {e}"))?;
        let kind = check_kind(&written.kind)?;
        let keys = keys_of(&written.keys)?;
        let mut attributes = BTreeMap::new();
        for (name, value) in written.attributes {
            check_attribute_name(&name)?;
            if is_secret(&name) || value.is_null() {
                continue;
            }
            if value.to_string().len() > MAX_ATTRIBUTE_BYTES {
                return Err(format!("attribute {name}: larger than {MAX_ATTRIBUTE_BYTES} bytes"));
            }
            attributes.insert(name, value);
        }
        let relations = written
            .relations
            .into_iter()
            .map(|r| {
                check_attribute_name(&r.relation)?;
                let to = Reference { kind: check_kind(&r.to.kind)?, keys: keys_of(&r.to.keys)? };
                Ok(RelationObservation { relation: r.relation, to })
            })
            .collect::<Result<_, String>>()?;
        let name = written.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
        Ok(Self { kind, name, keys, attributes, relations })
    }
}

fn check_kind(kind: &str) -> Result<String, String> {
    let ok = !kind.is_empty()
        && kind.len() <= 40
        && kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(kind.to_string())
    } else {
        Err(format!("kind {kind:?}: use 1 to 40 lowercase letters, digits and _"))
    }
}

fn check_attribute_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok { Ok(()) } else { Err(format!("name {name:?}: use 1 to 64 letters, digits, _, - and .")) }
}

fn is_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| lower.contains(w))
}

fn keys_of(written: &BTreeMap<String, OneOrMany>) -> Result<Vec<Key>, String> {
    let mut keys = Vec::new();
    for (name, values) in written {
        let values = match values {
            OneOrMany::One(v) => std::slice::from_ref(v),
            OneOrMany::Many(vs) => vs.as_slice(),
        };
        for value in values {
            if let Some(key) = Key::new(name, value)? {
                keys.push(key);
            }
        }
    }
    if keys.is_empty() {
        return Err("no key: an observation needs at least one key to be recognized".into());
    }
    keys.sort_by(Key::by_strength);
    keys.dedup();
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_is_parsed_with_its_keys_strongest_first() {
        let o = Observation::parse(
            r#"{"kind": "host", "keys": {"ip": ["10.0.0.5", "10.0.0.6"], "mac": "0E5A00010203"},
                "attributes": {"open_ports": [22, 80], "gone": null},
                "relations": [{"relation": "runs_on",
                               "to": {"kind": "hypervisor", "keys": {"uuid": "H-1"}}}]}"#,
        )
        .unwrap();
        let keys: Vec<String> = o.keys.iter().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["mac=0e:5a:00:01:02:03", "ip=10.0.0.5", "ip=10.0.0.6"]);
        assert_eq!(o.attributes.len(), 1, "null attributes are not kept");
        assert_eq!(o.relations[0].to.keys[0].value, "h-1");
    }

    #[test]
    fn secrets_never_enter_the_inventory() {
        let o = Observation::parse(
            r#"{"kind": "mail_account", "keys": {"account": "a@example.com"},
                "attributes": {"password": "x", "password_hash": "{SSHA}y", "api_token": "t",
                               "quota_mb": 100}}"#,
        )
        .unwrap();
        assert_eq!(o.attributes.keys().collect::<Vec<_>>(), ["quota_mb"]);
    }

    #[test]
    fn bad_observations_are_refused_saying_why() {
        let err = |text: &str| Observation::parse(text).unwrap_err();
        assert!(err(r#"{"kind": "host", "keys": {}}"#).contains("no key"));
        assert!(err(r#"{"kind": "host", "keys": {"mac": "0"}}"#).contains("not a MAC"));
        assert!(err(r#"{"kind": "Host", "keys": {"ip": "10.0.0.1"}}"#).contains("kind"));
        assert!(err(r#"{"kind": "host", "keys": {"ip": "10.0.0.1"}, "x": 1}"#).contains("unknown"));
        assert!(err("[1]").contains("not an observation"));
        let big = format!(
            r#"{{"kind": "host", "keys": {{"ip": "10.0.0.1"}}, "attributes": {{"a": "{}"}}}}"#,
            "x".repeat(MAX_ATTRIBUTE_BYTES)
        );
        assert!(err(&big).contains("larger"));
    }
}
