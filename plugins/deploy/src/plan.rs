//! The actions of a deployment: checked all together first ([`Plan::check`]),
//! then applied in order ([`Plan::apply`]).
//!
//! Checking covers every path of every action and every entry of every archive
//! to unpack (relative, no `..`, no symbolic link on the way, no regular file
//! where a directory exists, only files and directories in archives), so a
//! deployment that would escape the granted directory writes nothing at all.
//! Every file is written to a temporary file beside its destination, synced,
//! then renamed over it: a reader sees the old file or the new one, never half.

use flate2::read::GzDecoder;
use serde::Deserialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::paths;

/// One action, as the task's parameters give it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Action {
    /// Write a file: `content` (text), or the artifact's bytes when absent.
    Write {
        /// Destination, relative to the granted directory.
        path: String,
        /// The file's text; the artifact when absent.
        #[serde(default)]
        content: Option<String>,
    },
    /// Unpack the artifact (a tar.gz) under `path` (default: the directory itself).
    Unpack {
        /// Where to unpack, relative to the granted directory.
        #[serde(default)]
        path: Option<String>,
    },
    /// Create a directory and its parents.
    Mkdir {
        /// The directory, relative to the granted directory.
        path: String,
    },
    /// Remove a file, a symbolic link or a directory tree (absent: nothing to do).
    Remove {
        /// What to remove, relative to the granted directory.
        path: String,
    },
}

impl Action {
    /// Whether the action needs the artifact's bytes.
    pub fn uses_artifact(&self) -> bool {
        matches!(self, Action::Write { content: None, .. } | Action::Unpack { .. })
    }
}

/// A checked action.
#[derive(Debug)]
enum Step {
    Write { rel: PathBuf, content: Option<Vec<u8>> },
    Unpack { prefix: PathBuf },
    Mkdir { rel: PathBuf },
    Remove { rel: PathBuf },
}

/// What applying one step did, for the record the plugin emits.
pub type Done = serde_json::Value;

/// Checked actions over one granted directory.
#[derive(Debug)]
pub struct Plan {
    base: PathBuf,
    steps: Vec<Step>,
}

impl Plan {
    /// Check every action (and every entry of `artifact` when it is unpacked)
    /// against the directory `base`. Nothing is written.
    pub fn check(base: &Path, actions: &[Action], artifact: Option<&[u8]>) -> Result<Plan, String> {
        let mut steps = Vec::new();
        for (i, action) in actions.iter().enumerate() {
            let at = |e: String| format!("action {} ({}): {e}", i + 1, name(action));
            let step = match action {
                Action::Write { path, content } => {
                    let rel = paths::relative(path).map_err(at)?;
                    check_file_destination(base, &rel).map_err(at)?;
                    if content.is_none() && artifact.is_none() {
                        return Err(at("no content and no artifact to write".into()));
                    }
                    Step::Write { rel, content: content.as_ref().map(|c| c.as_bytes().to_vec()) }
                }
                Action::Unpack { path } => {
                    let prefix = match path.as_deref() {
                        None | Some("") | Some(".") => PathBuf::new(),
                        Some(p) => paths::relative(p).map_err(at)?,
                    };
                    if !prefix.as_os_str().is_empty() {
                        paths::no_symlink_parents(base, &prefix.join("x")).map_err(at)?;
                    }
                    let bytes = artifact.ok_or_else(|| at("no artifact to unpack".into()))?;
                    for (rel, is_dir) in archive_entries(bytes).map_err(at)? {
                        let full = prefix.join(&rel);
                        paths::no_symlink_parents(base, &full).map_err(at)?;
                        if !is_dir {
                            check_file_destination(base, &full).map_err(at)?;
                        }
                    }
                    Step::Unpack { prefix }
                }
                Action::Mkdir { path } => {
                    let rel = paths::relative(path).map_err(at)?;
                    paths::no_symlink_parents(base, &rel.join("x")).map_err(at)?;
                    Step::Mkdir { rel }
                }
                Action::Remove { path } => {
                    let rel = paths::relative(path).map_err(at)?;
                    paths::no_symlink_parents(base, &rel).map_err(at)?;
                    Step::Remove { rel }
                }
            };
            steps.push(step);
        }
        Ok(Plan { base: base.to_path_buf(), steps })
    }

    /// How many steps there are.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Apply the steps in order; `done` is called after each with what it did.
    pub fn apply(&self, artifact: Option<&[u8]>, mut done: impl FnMut(Done)) -> Result<(), String> {
        for (i, step) in self.steps.iter().enumerate() {
            let at = |e: String| format!("step {}: {e}", i + 1);
            let record = match step {
                Step::Write { rel, content } => {
                    let bytes =
                        content.as_deref().or(artifact).ok_or_else(|| at("no content".into()))?;
                    let n = write_atomic(&self.base, rel, &mut &bytes[..]).map_err(at)?;
                    serde_json::json!({"action": "write", "path": rel, "bytes": n})
                }
                Step::Unpack { prefix } => {
                    let bytes = artifact.ok_or_else(|| at("no artifact".into()))?;
                    let (files, dirs) = unpack(&self.base, prefix, bytes).map_err(at)?;
                    serde_json::json!({"action": "unpack", "path": prefix, "files": files, "dirs": dirs})
                }
                Step::Mkdir { rel } => {
                    std::fs::create_dir_all(self.base.join(rel))
                        .map_err(|e| at(format!("mkdir {}: {e}", rel.display())))?;
                    serde_json::json!({"action": "mkdir", "path": rel})
                }
                Step::Remove { rel } => {
                    let removed = remove(&self.base.join(rel))
                        .map_err(|e| at(format!("remove {}: {e}", rel.display())))?;
                    serde_json::json!({"action": "remove", "path": rel, "removed": removed})
                }
            };
            done(record);
        }
        Ok(())
    }
}

fn name(action: &Action) -> &'static str {
    match action {
        Action::Write { .. } => "write",
        Action::Unpack { .. } => "unpack",
        Action::Mkdir { .. } => "mkdir",
        Action::Remove { .. } => "remove",
    }
}

/// A file may go where nothing is, or replace a file or a link; not a directory.
fn check_file_destination(base: &Path, rel: &Path) -> Result<(), String> {
    paths::no_symlink_parents(base, rel)?;
    match std::fs::symlink_metadata(base.join(rel)) {
        Ok(m) if m.is_dir() => {
            Err(format!("{} is a directory; a file cannot replace it", rel.display()))
        }
        _ => Ok(()),
    }
}

/// The entries of a tar.gz: checked relative paths, and whether each is a
/// directory. Anything but files and directories (links, devices) is refused.
fn archive_entries(bytes: &[u8]) -> Result<Vec<(PathBuf, bool)>, String> {
    let mut archive = tar::Archive::new(GzDecoder::new(bytes));
    let mut out = Vec::new();
    let entries = archive.entries().map_err(|e| format!("not a tar.gz archive: {e}"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("unreadable archive entry: {e}"))?;
        let raw = entry
            .path()
            .map_err(|e| format!("archive entry with a bad path: {e}"))?
            .to_string_lossy()
            .into_owned();
        let kind = entry.header().entry_type();
        let is_dir = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => false,
            tar::EntryType::Directory => true,
            other => {
                return Err(format!(
                    "archive entry {raw:?} is a {} (only files and directories are unpacked)",
                    kind_name(other)
                ));
            }
        };
        if is_dir && matches!(raw.as_str(), "." | "./") {
            continue;
        }
        let rel = paths::relative(&raw).map_err(|e| format!("archive entry: {e}"))?;
        out.push((rel, is_dir));
    }
    Ok(out)
}

fn kind_name(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Symlink => "symbolic link",
        tar::EntryType::Link => "hard link",
        tar::EntryType::Char | tar::EntryType::Block => "device",
        tar::EntryType::Fifo => "FIFO",
        _ => "special entry",
    }
}

/// Unpack a checked archive: directories created, files written atomically.
fn unpack(base: &Path, prefix: &Path, bytes: &[u8]) -> Result<(usize, usize), String> {
    let mut archive = tar::Archive::new(GzDecoder::new(bytes));
    let (mut files, mut dirs) = (0, 0);
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let raw = entry.path().map_err(|e| e.to_string())?.to_string_lossy().into_owned();
        let is_dir = entry.header().entry_type() == tar::EntryType::Directory;
        if is_dir && matches!(raw.as_str(), "." | "./") {
            continue;
        }
        // Checked in `Plan::check`; checked again rather than trusted.
        let rel = prefix.join(paths::relative(&raw)?);
        if is_dir {
            std::fs::create_dir_all(base.join(&rel))
                .map_err(|e| format!("mkdir {}: {e}", rel.display()))?;
            dirs += 1;
        } else {
            write_atomic(base, &rel, &mut entry)?;
            files += 1;
        }
    }
    Ok((files, dirs))
}

/// Temporary names are unique within the execution.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Write `rel` under `base` from `reader`: temporary file beside it, synced,
/// renamed over the destination. Returns the bytes written.
fn write_atomic(base: &Path, rel: &Path, reader: &mut dyn Read) -> Result<u64, String> {
    let dest = base.join(rel);
    let file_name = dest
        .file_name()
        .ok_or_else(|| format!("{} has no file name", rel.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = dest.parent().unwrap_or(base);
    std::fs::create_dir_all(parent).map_err(|e| format!("mkdir for {}: {e}", rel.display()))?;
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp = parent.join(format!(".{file_name}.deploy-{n}.tmp"));
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        let written = std::io::copy(reader, &mut file)?;
        file.sync_all()?;
        std::fs::rename(&temp, &dest)?;
        Ok::<_, std::io::Error>(written)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        format!("write {}: {e}", rel.display())
    })
}

/// Remove a file, link or tree; `false` when there was nothing.
fn remove(path: &Path) -> std::io::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).map(|()| true),
        Ok(_) => std::fs::remove_file(path).map(|()| true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn tar_gz(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
        for (path, content) in entries {
            let mut header = tar::Header::new_gnu();
            match content {
                Some(bytes) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(bytes.len() as u64);
                    header.set_mode(0o644);
                    // `set_path` refuses `..`; write the raw name like a hostile tool would.
                    header.as_gnu_mut().unwrap().name[..path.len()]
                        .copy_from_slice(path.as_bytes());
                    header.set_cksum();
                    builder.append(&header, *bytes).unwrap();
                }
                None => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    header.set_mode(0o755);
                    header.as_gnu_mut().unwrap().name[..path.len()]
                        .copy_from_slice(path.as_bytes());
                    header.set_cksum();
                    builder.append(&header, &[][..]).unwrap();
                }
            }
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("deploy-plan-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn parse(actions: &str) -> Vec<Action> {
        serde_json::from_str(actions).unwrap()
    }

    #[test]
    fn a_plan_applies_every_kind_of_action() {
        let dir = temp_dir("apply");
        std::fs::write(dir.join("old.txt"), "old").unwrap();
        let archive = tar_gz(&[
            ("app/", None),
            ("app/bin.sh", Some(b"#!/bin/sh\n")),
            ("README", Some(b"hi")),
        ]);
        let actions = parse(
            r#"[
            {"action": "mkdir", "path": "var/log"},
            {"action": "write", "path": "etc/app.conf", "content": "x=1\n"},
            {"action": "unpack", "path": "opt"},
            {"action": "remove", "path": "old.txt"},
            {"action": "remove", "path": "never-there"}
        ]"#,
        );
        let plan = Plan::check(&dir, &actions, Some(&archive)).unwrap();
        let mut records = Vec::new();
        plan.apply(Some(&archive), |r| records.push(r)).unwrap();
        assert!(dir.join("var/log").is_dir());
        assert_eq!(std::fs::read_to_string(dir.join("etc/app.conf")).unwrap(), "x=1\n");
        assert_eq!(std::fs::read(dir.join("opt/app/bin.sh")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(std::fs::read(dir.join("opt/README")).unwrap(), b"hi");
        assert!(!dir.join("old.txt").exists());
        assert_eq!(records[2]["files"], 2);
        assert_eq!(records[4]["removed"], false);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_escaping_archive_entry_fails_the_whole_plan_before_any_write() {
        let dir = temp_dir("escape");
        let archive = tar_gz(&[("ok.txt", Some(b"fine")), ("../evil.txt", Some(b"bad"))]);
        let actions = parse(r#"[{"action": "mkdir", "path": "first"}, {"action": "unpack"}]"#);
        let err = Plan::check(&dir, &actions, Some(&archive)).unwrap_err();
        assert!(err.contains("escapes"), "{err}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn links_in_archives_and_escaping_action_paths_are_refused() {
        let dir = temp_dir("links");
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder.append_link(&mut header, "etc", "/etc").unwrap();
        let archive = builder.into_inner().unwrap().finish().unwrap();
        let err =
            Plan::check(&dir, &parse(r#"[{"action": "unpack"}]"#), Some(&archive)).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        for bad in [
            r#"[{"action": "write", "path": "/etc/x", "content": ""}]"#,
            r#"[{"action": "remove", "path": ".."}]"#,
            r#"[{"action": "mkdir", "path": "a/../../b"}]"#,
        ] {
            assert!(Plan::check(&dir, &parse(bad), None).is_err(), "{bad}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
