//! The reads both stores answer with the same SQL, written once.
//!
//! Both backends keep the same tables and encodings, and both read through
//! sqlx, whose SQLite driver takes PostgreSQL's `$n` parameters; so each
//! read below is one statement for both dialects. [`portable_reads!`] is
//! instantiated by each backend's `reads` module for its store, beside its
//! `rows` module (column lists and row mappings); what only one dialect can
//! say stays in that backend. A macro for the reason `rows` gives: a generic
//! function would need a decode bound per column type.

/// Implement [`StoreReads`](crate::store::StoreReads) for `$store`, reading
/// through its pool field `$pool`; `rows` must be in scope (the backend's
/// column lists, `RUN_SELECT`, and row mappers).
macro_rules! portable_reads {
    ($store:ty, $pool:ident) => {
        use chrono::{DateTime, Utc};

        use crate::scheduler::{Agent, Event, Part, Run, State, StoredResult, Task};
        use crate::store::{PluginRecord, StoreError, StoreReads, StoreResult, ms};

        #[async_trait::async_trait]
        impl StoreReads for $store {
            /// Every plugin, newest first.
            async fn plugins(&self) -> StoreResult<Vec<PluginRecord>> {
                let pool = &self.$pool;
                let sql = format!("SELECT {} FROM plugins ORDER BY id DESC", rows::PLUGIN_COLUMNS);
                let found = sqlx::query(&sql).fetch_all(pool).await?;
                found.iter().map(rows::plugin).collect()
            }

            /// The plugin of this sha256.
            async fn plugin(&self, sha256: &str) -> StoreResult<Option<PluginRecord>> {
                let pool = &self.$pool;
                let sql = format!("SELECT {} FROM plugins WHERE sha256 = $1", rows::PLUGIN_COLUMNS);
                let found = sqlx::query(&sql).bind(sha256).fetch_optional(pool).await?;
                found.as_ref().map(rows::plugin).transpose()
            }

            /// The plugin of this name uploaded last and not retired.
            async fn latest_plugin(&self, name: &str) -> StoreResult<Option<PluginRecord>> {
                let pool = &self.$pool;
                let sql = format!(
                    "SELECT {} FROM plugins WHERE name = $1 AND retired_at IS NULL \
                     ORDER BY id DESC LIMIT 1",
                    rows::PLUGIN_COLUMNS
                );
                let found = sqlx::query(&sql).bind(name).fetch_optional(pool).await?;
                found.as_ref().map(rows::plugin).transpose()
            }

            /// A plugin module's bytes.
            async fn module(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>> {
                let pool = &self.$pool;
                let sql = "SELECT bytes FROM modules WHERE sha256 = $1";
                Ok(sqlx::query_scalar(sql).bind(sha256).fetch_optional(pool).await?)
            }

            /// Whether a plugin module is stored.
            async fn has_module(&self, sha256: &str) -> StoreResult<bool> {
                let pool = &self.$pool;
                let sql = "SELECT EXISTS (SELECT 1 FROM modules WHERE sha256 = $1)";
                Ok(sqlx::query_scalar(sql).bind(sha256).fetch_one(pool).await?)
            }

            /// The agent holding this token (by its hash).
            async fn agent_by_token(&self, token_hash: &str) -> StoreResult<Option<Agent>> {
                let pool = &self.$pool;
                let sql =
                    format!("SELECT {} FROM agents WHERE token_hash = $1", rows::AGENT_COLUMNS);
                let found = sqlx::query(&sql).bind(token_hash).fetch_optional(pool).await?;
                found.as_ref().map(rows::agent).transpose()
            }

            /// Every agent, by name.
            async fn agents(&self) -> StoreResult<Vec<Agent>> {
                let pool = &self.$pool;
                let sql = format!("SELECT {} FROM agents ORDER BY name", rows::AGENT_COLUMNS);
                let found = sqlx::query(&sql).fetch_all(pool).await?;
                found.iter().map(rows::agent).collect()
            }

            /// Task `id`.
            async fn task(&self, id: i64) -> StoreResult<Option<Task>> {
                let pool = &self.$pool;
                let sql = format!("SELECT {} FROM tasks WHERE id = $1", rows::TASK_COLUMNS);
                let found = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
                found.as_ref().map(rows::task).transpose()
            }

            /// The task of this name.
            async fn task_by_name(&self, name: &str) -> StoreResult<Option<Task>> {
                let pool = &self.$pool;
                let sql = format!("SELECT {} FROM tasks WHERE name = $1", rows::TASK_COLUMNS);
                let found = sqlx::query(&sql).bind(name).fetch_optional(pool).await?;
                found.as_ref().map(rows::task).transpose()
            }

            /// Every task, oldest first.
            async fn tasks(&self) -> StoreResult<Vec<Task>> {
                let pool = &self.$pool;
                let sql = format!("SELECT {} FROM tasks ORDER BY id", rows::TASK_COLUMNS);
                let found = sqlx::query(&sql).fetch_all(pool).await?;
                found.iter().map(rows::task).collect()
            }

            /// Task `id`'s secrets.
            async fn task_secrets(&self, id: i64) -> StoreResult<serde_json::Value> {
                let pool = &self.$pool;
                let sql = "SELECT secrets FROM tasks WHERE id = $1";
                let text: Option<String> =
                    sqlx::query_scalar(sql).bind(id).fetch_optional(pool).await?;
                let text =
                    text.ok_or_else(|| StoreError::NotFound { what: "task", id: id.to_string() })?;
                serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("tasks.secrets: {e}")))
            }

            /// The tasks whose next run is due at `now`, most overdue first.
            async fn due_tasks(&self, now: DateTime<Utc>) -> StoreResult<Vec<Task>> {
                let pool = &self.$pool;
                let sql = format!(
                    "SELECT {} FROM tasks WHERE next_run_at IS NOT NULL AND next_run_at <= $1 \
                     ORDER BY next_run_at, id",
                    rows::TASK_COLUMNS
                );
                let found = sqlx::query(&sql).bind(ms(now)).fetch_all(pool).await?;
                found.iter().map(rows::task).collect()
            }

            /// The tasks that follow another.
            async fn followers(&self) -> StoreResult<Vec<Task>> {
                let pool = &self.$pool;
                let sql = format!(
                    "SELECT {} FROM tasks WHERE chained_since IS NOT NULL ORDER BY id",
                    rows::TASK_COLUMNS
                );
                let found = sqlx::query(&sql).fetch_all(pool).await?;
                found.iter().map(rows::task).collect()
            }

            /// Upstream runs that may start a run of `follower`.
            async fn runs_to_chain(
                &self, upstream: i64, follower: i64, states: &[State], since: DateTime<Utc>,
                limit: u32,
            ) -> StoreResult<Vec<Run>> {
                let pool = &self.$pool;
                // Two state slots: a condition names one or two states.
                let first = states.first().map_or("finished", |s| s.as_str());
                let second = states.get(1).map_or(first, |s| s.as_str());
                let sql = format!(
                    "{} WHERE r.task_id = $1 AND r.state IN ($2, $3) AND r.ended_at >= $4 \
                     AND NOT EXISTS (SELECT 1 FROM runs d WHERE d.task_id = $5 \
                       AND d.caused_by = r.id) \
                     AND NOT EXISTS (SELECT 1 FROM results x WHERE x.run_id = r.id \
                       AND x.processing IS NULL AND x.applied AND x.status = 'finished') \
                     ORDER BY r.ended_at, r.id LIMIT $6",
                    rows::RUN_SELECT
                );
                let found = sqlx::query(&sql)
                    .bind(upstream)
                    .bind(first)
                    .bind(second)
                    .bind(ms(since))
                    .bind(follower)
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await?;
                found.iter().map(rows::run).collect()
            }

            /// At most `limit` events after event `after`, in order.
            async fn events(&self, after: i64, limit: u32) -> StoreResult<Vec<Event>> {
                let pool = &self.$pool;
                let sql = format!(
                    "SELECT {} FROM events WHERE id > $1 ORDER BY id LIMIT $2",
                    rows::EVENT_COLUMNS
                );
                let found =
                    sqlx::query(&sql).bind(after).bind(i64::from(limit)).fetch_all(pool).await?;
                found.iter().map(rows::event).collect()
            }

            /// Run `id`.
            async fn run(&self, id: i64) -> StoreResult<Option<Run>> {
                let pool = &self.$pool;
                let sql = format!("{} WHERE r.id = $1", rows::RUN_SELECT);
                let found = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
                found.as_ref().map(rows::run).transpose()
            }

            /// The runs of task `task_id` (every run without one), newest first.
            async fn runs(&self, task_id: Option<i64>) -> StoreResult<Vec<Run>> {
                let pool = &self.$pool;
                let sql = format!(
                    "{} WHERE CAST($1 AS BIGINT) IS NULL OR r.task_id = $1 ORDER BY r.id DESC",
                    rows::RUN_SELECT
                );
                let found = sqlx::query(&sql).bind(task_id).fetch_all(pool).await?;
                found.iter().map(rows::run).collect()
            }

            /// Task `task_id`'s runs that have not ended, oldest first.
            async fn active_runs(&self, task_id: i64) -> StoreResult<Vec<Run>> {
                let pool = &self.$pool;
                let sql = format!(
                    "{} WHERE r.task_id = $1 \
                     AND r.state NOT IN ('finished', 'failed', 'canceled') ORDER BY r.id",
                    rows::RUN_SELECT
                );
                let found = sqlx::query(&sql).bind(task_id).fetch_all(pool).await?;
                found.iter().map(rows::run).collect()
            }

            /// The runs waiting for their split, oldest first.
            async fn created_runs(&self) -> StoreResult<Vec<Run>> {
                let pool = &self.$pool;
                let sql = format!("{} WHERE r.state = 'created' ORDER BY r.id", rows::RUN_SELECT);
                let found = sqlx::query(&sql).fetch_all(pool).await?;
                found.iter().map(rows::run).collect()
            }

            /// Run `run_id`'s snapshot of its task's secrets.
            async fn run_secrets(&self, run_id: i64) -> StoreResult<serde_json::Value> {
                let pool = &self.$pool;
                let sql = "SELECT secrets FROM runs WHERE id = $1";
                let text: Option<String> =
                    sqlx::query_scalar(sql).bind(run_id).fetch_optional(pool).await?;
                let text = text
                    .ok_or_else(|| StoreError::NotFound { what: "run", id: run_id.to_string() })?;
                serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("runs.secrets: {e}")))
            }

            /// Run `run_id`'s parts, in split order.
            async fn parts(&self, run_id: i64) -> StoreResult<Vec<Part>> {
                let pool = &self.$pool;
                let sql = format!(
                    "SELECT {} FROM parts WHERE run_id = $1 ORDER BY seq",
                    rows::PART_COLUMNS
                );
                let found = sqlx::query(&sql).bind(run_id).fetch_all(pool).await?;
                found.iter().map(rows::part).collect()
            }

            /// Part `part_id`.
            async fn part(&self, part_id: i64) -> StoreResult<Option<Part>> {
                let pool = &self.$pool;
                let sql = format!("SELECT {} FROM parts WHERE id = $1", rows::PART_COLUMNS);
                let found = sqlx::query(&sql).bind(part_id).fetch_optional(pool).await?;
                found.as_ref().map(rows::part).transpose()
            }

            /// Run `run_id`'s results, by part and attempt.
            async fn results(&self, run_id: i64) -> StoreResult<Vec<StoredResult>> {
                let pool = &self.$pool;
                let sql = format!(
                    "SELECT {} FROM results WHERE run_id = $1 ORDER BY part_id, attempt",
                    rows::RESULT_COLUMNS
                );
                let found = sqlx::query(&sql).bind(run_id).fetch_all(pool).await?;
                found.iter().map(rows::result).collect()
            }
        }
    };
}

pub(crate) use portable_reads;
