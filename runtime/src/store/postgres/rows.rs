//! Turning PostgreSQL rows into the scheduler's types: this backend's query of
//! runs (which counts their parts from `parts`), and the shared mapping and
//! column lists ([`crate::store::rows`]) for `PgRow`.

use sqlx::postgres::PgRow;

/// The query of [`run`] up to its `WHERE` (runs are `r`): the part counters
/// are counted from `parts`, which keep no counters on the run's row (see
/// `runs` in the migration).
pub const RUN_SELECT: &str = "SELECT r.id, r.task_id, r.spec, r.plugin_sha256, r.state, r.cause, \
     r.rerun_of, r.caused_by, r.error, r.created_at, r.ended_at, c.* FROM runs r CROSS JOIN LATERAL (SELECT \
     count(*) FILTER (WHERE p.state IN ('created', 'waiting')) AS n_waiting, \
     count(*) FILTER (WHERE p.state = 'running') AS n_running, \
     count(*) FILTER (WHERE p.state = 'suspended') AS n_suspended, \
     count(*) FILTER (WHERE p.state = 'finished') AS n_finished, \
     count(*) FILTER (WHERE p.state = 'failed') AS n_failed, \
     count(*) FILTER (WHERE p.state = 'canceled') AS n_canceled \
     FROM parts p WHERE p.run_id = r.id) c";

crate::store::rows::row_mappers!(PgRow);
