//! Leasing on the writer thread.
//!
//! Leasing walks the runs the agent may take from in leasing order (rank,
//! oldest run) and in each the `parts_to_lease` index in split order, and
//! stops at the first part the agent may take: pinned to it or to nobody; its
//! run targets it by name, or targets automatically and one of its networks
//! holds the part's address span; the agent accepts the plugin; and the agent
//! holds no other part of that run.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::snapshots::parse;
use super::statements::{Hot, WriterConn};
use super::transition;
use crate::scheduler::{Agent, Lease, NewPart, PartCounts, State, lease_expiry};
use crate::store::{StoreError, StoreResult, ms};

/// Mark the agent seen (not more than once a second: it is the agent's
/// row, and without writing it a lease that finds nothing writes nothing).
pub fn touch_agent(conn: &WriterConn<'_>, agent: &Agent, now: DateTime<Utc>) -> StoreResult<()> {
    conn.prepared(Hot::TouchAgent)?.execute(params![ms(now), agent.id])?;
    Ok(())
}

/// A run the agent may take from.
struct Candidate {
    id: i64,
    rank: i64,
    explicit_agents: bool,
    lease_ttl_ms: i64,
}

/// What a lease hands out of the part found and of its run.
struct Found {
    part_id: i64,
    attempt: i64,
    label: String,
    targets: String,
    payload: String,
    task_id: i64,
    spec: String,
    secrets: String,
    plugin_sha256: String,
    /// The run's state and counters.
    run: (String, PartCounts),
}

/// Lease the best part `agent` may take, inside the batch's transaction
/// (the caller marks the agent seen: once per operation).
pub fn lease(
    conn: &WriterConn<'_>, agent: &Agent, now: DateTime<Utc>,
) -> StoreResult<Option<Lease>> {
    let name = &agent.registration.name;
    let accepts = |plugin: &str| {
        let plugins = &agent.registration.plugins;
        plugins.is_empty() || plugins.iter().any(|p| p == plugin)
    };
    let mut runs = Vec::new();
    let mut walk = conn.prepared(Hot::RunsToLease)?;
    let mut rows = walk.query([name])?;
    while let Some(row) = rows.next()? {
        let plugin = row.get_ref(4)?.as_str();
        if accepts(plugin.map_err(|e| StoreError::Corrupt(format!("runs.plugin: {e}")))?) {
            runs.push(Candidate {
                id: row.get(0)?,
                rank: row.get(1)?,
                explicit_agents: row.get(2)?,
                lease_ttl_ms: row.get(3)?,
            });
        }
    }
    drop(rows);
    drop(walk);
    let mut find = conn.prepared(Hot::PartToLease)?;
    let mut picked = None;
    for run in &runs {
        let part = find
            .query_row(
                params![run.rank, run.id, ms(now), name, run.explicit_agents, agent.id],
                |row| {
                    Ok(Found {
                        part_id: row.get(0)?,
                        attempt: row.get(1)?,
                        label: row.get(2)?,
                        targets: row.get(3)?,
                        payload: row.get(4)?,
                        task_id: row.get(5)?,
                        spec: row.get(6)?,
                        secrets: row.get(7)?,
                        plugin_sha256: row.get(8)?,
                        run: transition::run_state_at(row, 9)?,
                    })
                },
            )
            .optional()?;
        if let Some(part) = part {
            picked = Some((run, part));
            break;
        }
    }
    drop(find);
    let Some((run, part)) = picked else {
        return Ok(None);
    };
    let attempt = part.attempt as u32 + 1;
    let expires_at = lease_expiry(now, run.lease_ttl_ms);
    let detail = transition::PartDetail { agent: name, attempt, status: None };
    let before = transition::RunBefore::new(conn, run.id, part.run)?;
    transition::move_part_with(
        conn,
        Hot::LeasePart,
        params![i64::from(attempt), name, ms(expires_at), part.part_id],
        &before,
        part.part_id,
        (State::Waiting, State::Running),
        now,
        &detail,
    )?;
    conn.prepared(Hot::InsertLease)?.execute(params![
        part.part_id,
        i64::from(attempt),
        name,
        ms(now)
    ])?;
    let snapshot = conn.snapshots.parsed(run.id, &part.spec, &part.secrets)?;
    let spec = &snapshot.spec;
    Ok(Some(Lease {
        part_id: part.part_id,
        run_id: run.id,
        task_id: part.task_id,
        attempt,
        expires_at,
        plugin: spec.plugin.clone(),
        plugin_sha256: part.plugin_sha256,
        params: spec.params.clone(),
        secrets: snapshot.secrets.clone(),
        part: NewPart {
            label: part.label,
            targets: parse("targets", &part.targets)?,
            payload: part.payload,
        },
        timeout_ms: spec.timeout_ms,
        mode: spec.mode,
        grants: spec.grants.clone(),
    }))
}
