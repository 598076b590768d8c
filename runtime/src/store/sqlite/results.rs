//! Results in SQLite: the fencing rule applied inside one transaction, so that
//! the answer an agent gets is durable before it gets it.

use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::{leasing, ms, rows, transition};
use crate::scheduler::{
    Agent, ResultAck, ResultStatus, State, StoredResult, Submission,
    fencing::{self, Claim, PartNow, Verdict},
    retry,
};
use crate::store::{StoreError, StoreResult};

async fn insert_result(
    conn: &mut SqliteConnection,
    run_id: i64,
    agent: &Agent,
    s: &Submission,
    applied: bool,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO results (part_id, attempt, run_id, agent, status, output, error, emitted, \
         logs, started_at, duration_ms, applied, received_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(s.part_id)
    .bind(i64::from(s.attempt))
    .bind(run_id)
    .bind(&agent.registration.name)
    .bind(s.status.as_str())
    .bind(s.output.as_ref().map(|o| o.to_string()))
    .bind(&s.error)
    .bind(serde_json::Value::from(s.emitted.clone()).to_string())
    .bind(serde_json::Value::from(s.logs.clone()).to_string())
    .bind(s.started_at.map(ms))
    .bind(i64::try_from(s.duration_ms).unwrap_or(i64::MAX))
    .bind(applied)
    .bind(ms(now))
    .execute(conn)
    .await?;
    Ok(())
}

async fn end_lease(
    conn: &mut SqliteConnection,
    part_id: i64,
    attempt: u32,
    reason: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE leases SET ended_at = ?, end_reason = ? \
         WHERE part_id = ? AND attempt = ? AND ended_at IS NULL",
    )
    .bind(ms(now))
    .bind(reason)
    .bind(part_id)
    .bind(i64::from(attempt))
    .execute(conn)
    .await?;
    Ok(())
}

/// Apply a result under the fencing rule, inside the caller's transaction
/// (the group commit's batch).
pub async fn submit(
    tx: &mut SqliteConnection,
    agent: &Agent,
    s: &Submission,
    now: DateTime<Utc>,
) -> StoreResult<ResultAck> {
    let name = agent.registration.name.as_str();
    let not_leased = || StoreError::NotLeased {
        part_id: s.part_id,
        attempt: s.attempt,
        agent: name.to_string(),
    };
    let row = sqlx::query(
        "SELECT p.run_id, p.state, p.attempt, p.owner, r.retries, \
         (SELECT l.agent FROM leases l WHERE l.part_id = p.id AND l.attempt = ?) AS lessee, \
         EXISTS (SELECT 1 FROM results x WHERE x.part_id = p.id AND x.attempt = ?) AS recorded \
         FROM parts p JOIN runs r ON r.id = p.run_id WHERE p.id = ?",
    )
    .bind(i64::from(s.attempt))
    .bind(i64::from(s.attempt))
    .bind(s.part_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(not_leased)?;
    let run_id: i64 = row.try_get("run_id")?;
    let state: State = row
        .try_get::<String, _>("state")?
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("parts.state: {e}")))?;
    let attempt = row.try_get::<i64, _>("attempt")? as u32;
    let owner: Option<String> = row.try_get("owner")?;
    let retries = row.try_get::<i64, _>("retries")? as u32;
    let lessee: Option<String> = row.try_get("lessee")?;
    let verdict = fencing::judge(
        PartNow {
            state,
            attempt,
            held_by_submitter: owner.as_deref() == Some(name),
        },
        Claim {
            attempt: s.attempt,
            was_leased_to_submitter: lessee.as_deref() == Some(name),
            already_recorded: row.try_get("recorded")?,
            success: s.status == ResultStatus::Finished,
        },
    );
    let detail = serde_json::json!({ "agent": name, "attempt": s.attempt, "status": s.status });
    let ack = match verdict {
        Verdict::NotLeased => return Err(not_leased()),
        Verdict::Duplicate if row.try_get::<bool, _>("recorded")? => ResultAck::Duplicate,
        Verdict::Duplicate | Verdict::RecordOnly => {
            insert_result(tx, run_id, agent, s, false, now).await?;
            end_lease(tx, s.part_id, s.attempt, "result", now).await?;
            if verdict == Verdict::Duplicate {
                ResultAck::Duplicate
            } else {
                ResultAck::Recorded
            }
        }
        Verdict::Apply => {
            insert_result(tx, run_id, agent, s, true, now).await?;
            end_lease(tx, s.part_id, s.attempt, "result", now).await?;
            let (to, available_at) = if s.status == ResultStatus::Finished {
                (State::Finished, now)
            } else if retry::may_retry(attempt, retries) {
                (State::Waiting, now + retry::backoff(attempt))
            } else {
                (State::Failed, now)
            };
            let error = (to != State::Finished).then(|| {
                format!(
                    "attempt {}: {}: {}",
                    s.attempt,
                    s.status.as_str(),
                    s.error.as_deref().unwrap_or("no reason given")
                )
            });
            let update = sqlx::query(
                "UPDATE parts SET state = ?, owner = CASE WHEN ? THEN owner END, \
                 lease_expires_at = NULL, available_at = ?, error = COALESCE(?, error) \
                 WHERE id = ? AND state = ?",
            )
            .bind(to.as_str())
            .bind(to == State::Finished)
            .bind(ms(available_at))
            .bind(error)
            .bind(s.part_id)
            .bind(State::Running.as_str());
            transition::move_part_with(
                tx,
                update,
                run_id,
                s.part_id,
                State::Running,
                to,
                now,
                detail,
            )
            .await?;
            ResultAck::Applied
        }
        Verdict::AcceptLate { revokes_current } => {
            insert_result(tx, run_id, agent, s, true, now).await?;
            end_lease(tx, s.part_id, s.attempt, "late-result", now).await?;
            if revokes_current {
                end_lease(tx, s.part_id, attempt, "revoked", now).await?;
            }
            let update = sqlx::query(
                "UPDATE parts SET state = ?, owner = ?, lease_expires_at = NULL \
                 WHERE id = ? AND state = ?",
            )
            .bind(State::Finished.as_str())
            .bind(name)
            .bind(s.part_id)
            .bind(state.as_str());
            transition::move_part_with(
                tx,
                update,
                run_id,
                s.part_id,
                state,
                State::Finished,
                now,
                detail,
            )
            .await?;
            ResultAck::AcceptedLate
        }
    };
    leasing::touch_agent(tx, agent, now).await?;
    Ok(ack)
}

pub async fn results(pool: &SqlitePool, run_id: i64) -> StoreResult<Vec<StoredResult>> {
    let sql = format!(
        "SELECT {} FROM results WHERE run_id = ? ORDER BY part_id, attempt",
        rows::RESULT_COLUMNS
    );
    sqlx::query(&sql)
        .bind(run_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(rows::result)
        .collect()
}
