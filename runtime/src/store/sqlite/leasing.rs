//! Heartbeats, progress and lease expiry in SQLite (leasing itself is the
//! hot path's: `hot_path::lease`).

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::{from_ms, ms, transition};
use crate::scheduler::{Agent, HeartbeatAck, LeaseRef, State, retry};
use crate::store::{StoreError, StoreResult};

/// Mark the agent seen (not more than once a second: it is the agent's row,
/// and without writing it a lease that finds nothing writes nothing).
/// Parameters: now (ms), agent id. Shared with the hot path.
pub(super) const TOUCH_AGENT: &str =
    "UPDATE agents SET last_seen = ?1 WHERE id = ?2 AND last_seen < ?1 - 1000";

async fn touch_agent(
    conn: &mut SqliteConnection,
    agent: &Agent,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(TOUCH_AGENT)
        .bind(ms(now))
        .bind(agent.id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The part's run, state, attempt and owner.
async fn lease_state(
    conn: &mut SqliteConnection,
    part_id: i64,
) -> StoreResult<Option<(i64, State, u32, Option<String>, i64)>> {
    let row = sqlx::query(
        "SELECT p.run_id, p.state, p.attempt, p.owner, r.lease_ttl_ms \
         FROM parts p JOIN runs r ON r.id = p.run_id WHERE p.id = ?",
    )
    .bind(part_id)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let state: String = row.try_get("state")?;
    let state = state
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("parts.state: {e}")))?;
    Ok(Some((
        row.try_get("run_id")?,
        state,
        row.try_get::<i64, _>("attempt")? as u32,
        row.try_get("owner")?,
        row.try_get("lease_ttl_ms")?,
    )))
}

fn holds(
    state: State,
    attempt: u32,
    owner: &Option<String>,
    agent: &Agent,
    lease: LeaseRef,
) -> bool {
    state == State::Running
        && attempt == lease.attempt
        && owner.as_deref() == Some(agent.registration.name.as_str())
}

pub async fn heartbeat(
    pool: &SqlitePool,
    agent: &Agent,
    held: &[LeaseRef],
    now: DateTime<Utc>,
) -> StoreResult<HeartbeatAck> {
    let mut tx = pool.begin().await?;
    touch_agent(&mut tx, agent, now).await?;
    let mut ack = HeartbeatAck::default();
    for lease in held {
        match lease_state(&mut tx, lease.part_id).await? {
            Some((_, state, attempt, owner, ttl))
                if holds(state, attempt, &owner, agent, *lease) =>
            {
                sqlx::query("UPDATE parts SET lease_expires_at = ? WHERE id = ?")
                    .bind(ms(now + TimeDelta::milliseconds(ttl)))
                    .bind(lease.part_id)
                    .execute(&mut *tx)
                    .await?;
                ack.extended.push(*lease);
            }
            _ => ack.revoked.push(*lease),
        }
    }
    tx.commit().await?;
    Ok(ack)
}

pub async fn progress(
    pool: &SqlitePool,
    agent: &Agent,
    lease: LeaseRef,
    done: u64,
    total: u64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    touch_agent(&mut tx, agent, now).await?;
    match lease_state(&mut tx, lease.part_id).await? {
        Some((_, state, attempt, owner, _)) if holds(state, attempt, &owner, agent, lease) => {
            sqlx::query("UPDATE parts SET progress_done = ?, progress_total = ? WHERE id = ?")
                .bind(done.min(i64::MAX as u64) as i64)
                .bind(total.min(i64::MAX as u64) as i64)
                .bind(lease.part_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        }
        _ => Err(StoreError::NotLeased {
            part_id: lease.part_id,
            attempt: lease.attempt,
            agent: agent.registration.name.clone(),
        }),
    }
}

pub async fn expire_leases(pool: &SqlitePool, now: DateTime<Utc>) -> StoreResult<Vec<LeaseRef>> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "SELECT p.id, p.run_id, p.attempt, p.owner, p.lease_expires_at, r.retries \
         FROM parts p JOIN runs r ON r.id = p.run_id \
         WHERE p.state = 'running' AND p.lease_expires_at < ? ORDER BY p.lease_expires_at",
    )
    .bind(ms(now))
    .fetch_all(&mut *tx)
    .await?;
    let mut expired = Vec::with_capacity(rows.len());
    for row in rows {
        let part_id: i64 = row.try_get("id")?;
        let run_id: i64 = row.try_get("run_id")?;
        let attempt = row.try_get::<i64, _>("attempt")? as u32;
        let owner: Option<String> = row.try_get("owner")?;
        let retries = row.try_get::<i64, _>("retries")? as u32;
        let expired_at = from_ms(row.try_get("lease_expires_at")?);
        sqlx::query(
            "UPDATE leases SET ended_at = ?, end_reason = 'expired' \
             WHERE part_id = ? AND attempt = ? AND ended_at IS NULL",
        )
        .bind(ms(now))
        .bind(part_id)
        .bind(i64::from(attempt))
        .execute(&mut *tx)
        .await?;
        let error = format!(
            "attempt {attempt}: lease of agent {} expired at {expired_at}",
            owner.as_deref().unwrap_or("?")
        );
        let (to, available_at) = if retry::may_retry(attempt, retries) {
            (State::Waiting, now + retry::backoff(attempt))
        } else {
            (State::Failed, now)
        };
        let detail = serde_json::json!({ "agent": owner, "attempt": attempt, "reason": "expired" });
        transition::move_part(&mut tx, run_id, part_id, State::Running, to, now, detail).await?;
        sqlx::query(
            "UPDATE parts SET owner = NULL, lease_expires_at = NULL, available_at = ?, error = ? \
             WHERE id = ?",
        )
        .bind(ms(available_at))
        .bind(&error)
        .bind(part_id)
        .execute(&mut *tx)
        .await?;
        expired.push(LeaseRef { part_id, attempt });
    }
    tx.commit().await?;
    Ok(expired)
}
