//! A loaded plugin and the host-side types of the contract.
//!
//! The WIT records (`manifest`, `part`) have serde-friendly twins here, so the
//! rest of jobstack (store, API, CLI) never depends on generated bindings.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::bindings::{TaskPre, wit};

/// The sha256 of a plugin's bytes, in lowercase hex: its identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sha256(String);

impl Sha256 {
    /// Hash `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest;
        Sha256(hex::encode(sha2::Sha256::digest(bytes)))
    }

    /// Parse a lowercase hex sha256, as found in URLs and the store.
    pub fn parse(text: &str) -> Option<Self> {
        let ok = text.len() == 64
            && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Sha256(text.to_string()))
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A capability a plugin declares in its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// TCP and UDP to the part's targets.
    Network,
    /// Outgoing HTTP to the part's target hosts.
    Http,
    /// Directories granted by the task and the agent's operator.
    Filesystem,
}

impl From<wit::Capability> for Capability {
    fn from(c: wit::Capability) -> Self {
        match c {
            wit::Capability::Network => Capability::Network,
            wit::Capability::Http => Capability::Http,
            wit::Capability::Filesystem => Capability::Filesystem,
        }
    }
}

/// What a plugin says about itself (`manifest()`), checked at load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The task type, e.g. `netscan`.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// One line for admins.
    pub description: String,
    /// JSON Schema of the task parameters.
    pub params_schema: serde_json::Value,
    /// Capabilities the plugin needs.
    pub capabilities: Vec<Capability>,
}

/// One unit of work cut by `split`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Short human label.
    pub label: String,
    /// IP addresses, CIDR blocks, `a-b` ranges or host names the work touches.
    #[serde(default)]
    pub targets: Vec<String>,
    /// The plugin's description of the work, as JSON text.
    pub payload: String,
}

impl From<wit::Part> for Part {
    fn from(p: wit::Part) -> Self {
        Part { label: p.label, targets: p.targets, payload: p.payload }
    }
}

impl From<&Part> for wit::Part {
    fn from(p: &Part) -> Self {
        wit::Part { label: p.label.clone(), targets: p.targets.clone(), payload: p.payload.clone() }
    }
}

/// A validated plugin, compiled and pre-instantiated: ready to execute.
///
/// Cheap to share (`Arc<Plugin>`); every execution instantiates it afresh.
pub struct Plugin {
    pub(crate) sha256: Sha256,
    pub(crate) size: usize,
    pub(crate) manifest: Manifest,
    pub(crate) pre: TaskPre,
}

impl Plugin {
    /// The plugin's identity.
    pub fn sha256(&self) -> &Sha256 {
        &self.sha256
    }

    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// What the plugin said about itself.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The version of the contract (`wit/task.wit`) the plugin implements.
    pub fn contract(&self) -> &'static str {
        self.pre.contract()
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("sha256", &self.sha256)
            .field("name", &self.manifest.name)
            .field("version", &self.manifest.version)
            .finish()
    }
}

/// Check a manifest returned by a plugin, turning it into the host type.
pub(crate) fn check_manifest(m: wit::Manifest) -> Result<Manifest, String> {
    let name_ok = !m.name.is_empty()
        && m.name.len() <= 64
        && m.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(format!(
            "manifest name {:?} is not valid: use 1 to 64 lowercase letters, digits, `-` or `_`",
            m.name
        ));
    }
    if !is_semver(&m.version) {
        return Err(format!(
            "manifest version {:?} is not a semantic version like 1.2.3",
            m.version
        ));
    }
    let params_schema: serde_json::Value = serde_json::from_str(&m.params_schema)
        .map_err(|e| format!("manifest params-schema is not JSON: {e}"))?;
    if !(params_schema.is_object() || params_schema.is_boolean()) {
        return Err("manifest params-schema must be a JSON Schema object".to_string());
    }
    let mut capabilities: Vec<Capability> = m.capabilities.into_iter().map(Into::into).collect();
    capabilities.dedup();
    Ok(Manifest {
        name: m.name,
        version: m.version,
        description: m.description,
        params_schema,
        capabilities,
    })
}

/// `MAJOR.MINOR.PATCH` with an optional `-pre` or `+build` suffix.
fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let nums: Vec<&str> = core.split('.').collect();
    nums.len() == 3 && nums.iter().all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wit_manifest(name: &str, version: &str, schema: &str) -> wit::Manifest {
        wit::Manifest {
            name: name.into(),
            version: version.into(),
            description: "d".into(),
            params_schema: schema.into(),
            capabilities: vec![wit::Capability::Network, wit::Capability::Network],
        }
    }

    #[test]
    fn valid_manifest_is_converted_and_capabilities_deduplicated() {
        let m = check_manifest(wit_manifest("netscan", "1.0.0", r#"{"type":"object"}"#)).unwrap();
        assert_eq!(m.name, "netscan");
        assert_eq!(m.capabilities, vec![Capability::Network]);
    }

    #[test]
    fn manifest_with_bad_name_version_or_schema_is_refused() {
        let bad_name = check_manifest(wit_manifest("Net Scan", "1.0.0", "{}")).unwrap_err();
        assert!(bad_name.contains("name"), "{bad_name}");
        let bad_version = check_manifest(wit_manifest("a", "1.0", "{}")).unwrap_err();
        assert!(bad_version.contains("semantic version"), "{bad_version}");
        let bad_schema = check_manifest(wit_manifest("a", "1.0.0", "{nope")).unwrap_err();
        assert!(bad_schema.contains("not JSON"), "{bad_schema}");
    }

    #[test]
    fn sha256_parse_accepts_only_lowercase_hex_of_the_right_length() {
        let sha = Sha256::of(b"abc");
        assert_eq!(Sha256::parse(sha.as_str()), Some(sha.clone()));
        assert_eq!(Sha256::parse(&sha.as_str().to_uppercase()), None);
        assert_eq!(Sha256::parse("abc"), None);
    }
}
