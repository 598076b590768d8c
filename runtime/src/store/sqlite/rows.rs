//! Turning SQLite rows into the scheduler's types: the column lists of this
//! backend's queries, and the shared mapping ([`crate::store::rows`]) for
//! `SqliteRow`.

use sqlx::sqlite::SqliteRow;

/// Columns of [`plugin`].
pub const PLUGIN_COLUMNS: &str = "sha256, name, version, manifest, size, uploaded_at";

/// Columns of [`agent`].
pub const AGENT_COLUMNS: &str =
    "id, name, networks, plugins, pooled_slots, dedicated_slots, last_seen";

/// Columns of [`task`].
pub const TASK_COLUMNS: &str =
    "id, spec, secrets <> '{}' AS has_secrets, next_run_at, created_at, updated_at";

/// The query of [`run`] up to its `WHERE` (runs are `r`): the part counters
/// are the run's own columns.
pub const RUN_SELECT: &str = "SELECT r.id, r.task_id, r.spec, r.plugin_sha256, r.state, r.cause, \
     r.rerun_of, r.error, r.created_at, r.ended_at, r.n_waiting, r.n_running, r.n_suspended, \
     r.n_finished, r.n_failed, r.n_canceled FROM runs r";

/// Columns of [`part`].
pub const PART_COLUMNS: &str = "id, run_id, seq, label, targets, payload, state, attempt, owner, \
     pinned_agent, lease_expires_at, available_at, progress_done, progress_total, error";

/// Columns of [`result`].
pub const RESULT_COLUMNS: &str = "part_id, attempt, run_id, agent, status, output, error, \
     emitted, logs, started_at, duration_ms, applied, received_at";

/// Columns of [`event`].
pub const EVENT_COLUMNS: &str = "id, at, entity, entity_id, kind, from_state, to_state, detail";

crate::store::rows::row_mappers!(SqliteRow);
