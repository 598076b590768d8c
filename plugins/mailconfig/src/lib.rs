//! mailconfig: mail account management in a Dovecot passwd-file and a Postfix
//! virtual mailbox map, as a jobstack task plugin.
//!
//! Parameters (JSON Schema in the manifest, see [`params`]): `dir` (the granted
//! directory, default `/mail`), `passwd_file` (default `passwd`), `mailbox_map`
//! (default `vmailbox`), and `actions`: `add` (address, optional mailbox),
//! `remove`, `change_password`, `list`. Secrets: `{"passwords": {"address":
//! "password"}}` for every add and password change, read only from the job.
//!
//! - `split`: one part, with no network target: the work is on the files of the
//!   mail server the agent runs on (its operator grants the directory).
//! - `execute`: validates everything (addresses, mailboxes, file names,
//!   passwords present), reads both files, applies the actions in memory
//!   ([`accounts`]), and only if every action fits writes the changed files
//!   atomically ([`files`]). Passwords are stored as `{SHA512-CRYPT}$6$...`
//!   ([`hash`]); lines the actions are not about stay byte for byte
//!   ([`keyed`]). Emits one record per action; `list` returns the accounts
//!   without their hashes.
//!
//! The two files are replaced one after the other (passwd-file first): each is
//! atomic, the pair is not. Postfix reads the map through `texthash:` (no
//! postmap step) or the admin rebuilds a `hash:` map from it.

pub mod accounts;
pub mod files;
pub mod hash;
pub mod keyed;
pub mod params;
pub mod stage;

use jobstack_plugin::{Capability, Guest, Job, Manifest, Origin, Part, host};

use accounts::Accounts;

struct Mailconfig;

impl Guest for Mailconfig {
    fn manifest() -> Manifest {
        Manifest {
            name: "mailconfig".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Mail accounts: add, remove, change password and list in a Dovecot passwd-file and a Postfix virtual mailbox map".into(),
            params_schema: params::schema().to_string(),
            capabilities: vec![Capability::Filesystem],
        }
    }

    fn split(params: String) -> Result<Vec<Part>, String> {
        let plan = params::parse(&params, None)?;
        let label = format!("{} accounts action(s) in {}", plan.actions.len(), plan.dir);
        Ok(vec![jobstack_plugin::part(&label, "{}")])
    }

    fn init(params: String) -> Result<(), String> {
        params::parse(&params, None).map(|_| ())
    }

    fn execute(job: Job) -> Result<String, String> {
        let secrets = params::parse_secrets(&job.secrets)?;
        let plan = params::parse(&job.params, Some(&secrets))?;
        let passwd_path = files::resolve(&plan.dir, &plan.passwd_file)?;
        let map_path = files::resolve(&plan.dir, &plan.mailbox_map)?;
        let passwd_text = files::read(&passwd_path)?;
        let map_text = files::read(&map_path)?;
        let mut accounts = Accounts::parse(&passwd_text, &map_text);
        let before = accounts.clone();
        let outcomes = accounts.apply(&plan.actions, &secrets.passwords, hash::store)?;
        let total = plan.actions.len() as u64 + 1;
        host::progress(total - 1, total);
        // Nothing is written unless every action applied.
        let mut written = Vec::new();
        if accounts.passwd != before.passwd {
            files::write_atomic(&passwd_path, &accounts.passwd.render())?;
            written.push(plan.passwd_file.clone());
        }
        if accounts.map != before.map {
            files::write_atomic(&map_path, &accounts.map.render()).map_err(|e| {
                if written.is_empty() {
                    e
                } else {
                    format!("{e} (the passwd-file was already replaced)")
                }
            })?;
            written.push(plan.mailbox_map.clone());
        }
        for o in &outcomes {
            jobstack_plugin::emit(o);
        }
        host::progress(total, total);
        Ok(serde_json::json!({"actions": outcomes, "written": written}).to_string())
    }

    fn stage(records: Vec<String>, origin: Origin) -> Result<Vec<String>, String> {
        let seen = stage::observations(&records, &origin.agent)?;
        Ok(seen.iter().map(jobstack_plugin::to_json).collect())
    }
}

jobstack_plugin::export!(Mailconfig);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_makes_one_part_without_network_targets() {
        let parts = Mailconfig::split(r#"{"actions": [{"op": "list"}]}"#.into()).unwrap();
        assert_eq!(parts.len(), 1);
        assert!(parts[0].targets.is_empty());
        assert!(
            Mailconfig::split(r#"{"actions": [{"op": "add", "address": "x"}]}"#.into()).is_err()
        );
    }

    #[test]
    fn manifest_declares_filesystem_only() {
        let m = Mailconfig::manifest();
        assert_eq!(m.name, "mailconfig");
        assert_eq!(m.capabilities, [Capability::Filesystem]);
        let schema: serde_json::Value = serde_json::from_str(&m.params_schema).unwrap();
        assert_eq!(schema["required"], serde_json::json!(["actions"]));
    }
}
