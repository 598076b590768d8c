//! Turning SQLite rows into the scheduler's types: this backend's query of
//! runs, and the shared mapping and column lists ([`crate::store::rows`]) for
//! `SqliteRow`.

use sqlx::sqlite::SqliteRow;

/// The query of [`run`] up to its `WHERE` (runs are `r`): the part counters
/// are the run's own columns.
pub const RUN_SELECT: &str = "SELECT r.id, r.task_id, r.spec, r.plugin_sha256, r.state, r.cause, \
     r.rerun_of, r.caused_by, r.error, r.created_at, r.ended_at, r.n_waiting, r.n_running, r.n_suspended, \
     r.n_finished, r.n_failed, r.n_canceled FROM runs r";

crate::store::rows::row_mappers!(SqliteRow);
