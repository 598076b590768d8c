//! Leasing on the writer thread.
//!
//! Leasing walks the runs the agent may take from in leasing order (rank,
//! oldest run) and in each the `parts_to_lease` index in split order, and
//! stops at the first part the agent may take: pinned to it or to nobody; its
//! run targets it by name, or targets automatically and one of its networks
//! holds the part's address span; the agent accepts the plugin; and the agent
//! holds no other part of that run.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{OptionalExtension, params};

use super::super::ms;
use super::statements::{Hot, WriterConn};
use super::transition;
use crate::scheduler::{Agent, Lease, NewPart, PartCounts, State, TaskSpec};
use crate::store::{StoreError, StoreResult};

/// The runs an agent may take from, in leasing order (rank: forced, priority;
/// then oldest): it targets the agent by name or automatically, and the agent
/// holds no part of it yet; with the run's plugin, which the caller checks
/// against the agent's. Runs are few; walking them first skips a run the agent
/// already holds a part of whole, instead of part by part (a million-part run,
/// an agent with several slots).
///
/// Written so that SQLite plans it without building anything per call: the
/// order is the index's (without `INDEXED BY` the planner chose
/// `runs_by_state` and sorted), and the holds are probed run by run in
/// `parts_by_owner` (`NOT IN` built a list of them first, as a plugin list in
/// SQL did).
pub(super) const RUNS_TO_LEASE: &str = "\
SELECT r.id, r.rank, r.explicit_agents, r.lease_ttl_ms, r.plugin FROM runs r INDEXED BY runs_to_lease
WHERE r.state IN ('waiting', 'running')
  AND (r.explicit_agents = 0
       OR EXISTS (SELECT 1 FROM run_agents ra WHERE ra.run_id = r.id AND ra.agent_name = ?1))
  AND NOT EXISTS (SELECT 1 FROM parts q
                  WHERE q.state = 'running' AND q.owner = ?1 AND q.run_id = r.id)
ORDER BY r.rank, r.id";

/// The first part of a run (index `parts_to_lease`) the agent may take: due,
/// pinned to it or to nobody, and for automatic targeting, inside one of its
/// networks. With what the lease hands out of the part and of its run (read
/// for the part found only, not for every run walked), and the run's state
/// and counters (`transition::run_state_at`).
pub(super) const PART_TO_LEASE: &str = "\
SELECT p.id, p.attempt, p.label, p.targets, p.payload,
       r.task_id, r.spec, r.secrets, r.plugin_sha256,
       r.state, r.n_waiting, r.n_running, r.n_suspended, r.n_finished, r.n_failed, r.n_canceled
FROM parts p JOIN runs r ON r.id = p.run_id
WHERE p.rank = ?1 AND p.run_id = ?2 AND p.state = 'waiting' AND p.available_at <= ?3
  AND (p.pinned_agent IS NULL OR p.pinned_agent = ?4)
  AND (p.span_lo IS NULL OR ?5
       OR EXISTS (SELECT 1 FROM agent_networks n
                  WHERE n.agent_id = ?6 AND n.lo <= p.span_lo AND p.span_hi <= n.hi))
ORDER BY p.rank, p.run_id, p.seq
LIMIT 1";

/// Take the part found: Running, the next attempt, owned by the agent until
/// the expiry.
pub(super) const LEASE_PART: &str = "UPDATE parts SET state = 'running', attempt = ?1, owner = ?2, \
     lease_expires_at = ?3, progress_done = NULL, progress_total = NULL \
     WHERE id = ?4 AND state = 'waiting'";

/// Record the lease of an attempt.
pub(super) const INSERT_LEASE: &str =
    "INSERT INTO leases (part_id, attempt, agent, leased_at) VALUES (?1, ?2, ?3, ?4)";

/// Mark the agent seen (`leasing::TOUCH_AGENT`).
pub fn touch_agent(conn: &WriterConn<'_>, agent: &Agent, now: DateTime<Utc>) -> StoreResult<()> {
    conn.prepared(Hot::TouchAgent)?
        .execute(params![ms(now), agent.id])?;
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
    conn: &WriterConn<'_>,
    agent: &Agent,
    now: DateTime<Utc>,
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
                params![
                    run.rank,
                    run.id,
                    ms(now),
                    name,
                    run.explicit_agents,
                    agent.id
                ],
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
    let expires_at = now + TimeDelta::milliseconds(run.lease_ttl_ms);
    let detail = transition::PartDetail {
        agent: name,
        attempt,
        status: None,
    };
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

/// A run's snapshot as its leases hand it out, with the text it was parsed
/// from.
pub(super) struct Snapshot {
    spec_text: String,
    secrets_text: String,
    spec: TaskSpec,
    secrets: serde_json::Value,
}

/// Run snapshots parsed by earlier leases, by run: every lease of a run's
/// parts hands out the same snapshot, and parsing it was a twentieth of the
/// writer's work per lease (callgrind). Found again only with the same text:
/// a run's snapshot never changes once stored, but this does not rely on it.
/// Kept on the writer thread, a few runs at a time.
#[derive(Default)]
pub(super) struct Snapshots(RefCell<HashMap<i64, Rc<Snapshot>>>);

impl Snapshots {
    /// Runs kept; the map is emptied when it would hold more.
    const KEPT: usize = 64;

    /// Run `run_id`'s snapshot parsed from `spec` and `secrets`.
    fn parsed(&self, run_id: i64, spec: &str, secrets: &str) -> StoreResult<Rc<Snapshot>> {
        if let Some(known) = self.0.borrow().get(&run_id)
            && known.spec_text == spec
            && known.secrets_text == secrets
        {
            return Ok(Rc::clone(known));
        }
        let snapshot = Rc::new(Snapshot {
            spec: parse("spec", spec)?,
            secrets: parse("secrets", secrets)?,
            spec_text: spec.to_owned(),
            secrets_text: secrets.to_owned(),
        });
        let mut kept = self.0.borrow_mut();
        if kept.len() >= Self::KEPT {
            kept.clear();
        }
        kept.insert(run_id, Rc::clone(&snapshot));
        Ok(snapshot)
    }
}

fn parse<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_snapshot_is_parsed_once_per_text() {
        let snapshots = Snapshots::default();
        let spec = serde_json::to_string(&TaskSpec::new("job", "test")).unwrap();
        let first = snapshots.parsed(1, &spec, "{}").unwrap();
        let again = snapshots.parsed(1, &spec, "{}").unwrap();
        assert!(Rc::ptr_eq(&first, &again), "found again, not parsed again");
        assert_eq!(again.spec.plugin, "test");
        // Another text under the same id is parsed, never taken for the first.
        let other = snapshots
            .parsed(1, &spec, r#"{"community": "s3cret"}"#)
            .unwrap();
        assert_eq!(other.secrets["community"], "s3cret");
        let error = snapshots.parsed(1, "not json", "{}").err().unwrap();
        assert!(matches!(error, StoreError::Corrupt(_)), "{error}");
    }

    #[test]
    fn the_snapshots_kept_are_bounded() {
        let snapshots = Snapshots::default();
        let spec = serde_json::to_string(&TaskSpec::new("job", "test")).unwrap();
        for run in 0..(Snapshots::KEPT as i64 * 3) {
            snapshots.parsed(run, &spec, "{}").unwrap();
            assert!(snapshots.0.borrow().len() <= Snapshots::KEPT);
        }
    }
}
