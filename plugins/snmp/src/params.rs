//! The task parameters and secrets of the snmp plugin, their JSON Schema, and
//! their validation.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Most devices one task may inventory (one part each).
pub const MAX_DEVICES: usize = 10_000;

/// The parameters as the admin writes them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Devices: `10.0.0.1`, `10.0.0.1:1161`, `::1`, `[::1]:1161`.
    pub devices: Vec<String>,
    /// The agents' UDP port when a device does not name one.
    #[serde(default = "default_port")]
    pub port: u16,
    /// SNMP version; only `2c`.
    #[serde(default = "default_version")]
    pub version: String,
    /// Wait for each answer, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    /// Attempts after the first when no answer comes.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Walk with GETBULK (true) or GETNEXT (false).
    #[serde(default = "default_bulk")]
    pub bulk: bool,
    /// Rows per GETBULK request.
    #[serde(default = "default_max_repetitions")]
    pub max_repetitions: u32,
}

fn default_port() -> u16 {
    161
}
fn default_version() -> String {
    "2c".into()
}
fn default_timeout_ms() -> u32 {
    1000
}
fn default_retries() -> u32 {
    2
}
fn default_bulk() -> bool {
    true
}
fn default_max_repetitions() -> u32 {
    10
}

/// The task secrets: `{"community": "..."}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// The v2c community.
    pub community: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the community, not even in a panic message.
        f.write_str("Secrets { community: <hidden> }")
    }
}

/// Parse the secrets; the community is required and not empty.
pub fn parse_secrets(text: &str) -> Result<Secrets, String> {
    let s: Secrets = serde_json::from_str(text).map_err(|e| {
        // serde's message may quote the input; keep the secret out of it.
        let kind = if e.is_data() {
            "a field is missing or has the wrong type"
        } else {
            "not a JSON object"
        };
        format!("invalid secrets: {kind}: the snmp plugin expects {{\"community\": \"...\"}}")
    })?;
    if s.community.is_empty() {
        return Err("invalid secrets: the community is empty".into());
    }
    Ok(s)
}

/// Validated parameters.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The agents, in the order given, without duplicates.
    pub devices: Vec<SocketAddr>,
    /// Wait for each answer.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// GETBULK or GETNEXT.
    pub bulk: bool,
    /// Rows per GETBULK.
    pub max_repetitions: u32,
}

/// Parse and validate the parameters.
pub fn parse(text: &str) -> Result<Plan, String> {
    let p: Params = jobstack_plugin::from_json("params", text)?;
    if p.version != "2c" {
        return Err(format!(
            "version {:?} is not supported: only \"2c\"",
            p.version
        ));
    }
    if p.devices.is_empty() {
        return Err("devices is empty: give at least one device address".into());
    }
    if p.devices.len() > MAX_DEVICES {
        return Err(format!(
            "{} devices; at most {MAX_DEVICES} per task",
            p.devices.len()
        ));
    }
    let mut devices = Vec::with_capacity(p.devices.len());
    for d in &p.devices {
        let addr = parse_device(d, p.port)?;
        if !devices.contains(&addr) {
            devices.push(addr);
        }
    }
    let range = |name: &str, v: u32, lo: u32, hi: u32| {
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(format!("{name} must be between {lo} and {hi}, not {v}"))
        }
    };
    Ok(Plan {
        devices,
        timeout: Duration::from_millis(u64::from(range("timeout_ms", p.timeout_ms, 10, 60_000)?)),
        retries: range("retries", p.retries, 0, 10)?,
        bulk: p.bulk,
        max_repetitions: range("max_repetitions", p.max_repetitions, 1, 100)?,
    })
}

/// `10.0.0.1`, `10.0.0.1:1161`, `::1` or `[::1]:1161`; host names are refused
/// (the host does not resolve names for plugins, and a part's target must be
/// an address to be matched with an agent's networks).
pub fn parse_device(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    let t = text.trim();
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    t.parse::<SocketAddr>().map_err(|_| {
        format!("device {text:?} is not an IP address with an optional port (10.0.0.1, 10.0.0.1:1161, [::1]:1161)")
    })
}

/// The JSON Schema of [`Params`], as declared in the manifest.
pub fn schema() -> serde_json::Value {
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "snmp parameters",
        "description": "Secrets: {\"community\": \"...\"} (required).",
        "type": "object",
        "required": ["devices"],
        "additionalProperties": false,
        "properties": {
            "devices": {
                "description": "SNMP agents: IP address with an optional port (10.0.0.1, 10.0.0.1:1161, [::1]:1161); one job part each",
                "type": "array", "minItems": 1, "maxItems": MAX_DEVICES,
                "items": {"type": "string", "minLength": 1}
            },
            "port": {"description": "UDP port of agents given without one", "type": "integer", "minimum": 1, "maximum": 65535, "default": 161},
            "version": {"description": "SNMP version", "enum": ["2c"], "default": "2c"},
            "timeout_ms": {"description": "Wait for each answer", "type": "integer", "minimum": 10, "maximum": 60000, "default": 1000},
            "retries": {"description": "Attempts after the first when no answer comes", "type": "integer", "minimum": 0, "maximum": 10, "default": 2},
            "bulk": {"description": "Walk ifTable with GETBULK (true) or GETNEXT (false)", "type": "boolean", "default": true},
            "max_repetitions": {"description": "Rows per GETBULK request", "type": "integer", "minimum": 1, "maximum": 100, "default": 10}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_take_the_default_port_unless_they_name_one() {
        let plan = parse(r#"{"devices": ["10.0.0.1", "10.0.0.2:1161", "::1", "[::1]:9", "10.0.0.1"], "port": 16100}"#).unwrap();
        let shown: Vec<String> = plan.devices.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["10.0.0.1:16100", "10.0.0.2:1161", "[::1]:16100", "[::1]:9"]
        );
        assert_eq!(plan.retries, 2);
        assert!(plan.bulk);
    }

    #[test]
    fn refuses_names_versions_and_ranges() {
        for (params, needle) in [
            (r#"{"devices": ["router.lan"]}"#, "\"router.lan\""),
            (r#"{"devices": []}"#, "empty"),
            (
                r#"{"devices": ["10.0.0.1"], "version": "3"}"#,
                "only \"2c\"",
            ),
            (r#"{"devices": ["10.0.0.1"], "retries": 11}"#, "retries"),
            (
                r#"{"devices": ["10.0.0.1"], "community": "public"}"#,
                "unknown field",
            ),
        ] {
            let err = parse(params).unwrap_err();
            assert!(err.contains(needle), "{params}: {err}");
        }
    }

    #[test]
    fn secrets_need_a_community_and_never_show_it() {
        assert_eq!(
            parse_secrets(r#"{"community": "s3cret"}"#)
                .unwrap()
                .community,
            "s3cret"
        );
        let err = parse_secrets(r#"{"community": 12345}"#).unwrap_err();
        assert!(!err.contains("12345"), "{err}");
        assert!(parse_secrets("{}").unwrap_err().contains("community"));
        assert!(
            parse_secrets(r#"{"community": ""}"#)
                .unwrap_err()
                .contains("empty")
        );
        let s = parse_secrets(r#"{"community": "s3cret"}"#).unwrap();
        assert!(!format!("{s:?}").contains("s3cret"));
    }
}
