//! The daemon's secrets at rest: admin token and enrollment secret.
//!
//! Configured values (flag, environment, config file) are used as given. Without
//! them, the first start generates both, prints them once on stderr, and keeps
//! only their SHA-256 in `<data-dir>/credentials.json` (mode 0600); later starts
//! read the hashes. Lost tokens are replaced by deleting that file.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::api::auth::{Credentials, hash_token, new_token};

/// The file holding the hashes.
pub const CREDENTIALS_FILE: &str = "credentials.json";

#[derive(Debug, Serialize, Deserialize)]
struct StoredHashes {
    admin_token_sha256: String,
    enroll_secret_sha256: String,
}

/// Build the credentials from configuration, falling back to the stored hashes,
/// generating (and printing once) what is neither configured nor stored.
pub fn load_or_create(
    data_dir: &Path, admin_token: Option<&str>, enroll_secret: Option<&str>,
) -> anyhow::Result<Credentials> {
    let path = data_dir.join(CREDENTIALS_FILE);
    let stored: Option<StoredHashes> = match std::fs::read(&path) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).with_context(|| {
            format!("{} is corrupt: delete it to make new tokens", path.display())
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut generated = Vec::new();
    let mut pick =
        |configured: Option<&str>, stored: Option<&String>, what: &'static str| -> String {
            match (configured, stored) {
                (Some(token), _) => hash_token(token),
                (None, Some(hash)) => hash.clone(),
                (None, None) => {
                    let token = new_token();
                    generated.push((what, token.clone()));
                    hash_token(&token)
                }
            }
        };
    let admin = pick(admin_token, stored.as_ref().map(|s| &s.admin_token_sha256), "admin token");
    let enroll =
        pick(enroll_secret, stored.as_ref().map(|s| &s.enroll_secret_sha256), "enrollment secret");
    if stored.is_none() || !generated.is_empty() {
        let hashes = StoredHashes {
            admin_token_sha256: admin.clone(),
            enroll_secret_sha256: enroll.clone(),
        };
        write_private(&path, &serde_json::to_vec_pretty(&hashes)?)?;
    }
    for (what, token) in generated {
        eprintln!("jobstack: generated {what} (shown once, only its hash is kept): {token}");
    }
    Ok(Credentials { admin_hashes: vec![admin], enroll_hash: enroll })
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_tokens_win_and_hashes_persist() {
        let dir = tempfile::tempdir().unwrap();
        let c = load_or_create(dir.path(), Some("adm"), Some("enr")).unwrap();
        assert!(c.is_admin("adm") && c.is_enrollment("enr"));
        // Restart without configuration: the stored hashes still accept them.
        let again = load_or_create(dir.path(), None, None).unwrap();
        assert!(again.is_admin("adm") && again.is_enrollment("enr"));
        let text = std::fs::read_to_string(dir.path().join(CREDENTIALS_FILE)).unwrap();
        assert!(!text.contains("\"adm\""));
    }
}
