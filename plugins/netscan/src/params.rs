//! The task parameters of netscan, their JSON Schema, and their validation into a
//! [`Plan`] the rest of the plugin works from.

use serde::Deserialize;
use std::time::Duration;

use crate::ports::{PortSpec, parse_ports};
use crate::targets::{Span, parse_targets};

/// Default addresses per part: a /24 is a natural unit for an agent's network.
pub const DEFAULT_BLOCK_SIZE: u32 = 256;
/// Largest block: one part must stay a small unit of work for its lease.
pub const MAX_BLOCK_SIZE: u32 = 4096;
/// Default wait for one connection to be accepted or refused.
pub const DEFAULT_TIMEOUT_MS: u32 = 1000;
/// Default connections in flight at once inside one execution.
pub const DEFAULT_CONCURRENCY: u32 = 256;
/// Most connections in flight at once: beyond it the host's socket table and
/// the scanned network gain nothing.
pub const MAX_CONCURRENCY: u32 = 1024;

/// The parameters as the admin writes them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Addresses, CIDR networks and ranges to scan.
    pub targets: Vec<String>,
    /// Ports to try on every address.
    pub ports: PortSpec,
    /// Addresses per part.
    #[serde(default = "default_block_size")]
    pub block_size: u32,
    /// Connect timeout per connection, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    /// Connections in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
}

fn default_block_size() -> u32 {
    DEFAULT_BLOCK_SIZE
}
fn default_timeout_ms() -> u32 {
    DEFAULT_TIMEOUT_MS
}
fn default_concurrency() -> u32 {
    DEFAULT_CONCURRENCY
}

/// Validated parameters.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The addresses to scan, merged and sorted.
    pub spans: Vec<Span>,
    /// The ports, sorted and distinct.
    pub ports: Vec<u16>,
    /// Addresses per part.
    pub block_size: u32,
    /// Connect timeout per connection.
    pub timeout: Duration,
    /// Connections in flight at once.
    pub concurrency: u32,
}

/// Parse and validate the parameters (JSON text).
pub fn parse(text: &str) -> Result<Plan, String> {
    let p: Params = jobstack_plugin::from_json("params", text)?;
    let in_range = |name: &str, v: u32, lo: u32, hi: u32| {
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(format!("{name} must be between {lo} and {hi}, not {v}"))
        }
    };
    Ok(Plan {
        spans: parse_targets(&p.targets)?,
        ports: parse_ports(&p.ports)?,
        block_size: in_range("block_size", p.block_size, 1, MAX_BLOCK_SIZE)?,
        timeout: Duration::from_millis(u64::from(in_range(
            "timeout_ms",
            p.timeout_ms,
            10,
            60_000,
        )?)),
        concurrency: in_range("concurrency", p.concurrency, 1, MAX_CONCURRENCY)?,
    })
}

/// The JSON Schema of [`Params`], as declared in the manifest.
pub fn schema() -> serde_json::Value {
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "netscan parameters",
        "type": "object",
        "required": ["targets", "ports"],
        "additionalProperties": false,
        "properties": {
            "targets": {
                "description": "Addresses (10.0.0.7), CIDR networks (10.0.0.0/24, all addresses) and ranges (10.0.0.1-10.0.0.9); at most 65536 addresses in all",
                "type": "array",
                "minItems": 1,
                "items": {"type": "string", "minLength": 1}
            },
            "ports": {
                "description": "Ports to try on every address: \"22,80,8000-8100\" or [22, 80]",
                "oneOf": [
                    {"type": "string", "pattern": "^\\s*[0-9]+(\\s*-\\s*[0-9]+)?(\\s*,\\s*[0-9]+(\\s*-\\s*[0-9]+)?)*\\s*$"},
                    {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1, "maximum": 65535}}
                ]
            },
            "block_size": {
                "description": "Addresses per job part",
                "type": "integer", "minimum": 1, "maximum": MAX_BLOCK_SIZE, "default": DEFAULT_BLOCK_SIZE
            },
            "timeout_ms": {
                "description": "How long one connection may take to be accepted or refused before the port counts as filtered",
                "type": "integer", "minimum": 10, "maximum": 60000, "default": DEFAULT_TIMEOUT_MS
            },
            "concurrency": {
                "description": "Connections in flight at once within one part",
                "type": "integer", "minimum": 1, "maximum": MAX_CONCURRENCY, "default": DEFAULT_CONCURRENCY
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply() {
        let plan = parse(r#"{"targets": ["10.0.0.0/30"], "ports": "22,80"}"#).unwrap();
        assert_eq!(plan.ports, [22, 80]);
        assert_eq!(plan.block_size, DEFAULT_BLOCK_SIZE);
        assert_eq!(plan.timeout, Duration::from_millis(1000));
        assert_eq!(plan.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(plan.spans.len(), 1);
    }

    #[test]
    fn refuses_out_of_range_settings_and_unknown_fields() {
        let base = r#""targets": ["10.0.0.1"], "ports": [22]"#;
        for (extra, needle) in [
            (r#""block_size": 0"#, "block_size"),
            (r#""timeout_ms": 5"#, "timeout_ms"),
            (r#""concurrency": 5000"#, "concurrency"),
            (r#""community": "public""#, "unknown field"),
        ] {
            let err = parse(&format!("{{{base}, {extra}}}")).unwrap_err();
            assert!(err.contains(needle), "{extra}: {err}");
        }
        assert!(parse(r#"{"ports": [22]}"#).unwrap_err().contains("targets"));
    }

    #[test]
    fn schema_names_every_field() {
        let schema = schema();
        let props = schema["properties"].as_object().unwrap();
        let mut names: Vec<&str> = props.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["block_size", "concurrency", "ports", "targets", "timeout_ms"]);
    }
}
