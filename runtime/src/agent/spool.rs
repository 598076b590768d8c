//! [`Spool`]: results not yet acknowledged by the scheduler.
//!
//! Every result is put in the spool *before* it is sent and taken out only once
//! the scheduler acknowledged it (or refused it for good), so a result survives
//! a scheduler that is away, a lost answer, and a restart of the agent: at the
//! next start the agent sends what the spool still holds. Sending twice is
//! harmless: the scheduler answers a repeated result as a duplicate.
//!
//! On disk, one JSON file per result, `<part>-<attempt>.json`, written to a
//! temporary name, synced, then renamed, so a crash leaves either the whole
//! result or nothing. The daemon's own agent uses an in-memory spool: its
//! "scheduler" is in the same process and dies with it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::protocol::Submission;

/// Where undelivered results wait.
#[derive(Debug)]
pub struct Spool {
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Dir(PathBuf),
    Memory(Mutex<BTreeMap<(i64, u32), Submission>>),
}

/// A spool that cannot be read or written: the agent must not take work it
/// could lose.
#[derive(Debug, thiserror::Error)]
#[error("result spool {path}: {source}")]
pub struct SpoolError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl Spool {
    /// A spool in `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<Self, SpoolError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| SpoolError { path: dir.to_path_buf(), source })?;
        Ok(Spool { backend: Backend::Dir(dir.to_path_buf()) })
    }

    /// A spool in memory (the daemon's in-process agent).
    pub fn in_memory() -> Self {
        Spool { backend: Backend::Memory(Mutex::new(BTreeMap::new())) }
    }

    /// Keep `result` until [`Spool::remove`]. Durable on disk when this returns.
    ///
    /// The two fsyncs (the file, then the directory after the rename) run on
    /// tokio's blocking pool: on a worker thread they would stall every other
    /// task of the agent (its other slots, its heartbeats) for their duration.
    pub async fn put(&self, result: &Submission) -> Result<(), SpoolError> {
        match &self.backend {
            Backend::Memory(map) => {
                map.lock()
                    .expect("spool lock")
                    .insert((result.part_id, result.attempt), result.clone());
                Ok(())
            }
            Backend::Dir(dir) => {
                let (dir, result) = (dir.clone(), result.clone());
                let path = dir.join(file_name(result.part_id, result.attempt));
                let written = path.clone();
                tokio::task::spawn_blocking(move || write_durably(&dir, &written, &result))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                    .map_err(|source| SpoolError { path, source })
            }
        }
    }

    /// Forget a delivered result.
    pub fn remove(&self, part_id: i64, attempt: u32) -> Result<(), SpoolError> {
        match &self.backend {
            Backend::Memory(map) => {
                map.lock().expect("spool lock").remove(&(part_id, attempt));
                Ok(())
            }
            Backend::Dir(dir) => {
                let path = dir.join(file_name(part_id, attempt));
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(source) => Err(SpoolError { path, source }),
                }
            }
        }
    }

    /// Every result waiting, oldest part first. A file that cannot be parsed
    /// is moved aside (`.bad`) and logged, never silently dropped.
    pub fn pending(&self) -> Result<Vec<Submission>, SpoolError> {
        match &self.backend {
            Backend::Memory(map) => Ok(map.lock().expect("spool lock").values().cloned().collect()),
            Backend::Dir(dir) => {
                let err = |source| SpoolError { path: dir.clone(), source };
                let mut found = Vec::new();
                for entry in std::fs::read_dir(dir).map_err(err)? {
                    let path = entry.map_err(err)?.path();
                    if path.extension().is_none_or(|e| e != "json") {
                        continue;
                    }
                    let bytes = std::fs::read(&path)
                        .map_err(|source| SpoolError { path: path.clone(), source })?;
                    match serde_json::from_slice::<Submission>(&bytes) {
                        Ok(s) => found.push(s),
                        Err(e) => {
                            tracing::error!(path = %path.display(), error = %e, "unreadable spooled result; moved aside");
                            let _ = std::fs::rename(&path, path.with_extension("bad"));
                        }
                    }
                }
                found.sort_by_key(|s| (s.part_id, s.attempt));
                Ok(found)
            }
        }
    }
}

fn file_name(part_id: i64, attempt: u32) -> String {
    format!("{part_id}-{attempt}.json")
}

/// Write `result` to `path` in `dir`: a temporary file, synced, renamed, and
/// the rename synced.
fn write_durably(dir: &Path, path: &Path, result: &Submission) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    let bytes = serde_json::to_vec(result).expect("a submission serializes");
    tmp.write_all(&bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Make a rename in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::ResultStatus;

    fn result(part_id: i64, attempt: u32) -> Submission {
        Submission {
            part_id,
            attempt,
            status: ResultStatus::Finished,
            output: Some(serde_json::json!({"part": part_id})),
            error: None,
            emitted: vec![serde_json::json!({"found": true})],
            logs: Vec::new(),
            started_at: None,
            duration_ms: 3,
        }
    }

    #[tokio::test]
    async fn a_disk_spool_survives_reopening_and_forgets_delivered_results() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.put(&result(7, 2)).await.unwrap();
        spool.put(&result(3, 1)).await.unwrap();
        drop(spool);
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.pending().unwrap(), vec![result(3, 1), result(7, 2)]);
        spool.remove(3, 1).unwrap();
        spool.remove(3, 1).unwrap();
        assert_eq!(spool.pending().unwrap(), vec![result(7, 2)]);
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1-1.json"), b"{not json").unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert!(spool.pending().unwrap().is_empty());
        assert!(dir.path().join("1-1.bad").exists());
    }

    #[tokio::test]
    async fn a_memory_spool_keeps_one_entry_per_attempt() {
        let spool = Spool::in_memory();
        spool.put(&result(1, 1)).await.unwrap();
        spool.put(&result(1, 1)).await.unwrap();
        spool.put(&result(1, 2)).await.unwrap();
        assert_eq!(spool.pending().unwrap().len(), 2);
        spool.remove(1, 1).unwrap();
        assert_eq!(spool.pending().unwrap(), vec![result(1, 2)]);
    }
}
