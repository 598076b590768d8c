//! The backends of the scheduler's durable state: [`SqliteStore`] (embedded,
//! the default) and [`PostgresStore`] (several daemons on one database), both
//! implementing the [`Store`] trait, and [`open`], which picks one from the
//! daemon's configuration.
//!
//! The trait, its errors and the plain types it names are the scheduler's own
//! port ([`crate::scheduler::store`], with the promises every backend keeps);
//! they are re-exported here, where the backends and their callers name them.
//! SQL that only one database understands stays in that backend's module.

mod inventory_reads;
mod inventory_sql;
mod monitor_sql;
mod outbox_sql;
mod outbox_store;
pub mod postgres;
mod reads;
pub mod retire;
mod rows;
pub mod sqlite;

use chrono::{DateTime, Utc};

pub(crate) use crate::scheduler::store::lease_after_result;
pub use crate::scheduler::store::{
    AgentChanges, PluginRecord, Recurrence, Store, StoreError, StoreReads, StoreResult, TaskWrite,
};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// A store opened by [`open`].
#[derive(Clone)]
pub struct OpenedStore {
    /// The store.
    pub store: std::sync::Arc<dyn Store>,
    /// The same store's inventory.
    pub inventory: std::sync::Arc<dyn crate::inventory::InventoryStore>,
    /// The same store's webhook outbox.
    pub outbox: std::sync::Arc<dyn crate::notify::OutboxStore>,
    /// The same store when it is PostgreSQL: the daemon listens for other
    /// daemons' work announcements on it.
    pub postgres: Option<PostgresStore>,
}

/// Open the store at `location`: a `postgres://` (or `postgresql://`) URL, or
/// the embedded SQLite file in `data_dir` when `None`.
pub async fn open(location: Option<&str>, data_dir: &std::path::Path) -> StoreResult<OpenedStore> {
    match location {
        None => {
            let store = std::sync::Arc::new(SqliteStore::open_in(data_dir).await?);
            Ok(OpenedStore {
                store: store.clone(),
                inventory: store.clone(),
                outbox: store,
                postgres: None,
            })
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let store = PostgresStore::connect(url).await?;
            let shared = std::sync::Arc::new(store.clone());
            Ok(OpenedStore {
                store: shared.clone(),
                inventory: shared.clone(),
                outbox: shared,
                postgres: Some(store),
            })
        }
        Some(other) => Err(StoreError::Invalid(format!(
            "database {other:?}: expected a postgres:// URL (SQLite is the default with no URL)"
        ))),
    }
}

/// Milliseconds since the epoch: how every backend stores times.
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The refusal of a second chained run of one task for one upstream run
/// (another daemon's sweep started it first).
pub(crate) fn chained_twice(run: &crate::scheduler::NewRun) -> StoreError {
    StoreError::Conflict {
        what: "chained run",
        name: format!("of task {} after run {}", run.task_id, run.caused_by.unwrap_or_default()),
    }
}

/// The refusal of a plugin version stored already with the module `sha256`.
pub(crate) fn version_taken(plugin: &PluginRecord, sha256: String) -> StoreError {
    StoreError::VersionTaken { name: plugin.name.clone(), version: plugin.version.clone(), sha256 }
}

/// The inverse of [`ms`].
pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_chooses_the_store_from_the_location() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = open(None, dir.path()).await.unwrap();
        assert!(sqlite.postgres.is_none());
        assert!(dir.path().join(sqlite::DATABASE_FILE).exists());
        let err = open(Some("mysql://db/jobstack"), dir.path()).await.err().unwrap();
        assert!(err.to_string().contains("expected a postgres:// URL"), "{err}");
    }
}
