//! Leasing, heartbeats, progress and lease expiry in PostgreSQL, safe with
//! several daemons on one database.
//!
//! A lease is one statement after the agent's row lock: the pick walks the
//! `parts_to_lease` index in leasing order (rank, oldest run, split order),
//! skips rows other daemons are leasing (`FOR UPDATE SKIP LOCKED`) and stops at
//! the first part the agent may take (the same rule as the SQLite store); data-
//! modifying CTEs then move it to Running, record the lease and the event, and
//! return what the agent needs.
//!
//! - The agent's row is locked first: two lease requests of one agent (one per
//!   slot) queue there, so the second sees the first's part and keeps the rule
//!   of one part per run per agent.
//! - A lease commits without waiting for the WAL flush
//!   (`synchronous_commit = off` for that transaction only). Losing it in a
//!   database crash is harmless: the part is Waiting again at the attempt before,
//!   the agent's result for the lost attempt is refused (never applied twice),
//!   and the next commit of a result flushes it anyway. Results do wait for the
//!   flush.
//! - Expiry locks the expired parts with `SKIP LOCKED` and rechecks them under
//!   the lock, so two daemons sweeping at once handle each expired lease once.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};

use super::transition;
use crate::scheduler::{Agent, HeartbeatAck, Lease, LeaseRef, NewPart, State, TaskSpec, retry};
use crate::store::sqlite::{from_ms, ms};
use crate::store::{StoreError, StoreResult};

/// Lock the agent's row, mark it seen, and let this transaction commit without
/// waiting for the flush (see the module documentation).
const LOCK_AGENT: &str = "\
UPDATE agents SET last_seen = $2 WHERE id = $1
RETURNING set_config('synchronous_commit', 'off', true)";

const LEASE: &str = "\
WITH pick AS (
  SELECT p.id, p.run_id FROM parts p JOIN runs r ON r.id = p.run_id
  WHERE p.state = 'waiting' AND p.available_at <= $1
    AND (p.pinned_agent IS NULL OR p.pinned_agent = $2)
    AND (NOT r.explicit_agents
         OR EXISTS (SELECT 1 FROM run_agents ra WHERE ra.run_id = p.run_id AND ra.agent_name = $2))
    AND ($3 OR r.plugin = ANY($4))
    AND (p.span_lo IS NULL OR r.explicit_agents
         OR EXISTS (SELECT 1 FROM agent_networks n
                    WHERE n.agent_id = $5 AND n.lo <= p.span_lo AND p.span_hi <= n.hi))
    AND p.run_id NOT IN (SELECT q.run_id FROM parts q WHERE q.state = 'running' AND q.owner = $2)
  ORDER BY p.rank, p.run_id, p.seq
  LIMIT 1
  FOR UPDATE OF p SKIP LOCKED
), leased AS (
  UPDATE parts p SET state = 'running', attempt = p.attempt + 1, owner = $2,
    lease_expires_at = $1 + r.lease_ttl_ms, progress_done = NULL, progress_total = NULL
  FROM pick, runs r
  WHERE p.id = pick.id AND r.id = pick.run_id AND p.state = 'waiting'
  RETURNING p.id, p.run_id, p.attempt, p.lease_expires_at, p.label, p.targets, p.payload,
    r.task_id, r.spec, r.secrets, r.plugin_sha256
), lease_row AS (
  INSERT INTO leases (part_id, attempt, agent, leased_at) SELECT id, attempt, $2, $1 FROM leased
), event AS (
  INSERT INTO events (at, entity, entity_id, kind, from_state, to_state, detail)
  SELECT $1, 'part', id, 'state', 'waiting', 'running',
    json_build_object('agent', $2::TEXT, 'attempt', attempt)::TEXT
  FROM leased
)
SELECT * FROM leased";

pub async fn lease(pool: &PgPool, agent: &Agent, now: DateTime<Utc>) -> StoreResult<Option<Lease>> {
    let mut tx = pool.begin().await?;
    sqlx::query(LOCK_AGENT)
        .bind(agent.id)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
    let name = &agent.registration.name;
    let row = sqlx::query(LEASE)
        .bind(ms(now))
        .bind(name)
        .bind(agent.registration.plugins.is_empty())
        .bind(&agent.registration.plugins)
        .bind(agent.id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        tx.commit().await?;
        return Ok(None);
    };
    let run_id: i64 = row.try_get("run_id")?;
    transition::start_run(&mut tx, run_id, now).await?;
    let spec: TaskSpec = parse(&row, "spec")?;
    let lease = Lease {
        part_id: row.try_get("id")?,
        run_id,
        task_id: row.try_get("task_id")?,
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        expires_at: from_ms(row.try_get("lease_expires_at")?),
        plugin: spec.plugin.clone(),
        plugin_sha256: row.try_get("plugin_sha256")?,
        params: spec.params.clone(),
        secrets: parse(&row, "secrets")?,
        part: NewPart {
            label: row.try_get("label")?,
            targets: parse(&row, "targets")?,
            payload: row.try_get("payload")?,
        },
        timeout_ms: spec.timeout_ms,
        mode: spec.mode,
        grants: spec.grants,
    };
    tx.commit().await?;
    Ok(Some(lease))
}

fn parse<T: serde::de::DeserializeOwned>(
    row: &sqlx::postgres::PgRow,
    column: &str,
) -> StoreResult<T> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

/// Mark the agent seen (not more than once a second: it is the agent's row,
/// written by each of its requests).
pub async fn touch_agent(
    conn: &mut PgConnection,
    agent: &Agent,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query("UPDATE agents SET last_seen = $1 WHERE id = $2 AND last_seen < $1 - 1000")
        .bind(ms(now))
        .bind(agent.id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn heartbeat(
    pool: &PgPool,
    agent: &Agent,
    held: &[LeaseRef],
    now: DateTime<Utc>,
) -> StoreResult<HeartbeatAck> {
    let mut tx = pool.begin().await?;
    touch_agent(&mut tx, agent, now).await?;
    let mut ack = HeartbeatAck::default();
    for lease in held {
        // Compare-and-set: only the current holder's attempt is extended.
        let extended = sqlx::query(
            "UPDATE parts p SET lease_expires_at = $1 + r.lease_ttl_ms FROM runs r \
             WHERE r.id = p.run_id AND p.id = $2 AND p.state = 'running' AND p.attempt = $3 \
             AND p.owner = $4",
        )
        .bind(ms(now))
        .bind(lease.part_id)
        .bind(i64::from(lease.attempt))
        .bind(&agent.registration.name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if extended == 1 {
            ack.extended.push(*lease);
        } else {
            ack.revoked.push(*lease);
        }
    }
    tx.commit().await?;
    Ok(ack)
}

pub async fn progress(
    pool: &PgPool,
    agent: &Agent,
    lease: LeaseRef,
    done: u64,
    total: u64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    touch_agent(&mut tx, agent, now).await?;
    let stored = sqlx::query(
        "UPDATE parts SET progress_done = $1, progress_total = $2 \
         WHERE id = $3 AND state = 'running' AND attempt = $4 AND owner = $5",
    )
    .bind(done.min(i64::MAX as u64) as i64)
    .bind(total.min(i64::MAX as u64) as i64)
    .bind(lease.part_id)
    .bind(i64::from(lease.attempt))
    .bind(&agent.registration.name)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if stored != 1 {
        return Err(StoreError::NotLeased {
            part_id: lease.part_id,
            attempt: lease.attempt,
            agent: agent.registration.name.clone(),
        });
    }
    tx.commit().await?;
    Ok(())
}

/// Expired leases handled per transaction: bounds the time a sweep holds locks
/// after a mass expiry (a dead daemon's agents); the next sweep takes the rest.
const EXPIRE_BATCH: i64 = 1000;

pub async fn expire_leases(pool: &PgPool, now: DateTime<Utc>) -> StoreResult<Vec<LeaseRef>> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "SELECT p.id, p.run_id, p.attempt, p.owner, p.lease_expires_at, r.retries \
         FROM parts p JOIN runs r ON r.id = p.run_id \
         WHERE p.state = 'running' AND p.lease_expires_at < $1 ORDER BY p.lease_expires_at \
         LIMIT $2 FOR UPDATE OF p SKIP LOCKED",
    )
    .bind(ms(now))
    .bind(EXPIRE_BATCH)
    .fetch_all(&mut *tx)
    .await?;
    let mut expired = Vec::with_capacity(rows.len());
    let mut retried = false;
    for row in rows {
        let part_id: i64 = row.try_get("id")?;
        let run_id: i64 = row.try_get("run_id")?;
        let attempt = row.try_get::<i64, _>("attempt")? as u32;
        let owner: Option<String> = row.try_get("owner")?;
        let retries = row.try_get::<i64, _>("retries")? as u32;
        let expired_at = from_ms(row.try_get("lease_expires_at")?);
        sqlx::query(
            "UPDATE leases SET ended_at = $1, end_reason = 'expired' \
             WHERE part_id = $2 AND attempt = $3 AND ended_at IS NULL",
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
            retried = true;
            (State::Waiting, now + retry::backoff(attempt))
        } else {
            (State::Failed, now)
        };
        sqlx::query(
            "UPDATE parts SET owner = NULL, lease_expires_at = NULL, available_at = $1, \
             error = $2 WHERE id = $3",
        )
        .bind(ms(available_at))
        .bind(&error)
        .bind(part_id)
        .execute(&mut *tx)
        .await?;
        let detail = serde_json::json!({ "agent": owner, "attempt": attempt, "reason": "expired" });
        transition::move_part(&mut tx, run_id, part_id, State::Running, to, now, detail).await?;
        expired.push(LeaseRef { part_id, attempt });
    }
    if retried {
        super::notify_work(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(expired)
}
