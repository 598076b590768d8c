//! Paths inside the granted directory: every path a task or an archive names is
//! checked here before anything is written.
//!
//! A path is accepted only if it is relative, has no `..` component, no NUL or
//! backslash, and does not pass through a symbolic link that already exists in
//! the directory (the host's sandbox would stop an escape anyway; refusing up
//! front means the deployment fails before its first write instead of halfway).

use std::path::{Component, Path, PathBuf};

/// Turn `text` into a normalized relative path (`.` components dropped), or say
/// why it could escape the granted directory.
pub fn relative(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("empty path".to_string());
    }
    if text.contains('\0') || text.contains('\\') {
        return Err(format!("{text:?}: NUL and backslash are not allowed in paths"));
    }
    let mut out = PathBuf::new();
    for c in Path::new(text).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!("{text:?} escapes the directory (`..`)"));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "{text:?} is absolute: paths are relative to the granted directory"
                ));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(format!("{text:?} names the granted directory itself"));
    }
    Ok(out)
}

/// Join a checked relative path under `prefix` (itself checked, or empty).
pub fn join(prefix: &Path, rel: &Path) -> PathBuf {
    prefix.join(rel)
}

/// Refuse `rel` if one of its parent directories inside `base` is a symbolic
/// link (the last component may be one: it is replaced or removed, never
/// followed).
pub fn no_symlink_parents(base: &Path, rel: &Path) -> Result<(), String> {
    let mut at = base.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "{} passes through the symbolic link {}",
                    rel.display(),
                    at.strip_prefix(base).unwrap_or(&at).display()
                ));
            }
            Ok(_) => {}
            // Not there yet: nothing below it exists either.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_normalized() {
        assert_eq!(relative("a/./b/c.txt").unwrap(), PathBuf::from("a/b/c.txt"));
        assert_eq!(relative("dir/").unwrap(), PathBuf::from("dir"));
    }

    #[test]
    fn escaping_paths_are_refused() {
        for bad in ["/etc/passwd", "../x", "a/../../x", "a/..", "", ".", "a\\b", "a\0b"] {
            assert!(relative(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_parents_are_refused() {
        let dir = std::env::temp_dir().join(format!("deploy-paths-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("real")).unwrap();
        std::os::unix::fs::symlink("/tmp", dir.join("link")).unwrap();
        assert!(no_symlink_parents(&dir, Path::new("real/file")).is_ok());
        assert!(no_symlink_parents(&dir, Path::new("new/deeper/file")).is_ok());
        assert!(no_symlink_parents(&dir, Path::new("link/file")).is_err());
        // The link itself may be replaced or removed.
        assert!(no_symlink_parents(&dir, Path::new("link")).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
