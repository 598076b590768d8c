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
    /// SNMP version: `2c` or `3` (USM authPriv).
    #[serde(default = "default_version")]
    pub version: String,
    /// v3 authentication protocol: `SHA` (HMAC-SHA-96) or `SHA-256`.
    #[serde(default = "default_auth_protocol")]
    pub auth_protocol: String,
    /// v3 privacy protocol: `AES` (AES-128-CFB).
    #[serde(default = "default_priv_protocol")]
    pub priv_protocol: String,
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
fn default_auth_protocol() -> String {
    "SHA".into()
}
fn default_priv_protocol() -> String {
    "AES".into()
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

/// The task secrets: `{"community": "..."}` for v2c;
/// `{"user", "auth_password", "priv_password"}` for v3.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// The v2c community.
    #[serde(default)]
    pub community: Option<String>,
    /// The v3 user (usmUserName).
    #[serde(default)]
    pub user: Option<String>,
    /// The v3 authentication passphrase.
    #[serde(default)]
    pub auth_password: Option<String>,
    /// The v3 privacy passphrase.
    #[serde(default)]
    pub priv_password: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret, not even in a panic message.
        f.write_str("Secrets { <hidden> }")
    }
}

/// The credentials a plan needs, from the secrets.
pub enum Credentials {
    /// v2c.
    Community(String),
    /// v3 authPriv.
    Usm(crate::usm::Credentials),
}

/// Parse the secrets for `plan`'s version; what it needs must be there and
/// not empty. Errors never quote the secrets.
pub fn parse_secrets(text: &str, plan: &Plan) -> Result<Credentials, String> {
    let s: Secrets = serde_json::from_str(text).map_err(|e| {
        let kind = if e.is_data() {
            "a field is unknown or has the wrong type"
        } else {
            "not a JSON object"
        };
        format!(
            "invalid secrets: {kind}: the snmp plugin expects {{\"community\"}} (v2c) or {{\"user\", \"auth_password\", \"priv_password\"}} (v3)"
        )
    })?;
    let need = |v: Option<String>, name: &str| {
        v.filter(|x| !x.is_empty())
            .ok_or_else(|| format!("invalid secrets: {name} is missing or empty"))
    };
    match plan.auth {
        None => Ok(Credentials::Community(need(s.community, "community")?)),
        Some(auth) => {
            let c = crate::usm::Credentials {
                user: need(s.user, "user")?,
                auth,
                auth_password: need(s.auth_password, "auth_password")?,
                priv_password: need(s.priv_password, "priv_password")?,
            };
            // RFC 3414: passphrases of fewer than 8 characters are refused by agents.
            if c.auth_password.len() < 8 || c.priv_password.len() < 8 {
                return Err("invalid secrets: v3 passwords must be at least 8 characters".into());
            }
            Ok(Credentials::Usm(c))
        }
    }
}

/// Validated parameters.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The agents, in the order given, without duplicates.
    pub devices: Vec<SocketAddr>,
    /// v3's authentication protocol; `None` for v2c.
    pub auth: Option<crate::usm::AuthProtocol>,
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
    if p.priv_protocol != "AES" {
        return Err(format!("priv_protocol {:?} is not supported: only \"AES\"", p.priv_protocol));
    }
    let auth = match (p.version.as_str(), p.auth_protocol.as_str()) {
        ("2c", _) => None,
        ("3", "SHA") => Some(crate::usm::AuthProtocol::Sha1),
        ("3", "SHA-256") => Some(crate::usm::AuthProtocol::Sha256),
        ("3", other) => {
            return Err(format!(
                "auth_protocol {other:?} is not supported: \"SHA\" or \"SHA-256\""
            ));
        }
        (other, _) => {
            return Err(format!("version {other:?} is not supported: \"2c\" or \"3\""));
        }
    };
    if p.devices.is_empty() {
        return Err("devices is empty: give at least one device address".into());
    }
    if p.devices.len() > MAX_DEVICES {
        return Err(format!("{} devices; at most {MAX_DEVICES} per task", p.devices.len()));
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
        auth,
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
        "description": "Secrets: {\"community\": \"...\"} for v2c; {\"user\", \"auth_password\", \"priv_password\"} for v3.",
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
            "version": {"description": "SNMP version: 2c (secrets: community) or 3, USM authPriv (secrets: user, auth_password, priv_password)", "enum": ["2c", "3"], "default": "2c"},
            "auth_protocol": {"description": "v3 authentication", "enum": ["SHA", "SHA-256"], "default": "SHA"},
            "priv_protocol": {"description": "v3 privacy", "enum": ["AES"], "default": "AES"},
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
        assert_eq!(shown, ["10.0.0.1:16100", "10.0.0.2:1161", "[::1]:16100", "[::1]:9"]);
        assert_eq!(plan.retries, 2);
        assert!(plan.bulk);
    }

    #[test]
    fn refuses_names_versions_and_ranges() {
        for (params, needle) in [
            (r#"{"devices": ["router.lan"]}"#, "\"router.lan\""),
            (r#"{"devices": []}"#, "empty"),
            (r#"{"devices": ["10.0.0.1"], "version": "1"}"#, "\"2c\" or \"3\""),
            (
                r#"{"devices": ["10.0.0.1"], "version": "3", "auth_protocol": "MD5"}"#,
                "auth_protocol",
            ),
            (
                r#"{"devices": ["10.0.0.1"], "version": "3", "priv_protocol": "DES"}"#,
                "priv_protocol",
            ),
            (r#"{"devices": ["10.0.0.1"], "retries": 11}"#, "retries"),
            (r#"{"devices": ["10.0.0.1"], "community": "public"}"#, "unknown field"),
        ] {
            let err = parse(params).unwrap_err();
            assert!(err.contains(needle), "{params}: {err}");
        }
    }

    #[test]
    fn secrets_follow_the_version_and_never_show() {
        let v2 = parse(r#"{"devices": ["10.0.0.1"]}"#).unwrap();
        let v3 = parse(r#"{"devices": ["10.0.0.1"], "version": "3", "auth_protocol": "SHA-256"}"#)
            .unwrap();
        assert!(matches!(
            parse_secrets(r#"{"community": "s3cret"}"#, &v2).unwrap(),
            Credentials::Community(c) if c == "s3cret"
        ));
        let err = parse_secrets(r#"{"community": 12345}"#, &v2).err().unwrap();
        assert!(!err.contains("12345"), "{err}");
        assert!(parse_secrets("{}", &v2).err().unwrap().contains("community"));
        assert!(parse_secrets(r#"{"community": ""}"#, &v2).err().unwrap().contains("empty"));
        let ok = r#"{"user": "u", "auth_password": "auth-pass", "priv_password": "priv-pass"}"#;
        assert!(matches!(
            parse_secrets(ok, &v3).unwrap(),
            Credentials::Usm(c) if c.auth == crate::usm::AuthProtocol::Sha256 && c.user == "u"
        ));
        assert!(parse_secrets(r#"{"community": "c"}"#, &v3).err().unwrap().contains("user"));
        let short = r#"{"user": "u", "auth_password": "short", "priv_password": "priv-pass"}"#;
        assert!(parse_secrets(short, &v3).err().unwrap().contains("8 characters"));
        let s: Secrets = serde_json::from_str(r#"{"community": "s3cret"}"#).unwrap();
        assert!(!format!("{s:?}").contains("s3cret"));
    }
}
