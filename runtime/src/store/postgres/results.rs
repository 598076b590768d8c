//! Results in PostgreSQL: the fencing rule applied as a compare-and-set, so
//! that several daemons receiving results for one part apply at most one, and
//! the answer an agent gets is durable (flushed) before it gets it.
//!
//! The part's row is locked (`FOR UPDATE`) and read; [`fencing::judge`] decides;
//! one statement then records the result, ends the lease(s), moves the part
//! (only if it is still in the state and attempt judged), writes the event and
//! marks the agent seen. A second copy of the same result racing the first
//! waits on the lock and then finds its attempt recorded (the results' primary
//! key), so it is acknowledged as a duplicate.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

use super::{rows, transition};
use crate::scheduler::{
    Agent, Entity, ResultAck, ResultStatus, State, StoredResult, Submission,
    fencing::{self, Claim, PartNow, Verdict},
    retry,
};
use crate::store::sqlite::ms;
use crate::store::{StoreError, StoreResult};

const READ_PART: &str = "\
SELECT p.run_id, p.state, p.attempt, p.owner, r.retries,
  (SELECT l.agent FROM leases l WHERE l.part_id = p.id AND l.attempt = $2) AS lessee,
  EXISTS (SELECT 1 FROM results x WHERE x.part_id = p.id AND x.attempt = $2) AS recorded
FROM parts p JOIN runs r ON r.id = p.run_id WHERE p.id = $1
FOR UPDATE OF p";

/// Record a result and apply what the verdict says, in one statement.
const WRITE: &str = "\
WITH res AS (
  INSERT INTO results (part_id, attempt, run_id, agent, status, output, error, emitted, logs,
    started_at, duration_ms, applied, received_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
  ON CONFLICT (part_id, attempt) DO NOTHING
  RETURNING part_id
), ended AS (
  UPDATE leases SET ended_at = $13,
    end_reason = CASE WHEN attempt = $2 THEN $15 ELSE 'revoked' END
  WHERE part_id = $1 AND (attempt = $2 OR attempt = $16) AND ended_at IS NULL
    AND EXISTS (SELECT 1 FROM res)
), moved AS (
  UPDATE parts SET state = $18,
    owner = CASE WHEN $21 THEN owner ELSE $20 END,
    lease_expires_at = NULL,
    available_at = COALESCE($22, available_at),
    error = COALESCE($23, error)
  WHERE id = $1 AND state = $17 AND attempt = $19 AND EXISTS (SELECT 1 FROM res)
  RETURNING id
), event AS (
  INSERT INTO events (at, entity, entity_id, kind, from_state, to_state, detail)
  SELECT $13, 'part', id, 'state', $17, $18, $24 FROM moved
), seen AS (
  UPDATE agents SET last_seen = $13 WHERE id = $14 AND last_seen < $13 - 1000
)
SELECT (SELECT count(*) FROM res) AS recorded, (SELECT count(*) FROM moved) AS moved";

/// What a verdict changes besides recording the result.
struct Change {
    from: State,
    to: State,
    /// `None`: the owner stays; `Some(x)`: the owner becomes `x`.
    owner: Option<Option<String>>,
    available_at: Option<DateTime<Utc>>,
    error: Option<String>,
}

pub async fn submit(
    pool: &PgPool,
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
    let mut tx = pool.begin().await?;
    let row = sqlx::query(READ_PART)
        .bind(s.part_id)
        .bind(i64::from(s.attempt))
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
    let recorded: bool = row.try_get("recorded")?;
    let verdict = fencing::judge(
        PartNow {
            state,
            attempt,
            held_by_submitter: owner.as_deref() == Some(name),
        },
        Claim {
            attempt: s.attempt,
            was_leased_to_submitter: lessee.as_deref() == Some(name),
            already_recorded: recorded,
            success: s.status == ResultStatus::Finished,
        },
    );
    let (ack, applied, reason, revoke, change) = match verdict {
        Verdict::NotLeased => return Err(not_leased()),
        Verdict::Duplicate if recorded => {
            tx.rollback().await?;
            return Ok(ResultAck::Duplicate);
        }
        Verdict::Duplicate => (ResultAck::Duplicate, false, "result", None, None),
        Verdict::RecordOnly => (ResultAck::Recorded, false, "result", None, None),
        Verdict::Apply => {
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
            let owner = (to != State::Finished).then_some(None);
            let change = Change {
                from: State::Running,
                to,
                owner,
                available_at: Some(available_at),
                error,
            };
            (ResultAck::Applied, true, "result", None, Some(change))
        }
        Verdict::AcceptLate { revokes_current } => {
            let change = Change {
                from: state,
                to: State::Finished,
                owner: Some(Some(name.to_string())),
                available_at: None,
                error: None,
            };
            let revoke = revokes_current.then_some(i64::from(attempt));
            (
                ResultAck::AcceptedLate,
                true,
                "late-result",
                revoke,
                Some(change),
            )
        }
    };
    if let Some(change) = &change {
        change.from.check(Entity::Part, change.to)?;
    }
    let detail = serde_json::json!({ "agent": name, "attempt": s.attempt, "status": s.status });
    let written = sqlx::query(WRITE)
        .bind(s.part_id)
        .bind(i64::from(s.attempt))
        .bind(run_id)
        .bind(name)
        .bind(s.status.as_str())
        .bind(s.output.as_ref().map(|o| o.to_string()))
        .bind(&s.error)
        .bind(serde_json::Value::from(s.emitted.clone()).to_string())
        .bind(serde_json::Value::from(s.logs.clone()).to_string())
        .bind(s.started_at.map(ms))
        .bind(i64::try_from(s.duration_ms).unwrap_or(i64::MAX))
        .bind(applied)
        .bind(ms(now))
        .bind(agent.id)
        .bind(reason)
        .bind(revoke)
        .bind(change.as_ref().map(|c| c.from.as_str()))
        .bind(change.as_ref().map(|c| c.to.as_str()))
        .bind(i64::from(attempt))
        .bind(change.as_ref().and_then(|c| c.owner.clone().flatten()))
        .bind(change.as_ref().is_none_or(|c| c.owner.is_none()))
        .bind(change.as_ref().and_then(|c| c.available_at.map(ms)))
        .bind(change.as_ref().and_then(|c| c.error.clone()))
        .bind(detail.to_string())
        .fetch_one(&mut *tx)
        .await?;
    if written.try_get::<i64, _>("recorded")? == 0 {
        // The same result, racing this one, was recorded first.
        tx.rollback().await?;
        return Ok(ResultAck::Duplicate);
    }
    if let Some(change) = &change {
        if written.try_get::<i64, _>("moved")? != 1 {
            return Err(StoreError::Corrupt(format!(
                "part {} was expected in state {} at attempt {attempt}",
                s.part_id, change.from
            )));
        }
        transition::refresh_run(&mut tx, run_id, now).await?;
        if change.to == State::Waiting {
            super::notify_work(&mut tx).await?;
        }
    }
    tx.commit().await?;
    Ok(ack)
}

pub async fn results(pool: &PgPool, run_id: i64) -> StoreResult<Vec<StoredResult>> {
    let sql = format!(
        "SELECT {} FROM results WHERE run_id = $1 ORDER BY part_id, attempt",
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
