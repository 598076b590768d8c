//! Leasing, heartbeats, progress and lease expiry in PostgreSQL, safe with
//! several daemons on one database.
//!
//! A lease is one call of the `jobstack_lease` function (the functions are in
//! `runtime/migrations/postgres/functions/`, a file each), one round trip: it
//! takes the agent's advisory lock (two lease requests of one agent queue
//! there, so the second sees the first's part: one part per run per agent),
//! walks the runs the agent may take from in leasing order (rank, oldest run;
//! a run it already holds a part of is skipped whole), and in each the
//! `parts_to_lease` index in split order, skipping rows other daemons are
//! leasing (`FOR UPDATE SKIP LOCKED`); it stops at the first part the agent may
//! take (the same rule as the SQLite store's), moves it to Running, records the
//! lease and the events. The walk of a run's parts starts at the run's lease
//! mark (table `lease_marks`), below which no part of the run waits: the index
//! keeps the entries of leased parts until vacuum, and each lease would walk
//! them all from the run's first part.
//!
//! A lease alone commits without waiting for the WAL flush. Losing it in a
//! database crash is harmless: the part is Waiting again at the attempt
//! before, the agent's result for the lost attempt is refused (never applied
//! twice), and the next result's commit flushes it anyway. Results do wait
//! for the flush, and so does a lease made in a result's transaction
//! (`jobstack_submit_and_lease`, see `results`). The body of the lease is
//! `jobstack_lease_in`, shared by both. The batches of finished results
//! (`finish_batch`, `jobstack_finish_and_lease`) lease with the same rules
//! written for several agents at once: a change to who may take which part is
//! made in both functions (the scheduler suite runs both paths: one agent at a
//! time, and many at once).
//!
//! Expiry locks the expired parts with `SKIP LOCKED` and rechecks them under
//! the lock, so two daemons sweeping at once handle each expired lease once.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Column, PgConnection, PgPool, Row};

use super::transition;
use crate::scheduler::{
    Agent, HeartbeatAck, Lease, LeaseRef, NewPart, ProgressReport, State, TaskSpec, retry,
};
use crate::store::{StoreError, StoreResult};
use crate::store::{from_ms, ms};

pub async fn lease(pool: &PgPool, agent: &Agent, now: DateTime<Utc>) -> StoreResult<Option<Lease>> {
    // One round trip: see `jobstack_lease_in.sql` for the locking.
    let row = sqlx::query("SELECT * FROM jobstack_lease($1, $2, $3, $4, $5)")
        .bind(ms(now))
        .bind(agent.id)
        .bind(&agent.registration.name)
        .bind(agent.registration.plugins.is_empty())
        .bind(&agent.registration.plugins)
        .fetch_optional(pool)
        .await?;
    match row {
        Some(row) => lease_from_row(&row, 0),
        None => Ok(None),
    }
}

/// The lease in `row`: the columns `jobstack_lease` returns, in its order,
/// from column `first` on (`jobstack_submit_and_lease` returns them after
/// the result's). `None` if they are NULL: no part was leased.
pub(super) fn lease_from_row(row: &PgRow, first: usize) -> StoreResult<Option<Lease>> {
    let Some(part_id) = row.try_get::<Option<i64>, _>(first)? else {
        return Ok(None);
    };
    let column = |n: usize| first + n;
    let spec: TaskSpec = parse(row, column(8))?;
    Ok(Some(Lease {
        part_id,
        run_id: row.try_get(column(1))?,
        task_id: row.try_get(column(7))?,
        attempt: row.try_get::<i64, _>(column(2))? as u32,
        expires_at: from_ms(row.try_get(column(3))?),
        plugin: spec.plugin,
        plugin_sha256: row.try_get(column(10))?,
        params: spec.params,
        secrets: parse(row, column(9))?,
        part: NewPart {
            label: row.try_get(column(4))?,
            targets: parse(row, column(5))?,
            payload: row.try_get(column(6))?,
        },
        timeout_ms: spec.timeout_ms,
        mode: spec.mode,
        grants: spec.grants,
    }))
}

fn parse<T: serde::de::DeserializeOwned>(row: &PgRow, column: usize) -> StoreResult<T> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| {
        let name = row.columns()[column].name();
        StoreError::Corrupt(format!("{name}: {e}"))
    })
}

/// Mark the agent seen (not more than once a second: it is the agent's row,
/// written by each of its requests).
pub async fn touch_agent(
    conn: &mut PgConnection, agent: &Agent, now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query("UPDATE agents SET last_seen = $1 WHERE id = $2 AND last_seen < $1 - 1000")
        .bind(ms(now))
        .bind(agent.id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn heartbeat(
    pool: &PgPool, agent: &Agent, held: &[LeaseRef], now: DateTime<Utc>,
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
    pool: &PgPool, agent: &Agent, report: &ProgressReport, now: DateTime<Utc>,
) -> StoreResult<()> {
    let (lease, (done, total)) = (report.lease_ref(), report.stored());
    let mut tx = pool.begin().await?;
    touch_agent(&mut tx, agent, now).await?;
    let stored = sqlx::query(
        "UPDATE parts SET progress_done = $1, progress_total = $2 \
         WHERE id = $3 AND state = 'running' AND attempt = $4 AND owner = $5",
    )
    .bind(done)
    .bind(total)
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
    // The earliest expired, handled in the order of their runs: a part made
    // waiting lowers its run's lease mark under the mark's row lock (trigger
    // parts_lower_lease_mark), and two sweeps that take those locks in one
    // order cannot deadlock.
    let rows = sqlx::query(
        "SELECT e.* FROM (SELECT p.id, p.run_id, p.attempt, p.owner, p.lease_expires_at, \
         r.retries, r.retry_backoff_ms FROM parts p JOIN runs r ON r.id = p.run_id \
         WHERE p.state = 'running' AND p.lease_expires_at < $1 ORDER BY p.lease_expires_at \
         LIMIT $2 FOR UPDATE OF p SKIP LOCKED) e ORDER BY e.run_id, e.id",
    )
    .bind(ms(now))
    .bind(EXPIRE_BATCH)
    .fetch_all(&mut *tx)
    .await?;
    let mut expired = Vec::with_capacity(rows.len());
    let mut retried = 0;
    for row in rows {
        let part_id: i64 = row.try_get("id")?;
        let run_id: i64 = row.try_get("run_id")?;
        let attempt = row.try_get::<i64, _>("attempt")? as u32;
        let owner: Option<String> = row.try_get("owner")?;
        let retries = row.try_get::<i64, _>("retries")? as u32;
        let backoff = chrono::TimeDelta::milliseconds(row.try_get("retry_backoff_ms")?);
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
        let (to, available_at) = retry::after_failure(attempt, retries, backoff, now);
        if to == State::Waiting {
            retried += 1;
        }
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
    if retried > 0 {
        super::notify_work(&mut tx, retried).await?;
    }
    tx.commit().await?;
    settle_runs(pool, now).await?;
    Ok(expired)
}

/// Let the state of runs whose parts are all done follow them. A result's
/// transaction ends its run when it can see that no part is left; this pass
/// catches a run whose ending was left to a transaction that did not commit
/// (a daemon that died between finishing the last part and ending the run).
async fn settle_runs(pool: &PgPool, now: DateTime<Utc>) -> StoreResult<()> {
    let unsettled: Vec<i64> = sqlx::query_scalar(
        "SELECT r.id FROM runs r WHERE r.state IN ('waiting', 'running', 'suspended') \
         AND NOT EXISTS (SELECT 1 FROM parts p WHERE p.run_id = r.id \
                         AND p.state IN ('waiting', 'running', 'suspended'))",
    )
    .fetch_all(pool)
    .await?;
    for run_id in unsettled {
        transition::refresh_run_alone(pool, run_id, now).await?;
    }
    Ok(())
}
