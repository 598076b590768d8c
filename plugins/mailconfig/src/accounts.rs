//! The accounts as the two files hold them, and the actions applied to them in
//! memory. Every action is checked against the state the previous ones left;
//! the first that cannot apply rejects the whole task, so nothing is written.

use serde::Serialize;
use std::collections::BTreeMap;

use crate::keyed::{KeyedFile, Separator};
use crate::params::Action;

/// The passwd-file and the map, in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounts {
    /// Dovecot passwd-file: `address:{SCHEME}hash[:uid:gid:gecos:home:shell:extra]`.
    pub passwd: KeyedFile,
    /// Postfix virtual mailbox map: `address mailbox`.
    pub map: KeyedFile,
}

/// One account as listed: never the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// The address.
    pub address: String,
    /// Its mailbox in the map, if it has one.
    pub mailbox: Option<String>,
    /// The password scheme in the passwd-file (`SHA512-CRYPT`), if it has a line.
    pub password_scheme: Option<String>,
}

/// What one action did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// `add`, `remove`, `change_password` or `list`.
    pub op: &'static str,
    /// The account concerned (none for `list`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The accounts, for `list`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accounts: Option<Vec<Listed>>,
}

impl Accounts {
    /// The accounts in the files' texts.
    pub fn parse(passwd: &str, map: &str) -> Self {
        Accounts {
            passwd: KeyedFile::parse(passwd, Separator::Colon),
            map: KeyedFile::parse(map, Separator::Whitespace),
        }
    }

    /// Every account of either file, passwd-file order first.
    pub fn list(&self) -> Vec<Listed> {
        let mut seen = Vec::new();
        for key in self.passwd.keys().into_iter().chain(self.map.keys()) {
            if !seen.contains(&key) {
                seen.push(key);
            }
        }
        seen.into_iter()
            .map(|address| Listed {
                address: address.to_string(),
                mailbox: self.map.get(address).map(|m| m.trim().to_string()),
                password_scheme: self.passwd.get(address).map(|rest| {
                    let password = rest.split(':').next().unwrap_or("");
                    match password.strip_prefix('{').and_then(|p| p.split_once('}')) {
                        Some((scheme, _)) => scheme.to_string(),
                        // Dovecot's default scheme for a bare value is CRYPT.
                        None => "CRYPT".to_string(),
                    }
                }),
            })
            .collect()
    }

    /// Apply `actions` in order; `hash` turns an address's new password into its
    /// stored form. Fails on the first action that does not fit the state,
    /// leaving `self` partly changed (the caller then writes nothing).
    pub fn apply(
        &mut self, actions: &[Action], passwords: &BTreeMap<String, String>,
        mut hash: impl FnMut(&str) -> String,
    ) -> Result<Vec<Outcome>, String> {
        let mut out = Vec::with_capacity(actions.len());
        for (i, action) in actions.iter().enumerate() {
            let at = |e: String| format!("action {}: {e}; nothing was changed", i + 1);
            let password = |a: &str| {
                passwords
                    .get(a)
                    .cloned()
                    .ok_or_else(|| at(format!("no password for {a} in secrets.passwords")))
            };
            match action {
                Action::Add { address, mailbox } => {
                    if self.passwd.contains(address) || self.map.contains(address) {
                        return Err(at(format!(
                            "{address} already exists (use change_password to set its password)"
                        )));
                    }
                    let mailbox = mailbox.as_deref().expect("filled in by params::parse");
                    let stored = hash(&password(address)?);
                    self.passwd.set(address, format!("{address}:{stored}"));
                    self.map.set(address, format!("{address} {mailbox}"));
                    out.push(outcome("add", address));
                }
                Action::Remove { address } => {
                    let in_passwd = self.passwd.remove(address);
                    let in_map = self.map.remove(address);
                    if !in_passwd && !in_map {
                        return Err(at(format!("{address} does not exist")));
                    }
                    out.push(outcome("remove", address));
                }
                Action::ChangePassword { address } => {
                    let Some(rest) = self.passwd.get(address) else {
                        return Err(at(format!("{address} has no line in the passwd-file")));
                    };
                    // Keep the fields after the password (uid, gid, home, ...).
                    let tail = rest.split_once(':').map(|(_, t)| t.to_string());
                    let stored = hash(&password(address)?);
                    let line = match tail {
                        Some(t) => format!("{address}:{stored}:{t}"),
                        None => format!("{address}:{stored}"),
                    };
                    self.passwd.set(address, line);
                    out.push(outcome("change_password", address));
                }
                Action::List {} => {
                    out.push(Outcome { op: "list", address: None, accounts: Some(self.list()) })
                }
            }
        }
        Ok(out)
    }
}

fn outcome(op: &'static str, address: &str) -> Outcome {
    Outcome { op, address: Some(address.to_string()), accounts: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "# hand-made\npostmaster@example.org:{PLAIN}pm:8:8::/var/mail::\n";
    const MAP: &str = "# virtual mailboxes\npostmaster@example.org example.org/postmaster/\n";

    fn add(a: &str) -> Action {
        Action::Add {
            address: a.into(),
            mailbox: Some(format!("example.org/{}/", a.split('@').next().unwrap())),
        }
    }

    fn pw(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(a, p)| (a.to_string(), p.to_string())).collect()
    }

    fn fake_hash(p: &str) -> String {
        format!("{{TEST}}{p}")
    }

    #[test]
    fn add_change_remove_keep_unrelated_lines() {
        let mut acc = Accounts::parse(PASSWD, MAP);
        let done = acc
            .apply(
                &[
                    add("alice@example.org"),
                    Action::ChangePassword { address: "postmaster@example.org".into() },
                    add("bob@example.org"),
                    Action::Remove { address: "alice@example.org".into() },
                ],
                &pw(&[
                    ("alice@example.org", "a"),
                    ("bob@example.org", "b"),
                    ("postmaster@example.org", "new"),
                ]),
                fake_hash,
            )
            .unwrap();
        assert_eq!(done.len(), 4);
        assert_eq!(
            acc.passwd.render(),
            "# hand-made\npostmaster@example.org:{TEST}new:8:8::/var/mail::\nbob@example.org:{TEST}b\n"
        );
        assert_eq!(
            acc.map.render(),
            "# virtual mailboxes\npostmaster@example.org example.org/postmaster/\nbob@example.org example.org/bob/\n"
        );
    }

    #[test]
    fn list_shows_schemes_and_mailboxes_never_hashes() {
        let acc = Accounts::parse(
            "a@example.org:{SHA512-CRYPT}$6$x$y\nb@example.org:$1$bare\n",
            "a@example.org example.org/a/\nc@example.org c/\n",
        );
        let listed = acc.list();
        assert_eq!(
            listed,
            [
                Listed {
                    address: "a@example.org".into(),
                    mailbox: Some("example.org/a/".into()),
                    password_scheme: Some("SHA512-CRYPT".into())
                },
                Listed {
                    address: "b@example.org".into(),
                    mailbox: None,
                    password_scheme: Some("CRYPT".into())
                },
                Listed {
                    address: "c@example.org".into(),
                    mailbox: Some("c/".into()),
                    password_scheme: None
                },
            ]
        );
        assert!(!serde_json::to_string(&listed).unwrap().contains("$6$"));
    }

    #[test]
    fn impossible_actions_are_refused_naming_them() {
        let pws = pw(&[("postmaster@example.org", "x"), ("new@example.org", "y")]);
        for (actions, needle) in [
            (
                vec![add("postmaster@example.org")],
                "action 1: postmaster@example.org already exists",
            ),
            (
                vec![Action::Remove { address: "ghost@example.org".into() }],
                "ghost@example.org does not exist",
            ),
            (vec![Action::ChangePassword { address: "new@example.org".into() }], "has no line"),
            (
                vec![add("new@example.org"), add("new@example.org")],
                "action 2: new@example.org already exists",
            ),
        ] {
            let mut acc = Accounts::parse(PASSWD, MAP);
            let err = acc.apply(&actions, &pws, fake_hash).unwrap_err();
            assert!(err.contains(needle), "{err}");
            assert!(err.ends_with("nothing was changed"), "{err}");
        }
    }
}
