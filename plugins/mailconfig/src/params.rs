//! The task parameters and secrets of mailconfig, their JSON Schema and their
//! validation. Everything here is checked before any file is touched.

use serde::Deserialize;
use std::collections::BTreeMap;

/// Most actions in one task.
pub const MAX_ACTIONS: usize = 1000;
/// Longest password accepted (SHA-crypt's cost grows with the length).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The parameters as the admin writes them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The granted directory, as the plugin sees it.
    #[serde(default = "default_dir")]
    pub dir: String,
    /// The Dovecot passwd-file, relative to `dir`.
    #[serde(default = "default_passwd")]
    pub passwd_file: String,
    /// The Postfix virtual mailbox map (texthash source), relative to `dir`.
    #[serde(default = "default_map")]
    pub mailbox_map: String,
    /// What to do, in order.
    pub actions: Vec<Action>,
}

fn default_dir() -> String {
    "/mail".into()
}
fn default_passwd() -> String {
    "passwd".into()
}
fn default_map() -> String {
    "vmailbox".into()
}

/// One change (or the listing) of accounts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Create an account; its password is `secrets.passwords[address]`.
    Add {
        /// `local@domain`.
        address: String,
        /// Maildir path relative to the virtual mailbox base; default `domain/local/`.
        #[serde(default)]
        mailbox: Option<String>,
    },
    /// Delete an account from both files.
    Remove {
        /// `local@domain`.
        address: String,
    },
    /// Store a new password, `secrets.passwords[address]`.
    ChangePassword {
        /// `local@domain`.
        address: String,
    },
    /// Report every account (no password hashes). A struct variant so that
    /// unknown fields are refused as for the others.
    List {},
}

/// The task secrets: `{"passwords": {"alice@example.org": "..."}}`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// New passwords by address.
    #[serde(default)]
    pub passwords: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets {{ passwords for {:?} }}", self.passwords.keys())
    }
}

/// Parse the secrets without ever echoing them in an error.
pub fn parse_secrets(text: &str) -> Result<Secrets, String> {
    let mut s: Secrets = serde_json::from_str(text).map_err(|_| {
        "invalid secrets: mailconfig expects {\"passwords\": {\"address\": \"password\", ...}}"
            .to_string()
    })?;
    // Addresses are compared lowercase, as they are stored.
    s.passwords = s.passwords.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    Ok(s)
}

/// Validated parameters: normalized addresses and mailboxes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The granted directory.
    pub dir: String,
    /// The passwd-file name inside it.
    pub passwd_file: String,
    /// The map name inside it.
    pub mailbox_map: String,
    /// The actions, with `address` lowercased and `mailbox` filled in.
    pub actions: Vec<Action>,
}

/// Parse and validate the parameters; with `secrets`, also check that every
/// add and password change has its password.
pub fn parse(text: &str, secrets: Option<&Secrets>) -> Result<Plan, String> {
    let p: Params = jobstack_plugin::from_json("params", text)?;
    if !p.dir.starts_with('/') {
        return Err(format!(
            "dir {:?} must be an absolute path (where the directory is granted)",
            p.dir
        ));
    }
    check_file_name("passwd_file", &p.passwd_file)?;
    check_file_name("mailbox_map", &p.mailbox_map)?;
    if p.passwd_file == p.mailbox_map {
        return Err("passwd_file and mailbox_map must be different files".into());
    }
    if p.actions.is_empty() || p.actions.len() > MAX_ACTIONS {
        return Err(format!("actions must hold 1 to {MAX_ACTIONS} actions"));
    }
    let mut actions = Vec::with_capacity(p.actions.len());
    for (i, a) in p.actions.into_iter().enumerate() {
        let at = |e: String| format!("action {}: {e}", i + 1);
        let a = match a {
            Action::Add { address, mailbox } => {
                let address = check_address(&address).map_err(at)?;
                let mailbox = match mailbox {
                    Some(m) => check_mailbox(&m).map_err(at)?,
                    None => {
                        let (local, domain) = address.split_once('@').expect("checked");
                        format!("{domain}/{local}/")
                    }
                };
                Action::Add { address, mailbox: Some(mailbox) }
            }
            Action::Remove { address } => {
                Action::Remove { address: check_address(&address).map_err(at)? }
            }
            Action::ChangePassword { address } => {
                Action::ChangePassword { address: check_address(&address).map_err(at)? }
            }
            Action::List {} => Action::List {},
        };
        if let (Some(s), Action::Add { address, .. } | Action::ChangePassword { address }) =
            (secrets, &a)
        {
            let pw = s
                .passwords
                .get(address)
                .ok_or_else(|| at(format!("no password for {address} in secrets.passwords")))?;
            if pw.is_empty() || pw.len() > MAX_PASSWORD_BYTES || pw.contains(['\n', '\r', '\0']) {
                return Err(at(format!(
                    "the password for {address} must be 1 to {MAX_PASSWORD_BYTES} bytes without line breaks or NUL"
                )));
            }
        }
        actions.push(a);
    }
    Ok(Plan { dir: p.dir, passwd_file: p.passwd_file, mailbox_map: p.mailbox_map, actions })
}

/// A file name relative to the granted directory: no `..`, no absolute path,
/// no hidden name (temporary files are hidden).
fn check_file_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.split('/').all(|c| {
            !c.is_empty()
                && !c.starts_with('.')
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} must be a path inside the directory: letters, digits, - _ . +, no '..', no leading '/' or '.'"
        ))
    }
}

/// `local@domain`, lowercased. Refuses what would break either file format
/// (`:` in the passwd-file, whitespace in the map) or is not an address.
pub fn check_address(address: &str) -> Result<String, String> {
    let a = address.trim().to_ascii_lowercase();
    let bad = || format!("{address:?} is not a mail address (local@domain)");
    let (local, domain) = a.split_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && local.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-=".contains(&b));
    let domain_ok = domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if local_ok && domain_ok { Ok(a) } else { Err(bad()) }
}

/// A mailbox path relative to Postfix's `virtual_mailbox_base`: no `..`, no
/// absolute path, no whitespace; a trailing `/` means Maildir.
pub fn check_mailbox(mailbox: &str) -> Result<String, String> {
    let ok = !mailbox.is_empty()
        && !mailbox.starts_with('/')
        && mailbox.trim_end_matches('/').split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && mailbox.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-=@/".contains(&b));
    if ok {
        Ok(mailbox.to_string())
    } else {
        Err(format!(
            "mailbox {mailbox:?} must be a relative path (e.g. example.org/alice/) without '..' or spaces"
        ))
    }
}

/// The JSON Schema of [`Params`], as declared in the manifest.
pub fn schema() -> serde_json::Value {
    let address =
        serde_json::json!({"type": "string", "pattern": "^[^@\\s:]+@[^@\\s:]+\\.[^@\\s:]+$"});
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "mailconfig parameters",
        "description": "Secrets: {\"passwords\": {\"<address>\": \"<password>\"}} for every add and change_password.",
        "type": "object",
        "required": ["actions"],
        "additionalProperties": false,
        "properties": {
            "dir": {"description": "The granted directory holding both files, as the plugin sees it", "type": "string", "default": "/mail"},
            "passwd_file": {"description": "Dovecot passwd-file, relative to dir", "type": "string", "default": "passwd"},
            "mailbox_map": {"description": "Postfix virtual mailbox map (texthash source), relative to dir", "type": "string", "default": "vmailbox"},
            "actions": {
                "type": "array", "minItems": 1, "maxItems": MAX_ACTIONS,
                "items": {"oneOf": [
                    {"type": "object", "additionalProperties": false, "required": ["op", "address"],
                     "properties": {"op": {"const": "add"}, "address": address, "mailbox": {"type": "string"}}},
                    {"type": "object", "additionalProperties": false, "required": ["op", "address"],
                     "properties": {"op": {"const": "remove"}, "address": address}},
                    {"type": "object", "additionalProperties": false, "required": ["op", "address"],
                     "properties": {"op": {"const": "change_password"}, "address": address}},
                    {"type": "object", "additionalProperties": false, "required": ["op"],
                     "properties": {"op": {"const": "list"}}}
                ]}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(pairs: &[(&str, &str)]) -> Secrets {
        Secrets { passwords: pairs.iter().map(|(a, p)| (a.to_string(), p.to_string())).collect() }
    }

    #[test]
    fn normalizes_addresses_and_fills_mailboxes() {
        let plan = parse(
            r#"{"actions": [{"op": "add", "address": "Alice@Example.ORG"}, {"op": "add", "address": "b@example.org", "mailbox": "x/b/"}, {"op": "list"}]}"#,
            Some(&secrets(&[("alice@example.org", "pw"), ("b@example.org", "pw2")])),
        )
        .unwrap();
        assert_eq!(plan.dir, "/mail");
        assert_eq!(
            plan.actions[0],
            Action::Add {
                address: "alice@example.org".into(),
                mailbox: Some("example.org/alice/".into())
            }
        );
        assert_eq!(
            plan.actions[1],
            Action::Add { address: "b@example.org".into(), mailbox: Some("x/b/".into()) }
        );
        assert_eq!(plan.actions[2], Action::List {});
    }

    #[test]
    fn refuses_bad_input_naming_the_action() {
        let s = secrets(&[("a@example.org", "pw")]);
        for (params, needle) in [
            (
                r#"{"actions": [{"op": "add", "address": "no-at-sign"}]}"#,
                "action 1: \"no-at-sign\" is not a mail address",
            ),
            (
                r#"{"actions": [{"op": "list"}, {"op": "add", "address": "a:b@example.org"}]}"#,
                "action 2",
            ),
            (
                r#"{"actions": [{"op": "add", "address": "c@example.org"}]}"#,
                "no password for c@example.org",
            ),
            (
                r#"{"actions": [{"op": "add", "address": "a@example.org", "mailbox": "../etc/"}]}"#,
                "mailbox",
            ),
            (
                r#"{"actions": [{"op": "add", "address": "a@example.org", "mailbox": "/var/mail/a"}]}"#,
                "mailbox",
            ),
            (r#"{"actions": [{"op": "rename", "address": "a@example.org"}]}"#, "unknown variant"),
            (r#"{"actions": [{"op": "list", "address": "a@example.org"}]}"#, "unknown field"),
            (r#"{"actions": []}"#, "1 to 1000"),
            (r#"{"passwd_file": "../passwd", "actions": [{"op": "list"}]}"#, "passwd_file"),
            (r#"{"mailbox_map": ".hidden", "actions": [{"op": "list"}]}"#, "mailbox_map"),
            (r#"{"dir": "mail", "actions": [{"op": "list"}]}"#, "absolute"),
            (
                r#"{"passwd_file": "f", "mailbox_map": "f", "actions": [{"op": "list"}]}"#,
                "different",
            ),
        ] {
            let err = parse(params, Some(&s)).unwrap_err();
            assert!(err.contains(needle), "{params}: {err}");
        }
    }

    #[test]
    fn passwords_with_line_breaks_are_refused() {
        let s = secrets(&[("a@example.org", "x\ny")]);
        let err = parse(
            r#"{"actions": [{"op": "change_password", "address": "a@example.org"}]}"#,
            Some(&s),
        )
        .unwrap_err();
        assert!(err.contains("line breaks"), "{err}");
        assert!(!err.contains("x\ny"));
    }

    #[test]
    fn secrets_errors_do_not_echo_them() {
        let err = parse_secrets(r#"{"passwords": {"a@example.org": 123456}}"#).unwrap_err();
        assert!(!err.contains("123456"), "{err}");
        let s = parse_secrets(r#"{"passwords": {"A@Example.org": "pw"}}"#).unwrap();
        assert!(s.passwords.contains_key("a@example.org"));
        assert!(!format!("{s:?}").contains("pw\""));
    }
}
