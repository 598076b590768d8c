//! The reads both stores answer with the same SQL, written once.
//!
//! Both backends keep the same tables and encodings, and both read through
//! sqlx, whose SQLite driver takes PostgreSQL's `$n` parameters; so each
//! read below is one statement for both dialects. [`portable_reads!`] is
//! instantiated by each backend's `reads` module for its pool type, beside
//! its `rows` module (column lists and row mappings); what only one dialect
//! can say stays in that backend. A macro for the reason `rows` gives: a
//! generic function would need a decode bound per column type.

/// Define the store's reads for the pool type `$pool`; `rows` must be in
/// scope (the backend's column lists, `RUN_SELECT`, and row mappers).
macro_rules! portable_reads {
    ($pool:ty) => {
        use chrono::{DateTime, Utc};

        use crate::scheduler::{Agent, Event, Part, Run, StoredResult, Task};
        use crate::store::{PluginRecord, StoreError, StoreResult, ms};

        /// Every plugin, newest first.
        pub async fn plugins(pool: &$pool) -> StoreResult<Vec<PluginRecord>> {
            let sql = format!(
                "SELECT {} FROM plugins ORDER BY id DESC",
                rows::PLUGIN_COLUMNS
            );
            let found = sqlx::query(&sql).fetch_all(pool).await?;
            found.iter().map(rows::plugin).collect()
        }

        /// The plugin of this sha256.
        pub async fn plugin(pool: &$pool, sha256: &str) -> StoreResult<Option<PluginRecord>> {
            let sql = format!(
                "SELECT {} FROM plugins WHERE sha256 = $1",
                rows::PLUGIN_COLUMNS
            );
            let found = sqlx::query(&sql).bind(sha256).fetch_optional(pool).await?;
            found.as_ref().map(rows::plugin).transpose()
        }

        /// The plugin of this name uploaded last.
        pub async fn latest_plugin(pool: &$pool, name: &str) -> StoreResult<Option<PluginRecord>> {
            let sql = format!(
                "SELECT {} FROM plugins WHERE name = $1 ORDER BY id DESC LIMIT 1",
                rows::PLUGIN_COLUMNS
            );
            let found = sqlx::query(&sql).bind(name).fetch_optional(pool).await?;
            found.as_ref().map(rows::plugin).transpose()
        }

        /// A plugin module's bytes.
        pub async fn module(pool: &$pool, sha256: &str) -> StoreResult<Option<Vec<u8>>> {
            let sql = "SELECT bytes FROM modules WHERE sha256 = $1";
            Ok(sqlx::query_scalar(sql)
                .bind(sha256)
                .fetch_optional(pool)
                .await?)
        }

        /// Whether a plugin module is stored.
        pub async fn has_module(pool: &$pool, sha256: &str) -> StoreResult<bool> {
            let sql = "SELECT EXISTS (SELECT 1 FROM modules WHERE sha256 = $1)";
            Ok(sqlx::query_scalar(sql).bind(sha256).fetch_one(pool).await?)
        }

        /// The agent holding this token (by its hash).
        pub async fn agent_by_token(pool: &$pool, token_hash: &str) -> StoreResult<Option<Agent>> {
            let sql = format!(
                "SELECT {} FROM agents WHERE token_hash = $1",
                rows::AGENT_COLUMNS
            );
            let found = sqlx::query(&sql)
                .bind(token_hash)
                .fetch_optional(pool)
                .await?;
            found.as_ref().map(rows::agent).transpose()
        }

        /// Every agent, by name.
        pub async fn agents(pool: &$pool) -> StoreResult<Vec<Agent>> {
            let sql = format!("SELECT {} FROM agents ORDER BY name", rows::AGENT_COLUMNS);
            let found = sqlx::query(&sql).fetch_all(pool).await?;
            found.iter().map(rows::agent).collect()
        }

        /// Task `id`.
        pub async fn task(pool: &$pool, id: i64) -> StoreResult<Option<Task>> {
            let sql = format!("SELECT {} FROM tasks WHERE id = $1", rows::TASK_COLUMNS);
            let found = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
            found.as_ref().map(rows::task).transpose()
        }

        /// The task of this name.
        pub async fn task_by_name(pool: &$pool, name: &str) -> StoreResult<Option<Task>> {
            let sql = format!("SELECT {} FROM tasks WHERE name = $1", rows::TASK_COLUMNS);
            let found = sqlx::query(&sql).bind(name).fetch_optional(pool).await?;
            found.as_ref().map(rows::task).transpose()
        }

        /// Every task, oldest first.
        pub async fn tasks(pool: &$pool) -> StoreResult<Vec<Task>> {
            let sql = format!("SELECT {} FROM tasks ORDER BY id", rows::TASK_COLUMNS);
            let found = sqlx::query(&sql).fetch_all(pool).await?;
            found.iter().map(rows::task).collect()
        }

        /// Task `id`'s secrets.
        pub async fn task_secrets(pool: &$pool, id: i64) -> StoreResult<serde_json::Value> {
            let sql = "SELECT secrets FROM tasks WHERE id = $1";
            let text: Option<String> = sqlx::query_scalar(sql)
                .bind(id)
                .fetch_optional(pool)
                .await?;
            let text = text.ok_or_else(|| StoreError::NotFound {
                what: "task",
                id: id.to_string(),
            })?;
            serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("tasks.secrets: {e}")))
        }

        /// The tasks whose next run is due at `now`, most overdue first.
        pub async fn due_tasks(pool: &$pool, now: DateTime<Utc>) -> StoreResult<Vec<Task>> {
            let sql = format!(
                "SELECT {} FROM tasks WHERE next_run_at IS NOT NULL AND next_run_at <= $1 \
                 ORDER BY next_run_at, id",
                rows::TASK_COLUMNS
            );
            let found = sqlx::query(&sql).bind(ms(now)).fetch_all(pool).await?;
            found.iter().map(rows::task).collect()
        }

        /// At most `limit` events after event `after`, in order.
        pub async fn events(pool: &$pool, after: i64, limit: u32) -> StoreResult<Vec<Event>> {
            let sql = format!(
                "SELECT {} FROM events WHERE id > $1 ORDER BY id LIMIT $2",
                rows::EVENT_COLUMNS
            );
            let found = sqlx::query(&sql)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            found.iter().map(rows::event).collect()
        }

        /// Run `id`.
        pub async fn run(pool: &$pool, id: i64) -> StoreResult<Option<Run>> {
            let sql = format!("{} WHERE r.id = $1", rows::RUN_SELECT);
            let found = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
            found.as_ref().map(rows::run).transpose()
        }

        /// The runs of task `task_id` (every run without one), newest first.
        pub async fn runs(pool: &$pool, task_id: Option<i64>) -> StoreResult<Vec<Run>> {
            let sql = format!(
                "{} WHERE CAST($1 AS BIGINT) IS NULL OR r.task_id = $1 ORDER BY r.id DESC",
                rows::RUN_SELECT
            );
            let found = sqlx::query(&sql).bind(task_id).fetch_all(pool).await?;
            found.iter().map(rows::run).collect()
        }

        /// Task `task_id`'s runs that have not ended, oldest first.
        pub async fn active_runs(pool: &$pool, task_id: i64) -> StoreResult<Vec<Run>> {
            let sql = format!(
                "{} WHERE r.task_id = $1 \
                 AND r.state NOT IN ('finished', 'failed', 'canceled') ORDER BY r.id",
                rows::RUN_SELECT
            );
            let found = sqlx::query(&sql).bind(task_id).fetch_all(pool).await?;
            found.iter().map(rows::run).collect()
        }

        /// The runs waiting for their split, oldest first.
        pub async fn created_runs(pool: &$pool) -> StoreResult<Vec<Run>> {
            let sql = format!(
                "{} WHERE r.state = 'created' ORDER BY r.id",
                rows::RUN_SELECT
            );
            let found = sqlx::query(&sql).fetch_all(pool).await?;
            found.iter().map(rows::run).collect()
        }

        /// Run `run_id`'s snapshot of its task's secrets.
        pub async fn run_secrets(pool: &$pool, run_id: i64) -> StoreResult<serde_json::Value> {
            let sql = "SELECT secrets FROM runs WHERE id = $1";
            let text: Option<String> = sqlx::query_scalar(sql)
                .bind(run_id)
                .fetch_optional(pool)
                .await?;
            let text = text.ok_or_else(|| StoreError::NotFound {
                what: "run",
                id: run_id.to_string(),
            })?;
            serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("runs.secrets: {e}")))
        }

        /// Run `run_id`'s parts, in split order.
        pub async fn parts(pool: &$pool, run_id: i64) -> StoreResult<Vec<Part>> {
            let sql = format!(
                "SELECT {} FROM parts WHERE run_id = $1 ORDER BY seq",
                rows::PART_COLUMNS
            );
            let found = sqlx::query(&sql).bind(run_id).fetch_all(pool).await?;
            found.iter().map(rows::part).collect()
        }

        /// Part `part_id`.
        pub async fn part(pool: &$pool, part_id: i64) -> StoreResult<Option<Part>> {
            let sql = format!("SELECT {} FROM parts WHERE id = $1", rows::PART_COLUMNS);
            let found = sqlx::query(&sql).bind(part_id).fetch_optional(pool).await?;
            found.as_ref().map(rows::part).transpose()
        }

        /// Run `run_id`'s results, by part and attempt.
        pub async fn results(pool: &$pool, run_id: i64) -> StoreResult<Vec<StoredResult>> {
            let sql = format!(
                "SELECT {} FROM results WHERE run_id = $1 ORDER BY part_id, attempt",
                rows::RESULT_COLUMNS
            );
            let found = sqlx::query(&sql).bind(run_id).fetch_all(pool).await?;
            found.iter().map(rows::result).collect()
        }
    };
}

pub(crate) use portable_reads;
