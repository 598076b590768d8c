//! An admin's actions on a whole run: suspend, resume, cancel, and failing a
//! run whose split failed. Each moves the run's parts that may move (per the
//! scheduler's transition table) at once, then counts them anew.

use chrono::{DateTime, Utc};
use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::statements::WriterConn;
use super::transition::{self, RunBefore};
use crate::scheduler::{Entity, State};
use crate::store::{StoreError, StoreResult, ms};

/// Fail run `run_id`, still waiting for its split, with `error`.
pub fn fail_run(
    conn: &WriterConn<'_>, run_id: i64, error: &str, now: DateTime<Utc>,
) -> StoreResult<()> {
    let run = transition::read_run(conn, run_id)?;
    if run.state != State::Created {
        return Err(StoreError::Invalid(format!(
            "run {run_id} is {}: only a run waiting for its split can fail this way",
            run.state
        )));
    }
    conn.prepare_cached("UPDATE runs SET error = ?1 WHERE id = ?2")?
        .execute(rusqlite::params![error, run_id])?;
    let detail = serde_json::json!({ "error": error });
    transition::move_run(conn, run_id, State::Created, State::Failed, now, &detail)
}

/// Move every part of `run_id` in one of `from` to `to`; how many moved.
fn move_all_parts(
    conn: &WriterConn<'_>, run_id: i64, from: &[State], to: State,
) -> StoreResult<usize> {
    if from.is_empty() {
        return Ok(0);
    }
    let placeholders = vec!["?"; from.len()].join(", ");
    let sql = format!("UPDATE parts SET state = ? WHERE run_id = ? AND state IN ({placeholders})");
    let values = [Value::from(to.as_str().to_owned()), Value::from(run_id)]
        .into_iter()
        .chain(from.iter().map(|s| Value::from(s.as_str().to_owned())));
    Ok(conn.prepare_cached(&sql)?.execute(params_from_iter(values))?)
}

/// Suspend run `run_id`: its waiting parts are held until it resumes.
pub fn suspend_run(conn: &WriterConn<'_>, run_id: i64, now: DateTime<Utc>) -> StoreResult<()> {
    let run = transition::read_run(conn, run_id)?;
    run.state.check(Entity::Run, State::Suspended)?;
    let from = State::sources(Entity::Part, State::Suspended);
    let moved = move_all_parts(conn, run_id, &from, State::Suspended)?;
    transition::recount(conn, run_id)?;
    let detail = serde_json::json!({ "parts_suspended": moved });
    transition::move_run(conn, run_id, run.state, State::Suspended, now, &detail)?;
    transition::refresh_run(conn, run_id, now)
}

/// Resume suspended run `run_id`: its held parts wait again.
pub fn resume_run(conn: &WriterConn<'_>, run_id: i64, now: DateTime<Utc>) -> StoreResult<()> {
    let run = transition::read_run(conn, run_id)?;
    if run.state != State::Suspended {
        return Err(StoreError::Invalid(format!("run {run_id} is {}, not suspended", run.state)));
    }
    let moved = move_all_parts(conn, run_id, &[State::Suspended], State::Waiting)?;
    transition::recount(conn, run_id)?;
    let detail = serde_json::json!({ "parts_resumed": moved });
    transition::move_run(conn, run_id, State::Suspended, State::Waiting, now, &detail)?;
    transition::refresh_run(conn, run_id, now)
}

/// Cancel run `run_id`: its open parts are canceled and their leases
/// revoked (a late result is then recorded and changes nothing).
pub fn cancel_run(conn: &WriterConn<'_>, run_id: i64, now: DateTime<Utc>) -> StoreResult<()> {
    let RunBefore { state, .. } = transition::read_run(conn, run_id)?;
    state.check(Entity::Run, State::Canceled)?;
    conn.prepare_cached(
        "UPDATE leases SET ended_at = ?1, end_reason = 'canceled' WHERE ended_at IS NULL \
         AND part_id IN (SELECT id FROM parts WHERE run_id = ?2 AND state = 'running')",
    )?
    .execute(rusqlite::params![ms(now), run_id])?;
    let from = State::sources(Entity::Part, State::Canceled);
    let moved = move_all_parts(conn, run_id, &from, State::Canceled)?;
    conn.prepare_cached(
        "UPDATE parts SET owner = NULL, lease_expires_at = NULL \
         WHERE run_id = ?1 AND state = 'canceled'",
    )?
    .execute([run_id])?;
    transition::recount(conn, run_id)?;
    let detail = serde_json::json!({ "parts_canceled": moved });
    transition::move_run(conn, run_id, state, State::Canceled, now, &detail)
}
