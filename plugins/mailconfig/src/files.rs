//! Reading the two files from the granted directory and replacing them
//! atomically: the new text goes to a hidden temporary file in the same
//! directory, is flushed to disk, then renamed over the old file, so a reader
//! (Dovecot, postmap) sees the old file or the new one, never half of one.
//!
//! WASI has no chmod: a file created here gets the host's default mode. A
//! passwd-file holds hashes only, but operators who want it unreadable by others
//! set the directory's permissions (or a default ACL) accordingly.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// `dir/name`, after checking that the directory is there (granted).
pub fn resolve(dir: &str, name: &str) -> Result<PathBuf, String> {
    let d = Path::new(dir);
    if !d.is_dir() {
        return Err(format!(
            "directory {dir} is not available: grant it to the execution (jobstack exec --dir HOST_DIR::{dir})"
        ));
    }
    Ok(d.join(name))
}

/// The file's text, or an empty text when it does not exist yet.
pub fn read(path: &Path) -> Result<String, String> {
    match std::fs::read(path) {
        Ok(bytes) => {
            String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Replace `path` with `text` atomically (temporary file + fsync + rename).
pub fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} has no file name", path.display()))?;
    let suffix = wasip2::random::random::get_random_u64();
    let tmp = path.with_file_name(format!(".{name}.jobstack-{suffix:016x}.tmp"));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}
