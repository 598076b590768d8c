//! Retiring a plugin version: the SQL, written once for both stores (`$n`
//! placeholders, read by rusqlite and sqlx alike), and the rule of when it is
//! refused. A retired version is marked, not deleted: its runs keep their
//! module, and its name and version stay taken (versions are immutable).
//! Uploading the same bytes again puts it back in service.

use super::StoreError;

/// Plugin `$1` version `$2`: its id, sha256 and whether it is retired.
pub const FIND_VERSION: &str =
    "SELECT id, sha256, retired_at IS NOT NULL FROM plugins WHERE name = $1 AND version = $2";

/// A run of module `$1` that has not ended: its id.
pub const LIVE_RUN: &str = "SELECT id FROM runs WHERE plugin_sha256 = $1 \
     AND state IN ('created', 'waiting', 'running', 'suspended') LIMIT 1";

/// Whether another version of plugin `$1` than module `$2` is in service.
pub const OTHER_VERSION_IN_SERVICE: &str = "SELECT EXISTS (SELECT 1 FROM plugins \
     WHERE name = $1 AND sha256 <> $2 AND retired_at IS NULL)";

/// Every task's name and definition (JSON text): which name plugin `$1`.
pub const TASK_SPECS: &str = "SELECT name, spec FROM tasks";

/// Mark module `$2` retired at `$1`.
pub const RETIRE: &str = "UPDATE plugins SET retired_at = $1 WHERE sha256 = $2";

/// Put module `$1` back in service (uploaded again).
pub const RESTORE: &str =
    "UPDATE plugins SET retired_at = NULL WHERE sha256 = $1 AND retired_at IS NOT NULL";

/// The detail of a plugin version's events (`uploaded`, `retired`, `restored`).
pub fn version_detail(name: &str, version: &str, sha256: &str) -> serde_json::Value {
    serde_json::json!({ "name": name, "version": version, "sha256": sha256 })
}

/// What the store found of a version about to be retired.
#[derive(Debug)]
pub struct Usage<'a> {
    /// The plugin's name.
    pub name: &'a str,
    /// The version.
    pub version: &'a str,
    /// A run of it that has not ended.
    pub live_run: Option<i64>,
    /// Whether another version of the plugin stays in service.
    pub other_version: bool,
    /// Every task's name and definition (JSON text).
    pub tasks: &'a [(String, String)],
}

/// Why the version may not be retired, or `Ok` when it may: a live run
/// executes it, or a task names the plugin and no other version would
/// serve it (retiring the newest of several rolls tasks back to the next).
pub fn check(usage: &Usage<'_>) -> Result<(), StoreError> {
    let Usage { name, version, .. } = usage;
    if let Some(run) = usage.live_run {
        return Err(StoreError::Invalid(format!(
            "plugin {name} {version} is used by run {run}, which has not ended: \
             cancel the run or wait for it"
        )));
    }
    if usage.other_version {
        return Ok(());
    }
    let naming = usage.tasks.iter().find(|(_, spec)| {
        serde_json::from_str::<serde_json::Value>(spec)
            .is_ok_and(|spec| spec["plugin"].as_str() == Some(name))
    });
    match naming {
        Some((task, _)) => Err(StoreError::Invalid(format!(
            "plugin {name} {version} is the only version task {task:?} can run: \
             upload another version first, or change or delete the task"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage<'a>(tasks: &'a [(String, String)]) -> Usage<'a> {
        Usage { name: "hello", version: "1.0.0", live_run: None, other_version: false, tasks }
    }

    #[test]
    fn a_version_in_use_is_not_retired() {
        let tasks = [("greet".to_string(), r#"{"plugin": "hello"}"#.to_string())];
        let err = check(&Usage { live_run: Some(7), ..usage(&[]) }).unwrap_err();
        assert!(err.to_string().contains("run 7"), "{err}");
        let err = check(&usage(&tasks)).unwrap_err();
        assert!(err.to_string().contains("\"greet\""), "{err}");
        // Another version serves the task: a roll-back.
        assert!(check(&Usage { other_version: true, ..usage(&tasks) }).is_ok());
        let others = [("scan".to_string(), r#"{"plugin": "netscan"}"#.to_string())];
        assert!(check(&usage(&others)).is_ok());
    }
}
