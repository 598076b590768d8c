//! Turning database rows into the scheduler's types, once for every backend.
//!
//! Both stores keep the same columns with the same encodings (JSON as text,
//! states as their names, times as milliseconds since the epoch), so the
//! mapping is written once, here, as [`row_mappers!`], with the column lists
//! it reads (so a query and its mapping cannot drift apart), and each
//! backend's `rows` module instantiates it for its row type beside its query
//! of runs, whose part counters each backend keeps its own way. A macro rather than a
//! generic function: sqlx's `Row` would need a decode bound per column type on
//! every function.

/// Define `plugin`, `agent`, `task`, `run`, `part`, `result` and `event` (and
/// their helpers) for the row type `$row`, with the column lists they read
/// (a run's, `RUN_SELECT`, is the backend's own).
macro_rules! row_mappers {
    ($row:ty) => {
        use sqlx::Row as _;

        /// Columns of [`plugin`].
        pub const PLUGIN_COLUMNS: &str =
            "sha256, name, version, manifest, size, uploaded_at, retired_at";

        /// Columns of [`agent`].
        pub const AGENT_COLUMNS: &str =
            "id, name, networks, plugins, pooled_slots, dedicated_slots, last_seen, down_since";

        /// Columns of [`task`].
        pub const TASK_COLUMNS: &str =
            "id, spec, secrets <> '{}' AS has_secrets, next_run_at, chained_since, created_at, \
             updated_at";

        /// Columns of [`part`], from `parts`: the last with the attempt of the
        /// result that decided it (its finishing result first).
        pub const PART_COLUMNS: &str = "id, run_id, seq, label, targets, payload, state, \
             attempt, owner, pinned_agent, lease_expires_at, available_at, progress_done, \
             progress_total, error, \
             (SELECT r.attempt FROM results r \
              WHERE r.run_id = parts.run_id AND r.part_id = parts.id AND r.applied \
              ORDER BY r.status = 'finished' DESC, r.received_at DESC LIMIT 1) AS result_attempt";

        /// Columns of [`result`].
        pub const RESULT_COLUMNS: &str = "part_id, attempt, run_id, agent, status, output, \
             error, emitted, logs, started_at, duration_ms, applied, received_at";

        /// Columns of [`event`].
        pub const EVENT_COLUMNS: &str =
            "id, at, entity, entity_id, kind, from_state, to_state, detail";

        use crate::scheduler::{
            Agent, AgentRegistration, Event, Part, PartCounts, ResultStatus, Run, RunCause, State,
            StoredResult, Submission, Task,
        };
        use crate::store::{PluginRecord, StoreError, StoreResult, from_ms};

        fn json<T: serde::de::DeserializeOwned>(row: &$row, column: &str) -> StoreResult<T> {
            let text: String = row.try_get(column)?;
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
        }

        fn state(row: &$row, column: &str) -> StoreResult<State> {
            let text: String = row.try_get(column)?;
            text.parse().map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
        }

        fn opt_state(row: &$row, column: &str) -> StoreResult<Option<State>> {
            let text: Option<String> = row.try_get(column)?;
            text.map(|t| t.parse())
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
        }

        fn u32_of(row: &$row, column: &str) -> StoreResult<u32> {
            let n: i64 = row.try_get(column)?;
            u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{column}: {n} out of range")))
        }

        /// A plugins row.
        pub fn plugin(row: &$row) -> StoreResult<PluginRecord> {
            Ok(PluginRecord {
                sha256: row.try_get("sha256")?,
                name: row.try_get("name")?,
                version: row.try_get("version")?,
                manifest: json(row, "manifest")?,
                size: row.try_get::<i64, _>("size")? as u64,
                uploaded_at: from_ms(row.try_get("uploaded_at")?),
                retired_at: row.try_get::<Option<i64>, _>("retired_at")?.map(from_ms),
            })
        }

        /// An agents row.
        pub fn agent(row: &$row) -> StoreResult<Agent> {
            Ok(Agent {
                id: row.try_get("id")?,
                registration: AgentRegistration {
                    name: row.try_get("name")?,
                    networks: json(row, "networks")?,
                    plugins: json(row, "plugins")?,
                    pooled_slots: u32_of(row, "pooled_slots")?,
                    dedicated_slots: u32_of(row, "dedicated_slots")?,
                },
                last_seen: from_ms(row.try_get("last_seen")?),
                down_since: row.try_get::<Option<i64>, _>("down_since")?.map(from_ms),
            })
        }

        /// A tasks row (without its secrets).
        pub fn task(row: &$row) -> StoreResult<Task> {
            Ok(Task {
                id: row.try_get("id")?,
                spec: json(row, "spec")?,
                next_run_at: row.try_get::<Option<i64>, _>("next_run_at")?.map(from_ms),
                chained_since: row.try_get::<Option<i64>, _>("chained_since")?.map(from_ms),
                has_secrets: row.try_get("has_secrets")?,
                created_at: from_ms(row.try_get("created_at")?),
                updated_at: from_ms(row.try_get("updated_at")?),
            })
        }

        /// A runs row (without its secrets).
        pub fn run(row: &$row) -> StoreResult<Run> {
            let count =
                |c: &str| -> StoreResult<u64> { Ok(row.try_get::<i64, _>(c)?.max(0) as u64) };
            let cause: String = row.try_get("cause")?;
            let spec: crate::scheduler::TaskSpec = json(row, "spec")?;
            Ok(Run {
                id: row.try_get("id")?,
                task_id: row.try_get("task_id")?,
                selected: crate::scheduler::selected_targets(&spec),
                spec,
                plugin_sha256: row.try_get("plugin_sha256")?,
                state: state(row, "state")?,
                cause: RunCause::parse(&cause)
                    .ok_or_else(|| StoreError::Corrupt(format!("cause: {cause:?}")))?,
                rerun_of: row.try_get("rerun_of")?,
                caused_by: row.try_get("caused_by")?,
                error: row.try_get("error")?,
                parts: PartCounts {
                    waiting: count("n_waiting")?,
                    running: count("n_running")?,
                    suspended: count("n_suspended")?,
                    finished: count("n_finished")?,
                    failed: count("n_failed")?,
                    canceled: count("n_canceled")?,
                },
                created_at: from_ms(row.try_get("created_at")?),
                ended_at: row.try_get::<Option<i64>, _>("ended_at")?.map(from_ms),
            })
        }

        /// A parts row.
        pub fn part(row: &$row) -> StoreResult<Part> {
            let done: Option<i64> = row.try_get("progress_done")?;
            let total: Option<i64> = row.try_get("progress_total")?;
            let state = state(row, "state")?;
            // A finished part is complete, whatever its last report said, and
            // the errors of its earlier attempts are history (its results).
            let finished = state == State::Finished;
            let done = if finished { total } else { done };
            let error = if finished { None } else { row.try_get("error")? };
            Ok(Part {
                id: row.try_get("id")?,
                run_id: row.try_get("run_id")?,
                seq: row.try_get("seq")?,
                label: row.try_get("label")?,
                targets: json(row, "targets")?,
                payload: row.try_get("payload")?,
                state,
                attempt: u32_of(row, "attempt")?,
                result_attempt: row
                    .try_get::<Option<i64>, _>("result_attempt")?
                    .map(|a| u32::try_from(a).unwrap_or(u32::MAX)),
                owner: row.try_get("owner")?,
                pinned_agent: row.try_get("pinned_agent")?,
                lease_expires_at: row.try_get::<Option<i64>, _>("lease_expires_at")?.map(from_ms),
                available_at: from_ms(row.try_get("available_at")?),
                progress: done.zip(total).map(|(d, t)| (d as u64, t as u64)),
                error,
                unassignable: None,
            })
        }

        /// A results row.
        pub fn result(row: &$row) -> StoreResult<StoredResult> {
            let status: String = row.try_get("status")?;
            let output: Option<String> = row.try_get("output")?;
            Ok(StoredResult {
                run_id: row.try_get("run_id")?,
                agent: row.try_get("agent")?,
                submission: Submission {
                    part_id: row.try_get("part_id")?,
                    attempt: u32_of(row, "attempt")?,
                    status: ResultStatus::parse(&status)
                        .ok_or_else(|| StoreError::Corrupt(format!("status: {status:?}")))?,
                    output: output
                        .map(|o| serde_json::from_str(&o))
                        .transpose()
                        .map_err(|e| StoreError::Corrupt(format!("output: {e}")))?,
                    error: row.try_get("error")?,
                    emitted: json(row, "emitted")?,
                    logs: json(row, "logs")?,
                    started_at: row.try_get::<Option<i64>, _>("started_at")?.map(from_ms),
                    duration_ms: row.try_get::<i64, _>("duration_ms")?.max(0) as u64,
                },
                applied: row.try_get("applied")?,
                received_at: from_ms(row.try_get("received_at")?),
            })
        }

        /// An events row.
        pub fn event(row: &$row) -> StoreResult<Event> {
            Ok(Event {
                id: row.try_get("id")?,
                at: from_ms(row.try_get("at")?),
                entity: row.try_get("entity")?,
                entity_id: row.try_get("entity_id")?,
                kind: row.try_get("kind")?,
                from: opt_state(row, "from_state")?,
                to: opt_state(row, "to_state")?,
                detail: json(row, "detail")?,
            })
        }
    };
}

pub(crate) use row_mappers;
