//! Turning PostgreSQL rows into the scheduler's types: the column lists of this
//! backend's queries (runs count their parts from `parts`), and the shared
//! mapping ([`crate::store::rows`]) for `PgRow`.

use sqlx::postgres::PgRow;

/// Columns of [`plugin`].
pub const PLUGIN_COLUMNS: &str = "sha256, name, version, manifest, size, uploaded_at";

/// Columns of [`agent`].
pub const AGENT_COLUMNS: &str =
    "id, name, networks, plugins, pooled_slots, dedicated_slots, last_seen";

/// Columns of [`task`].
pub const TASK_COLUMNS: &str =
    "id, spec, secrets <> '{}' AS has_secrets, next_run_at, created_at, updated_at";

/// The query of [`run`] up to its `WHERE` (runs are `r`): the part counters
/// are counted from `parts`, which keep no counters on the run's row (see
/// `runs` in the migration).
pub const RUN_SELECT: &str = "SELECT r.id, r.task_id, r.spec, r.plugin_sha256, r.state, r.cause, \
     r.rerun_of, r.error, r.created_at, r.ended_at, c.* FROM runs r CROSS JOIN LATERAL (SELECT \
     count(*) FILTER (WHERE p.state IN ('created', 'waiting')) AS n_waiting, \
     count(*) FILTER (WHERE p.state = 'running') AS n_running, \
     count(*) FILTER (WHERE p.state = 'suspended') AS n_suspended, \
     count(*) FILTER (WHERE p.state = 'finished') AS n_finished, \
     count(*) FILTER (WHERE p.state = 'failed') AS n_failed, \
     count(*) FILTER (WHERE p.state = 'canceled') AS n_canceled \
     FROM parts p WHERE p.run_id = r.id) c";

/// Columns of [`part`].
pub const PART_COLUMNS: &str = "id, run_id, seq, label, targets, payload, state, attempt, owner, \
     pinned_agent, lease_expires_at, available_at, progress_done, progress_total, error";

/// Columns of [`result`].
pub const RESULT_COLUMNS: &str = "part_id, attempt, run_id, agent, status, output, error, \
     emitted, logs, started_at, duration_ms, applied, received_at";

/// Columns of [`event`].
pub const EVENT_COLUMNS: &str = "id, at, entity, entity_id, kind, from_state, to_state, detail";

crate::store::rows::row_mappers!(PgRow);
