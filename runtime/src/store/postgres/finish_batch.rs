//! Finished results with the agents' next leases, applied for several agents
//! in one call (the `jobstack_finish_and_lease` function).
//!
//! Most requests an agent makes are "here is the result of the part I hold,
//! it finished; give me my next part". One at a time (`results`), each costs
//! the server a dozen single-row statements, and the server's CPU is what
//! limits a daemon on PostgreSQL. So [`FinishQueue`] gathers the requests that
//! arrive together and applies each gathering with one statement per step for
//! all of them (the pick of each agent's part is the only statement per
//! agent), in one transaction, one commit and one round trip.
//!
//! - The rules are the single call's: the compare-and-set assumes the agent
//!   still holds the lease (running, this attempt, this owner); an item whose
//!   part is not so is answered alone by [`results::submit_and_lease`], which
//!   reads the part and judges the result on it. A batch that fails whole (a
//!   copy of a result already recorded, a deadlock, a lost connection) is
//!   undone by PostgreSQL, and each of its items is applied alone too: nothing
//!   is applied twice (a result already recorded is answered "duplicate").
//! - One request per agent in a batch: a second one (another slot of the same
//!   agent) waits for the next batch, so that it sees the first one's lease
//!   (one part per run per agent).
//! - One batch runs at a time (per daemon); while it runs, requests gather
//!   for the next. A request that finds no batch running goes at once,
//!   alone: batching adds no wait of its own. Each call has a fixed cost on
//!   the server whatever its size (statements set up, a commit), so few large
//!   batches beat many small ones.
//! - Every caller is answered after the commit (which waits for the WAL
//!   flush, as a result's must), and after the runs the batch may have ended
//!   are refreshed, as after a single result. Should a refresh fail, the
//!   callers still get their committed answers; the sweep's `settle_runs`
//!   ends the run.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use std::collections::{BTreeSet, HashSet, VecDeque};
use tokio::sync::{mpsc, oneshot};

use super::{leasing, results, transition};
use crate::scheduler::{Agent, Lease, ResultAck, ResultStatus, Submission};
use crate::store::{StoreError, StoreResult, ms};

/// Most requests in one batch.
const MAX_BATCH: usize = 32;

const FINISH_AND_LEASE: &str = "SELECT * FROM jobstack_finish_and_lease($1, $2, $3, $4, $5, $6, \
     $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

/// The column of [`FINISH_AND_LEASE`] where the lease's begin
/// ([`leasing::lease_from_row`]).
const LEASE_COLUMNS: usize = 3;

/// What a caller gets: the result's acknowledgement and its next lease.
type Answer = StoreResult<(ResultAck, Option<Lease>)>;

/// One agent's finished result and request for its next part.
struct Finish {
    agent: Agent,
    submission: Submission,
    now: DateTime<Utc>,
    reply: oneshot::Sender<Answer>,
}

/// The queue of finished results waiting to be applied in batches. Cheap to
/// clone; the batches run on a task of their own, which ends when the last
/// clone is dropped.
#[derive(Debug, Clone)]
pub(super) struct FinishQueue {
    requests: mpsc::UnboundedSender<Finish>,
}

impl FinishQueue {
    /// Start the task applying batches on `pool`.
    pub(super) fn start(pool: PgPool) -> Self {
        let (requests, queue) = mpsc::unbounded_channel();
        tokio::spawn(gather(pool, queue));
        Self { requests }
    }

    /// Apply `s`, finished, and lease `agent`'s next part (see the module).
    /// Submissions of other statuses are for [`results::submit_and_lease`].
    pub(super) async fn finish_and_lease(
        &self, agent: &Agent, s: &Submission, now: DateTime<Utc>,
    ) -> Answer {
        debug_assert_eq!(s.status, ResultStatus::Finished);
        let (reply, answer) = oneshot::channel();
        let request = Finish { agent: agent.clone(), submission: s.clone(), now, reply };
        self.requests.send(request).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// Times the gathering task yields to the others before it takes a batch.
const YIELDS_BEFORE_A_BATCH: usize = 3;

/// Gather requests into batches and apply them, one at a time.
async fn gather(pool: PgPool, mut queue: mpsc::UnboundedReceiver<Finish>) {
    let mut waiting = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match queue.recv().await {
                Some(request) => waiting.push_back(request),
                None => return,
            }
        }
        // The callers the last batch answered were woken with it; a caller
        // that comes straight back with its next result (an agent in this
        // process, or a handler with a second request queued) joins this
        // batch if it runs first, rather than wait for the next one. A few
        // yields, not a timer: a request from the network is not waited for.
        for _ in 0..YIELDS_BEFORE_A_BATCH {
            tokio::task::yield_now().await;
        }
        // Requests gathered here while the last batch ran.
        while let Ok(request) = queue.try_recv() {
            waiting.push_back(request);
        }
        apply(&pool, take_batch(&mut waiting)).await;
    }
}

/// The next batch from `waiting`: in arrival order, one request per agent,
/// [`MAX_BATCH`] at most; the others stay, in their order.
fn take_batch(waiting: &mut VecDeque<Finish>) -> Vec<Finish> {
    let mut agents = HashSet::new();
    let mut batch = Vec::new();
    let mut left = VecDeque::new();
    while let Some(request) = waiting.pop_front() {
        if batch.len() < MAX_BATCH && agents.insert(request.agent.id) {
            batch.push(request);
        } else {
            left.push_back(request);
        }
    }
    *waiting = left;
    batch
}

/// What the batch call answered for one item.
struct ItemAnswer {
    /// The run of the item's part, if its result was applied.
    applied_in: Option<i64>,
    /// Whether that run has no waiting part left (it may have ended).
    refresh: bool,
    lease: Option<Lease>,
}

/// Apply `batch` and answer each of its callers.
async fn apply(pool: &PgPool, batch: Vec<Finish>) {
    let started = std::time::Instant::now();
    let answers = match call(pool, &batch).await {
        Ok(answers) => {
            tracing::trace!(
                size = batch.len(),
                applied = answers.iter().filter(|o| o.applied_in.is_some()).count(),
                took_us = started.elapsed().as_micros() as u64,
                "batch of finished results"
            );
            answers
        }
        Err(error) => {
            tracing::debug!(%error, size = batch.len(), "a batch of results failed; applying each alone");
            for request in batch {
                answer_alone(pool, request);
            }
            return;
        }
    };
    let now = batch_now(&batch);
    let ended: BTreeSet<i64> =
        answers.iter().filter(|o| o.refresh).filter_map(|o| o.applied_in).collect();
    for run_id in ended {
        // As after a single result: the run may have ended; should this fail
        // (or the daemon die), the sweep's `settle_runs` does it.
        if let Err(error) = transition::refresh_run_alone(pool, run_id, now).await {
            tracing::warn!(%error, run_id, "a run's state could not follow its parts; the sweep will");
        }
    }
    for (request, answer) in batch.into_iter().zip(answers) {
        if answer.applied_in.is_some() {
            let _ = request.reply.send(Ok((ResultAck::Applied, answer.lease)));
        } else {
            // The part is not as the batch assumed: judge it alone.
            answer_alone(pool, request);
        }
    }
}

/// Answer `request` with the one-at-a-time path, on a task of its own (it
/// must not hold up the batch's other callers).
fn answer_alone(pool: &PgPool, request: Finish) {
    let pool = pool.clone();
    tokio::spawn(async move {
        let Finish { agent, submission, now, reply } = request;
        let answer = results::submit_and_lease(&pool, &agent, &submission, now).await;
        let _ = reply.send(answer);
    });
}

/// The batch's time: the latest of its requests' (they arrived together).
fn batch_now(batch: &[Finish]) -> DateTime<Utc> {
    batch.iter().map(|r| r.now).max().unwrap_or_else(Utc::now)
}

/// One call of `jobstack_finish_and_lease` for `batch`; its answers in the
/// batch's order.
async fn call(pool: &PgPool, batch: &[Finish]) -> StoreResult<Vec<ItemAnswer>> {
    let n = batch.len();
    let mut parts = Vec::with_capacity(n);
    let mut attempts = Vec::with_capacity(n);
    let mut agents = Vec::with_capacity(n);
    let mut agent_ids = Vec::with_capacity(n);
    let mut outputs = Vec::with_capacity(n);
    let mut errors = Vec::with_capacity(n);
    let mut emitted = Vec::with_capacity(n);
    let mut logs = Vec::with_capacity(n);
    let mut started_at = Vec::with_capacity(n);
    let mut durations = Vec::with_capacity(n);
    let mut details = Vec::with_capacity(n);
    let mut any_plugin = Vec::with_capacity(n);
    // Each agent's plugins, flattened: the item (from 1) and the name.
    let mut plugin_of = Vec::new();
    let mut plugins = Vec::new();
    for (i, request) in batch.iter().enumerate() {
        let (agent, s) = (&request.agent, &request.submission);
        let name = &agent.registration.name;
        parts.push(s.part_id);
        attempts.push(i64::from(s.attempt));
        agents.push(name.as_str());
        agent_ids.push(agent.id);
        outputs.push(s.output.as_ref().map(|o| o.to_string()));
        errors.push(s.error.as_deref());
        emitted.push(serde_json::Value::from(s.emitted.clone()).to_string());
        logs.push(serde_json::Value::from(s.logs.clone()).to_string());
        started_at.push(s.started_at.map(ms));
        durations.push(i64::try_from(s.duration_ms).unwrap_or(i64::MAX));
        details.push(results::event_detail(name, s).to_string());
        any_plugin.push(agent.registration.plugins.is_empty());
        for plugin in &agent.registration.plugins {
            plugin_of.push(i32::try_from(i + 1).unwrap_or(i32::MAX));
            plugins.push(plugin.as_str());
        }
    }
    // Sorted, so that two batches take the agents' locks in the same order.
    let lock_ids: Vec<i64> =
        agent_ids.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
    let rows = sqlx::query(FINISH_AND_LEASE)
        .bind(ms(batch_now(batch)))
        .bind(&parts)
        .bind(&attempts)
        .bind(&agents)
        .bind(&agent_ids)
        .bind(&outputs)
        .bind(&errors)
        .bind(&emitted)
        .bind(&logs)
        .bind(&started_at)
        .bind(&durations)
        .bind(&details)
        .bind(&any_plugin)
        .bind(&plugin_of)
        .bind(&plugins)
        .bind(&lock_ids)
        .fetch_all(pool)
        .await?;
    let mut answers: Vec<Option<ItemAnswer>> = (0..n).map(|_| None).collect();
    for row in &rows {
        let item = row.try_get::<i32, _>("item")?;
        let slot = usize::try_from(item)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| answers.get_mut(i))
            .ok_or_else(|| {
                StoreError::Corrupt(format!("jobstack_finish_and_lease: item {item}"))
            })?;
        *slot = Some(item_answer(row)?);
    }
    answers
        .into_iter()
        .map(|o| {
            o.ok_or_else(|| {
                StoreError::Corrupt("jobstack_finish_and_lease left an item out".into())
            })
        })
        .collect()
}

fn item_answer(row: &PgRow) -> StoreResult<ItemAnswer> {
    let outcome: String = row.try_get("outcome")?;
    let applied_in: Option<i64> = row.try_get("run_id")?;
    let lease = leasing::lease_from_row(row, LEASE_COLUMNS).unwrap_or_else(|error| {
        tracing::warn!(%error, "the lease after a result could not be read; it will expire");
        None
    });
    match (outcome.as_str(), applied_in) {
        ("conflict", None) => Ok(ItemAnswer { applied_in: None, refresh: false, lease: None }),
        ("changed" | "refresh", Some(_)) => {
            Ok(ItemAnswer { applied_in, refresh: outcome == "refresh", lease })
        }
        _ => Err(StoreError::Corrupt(format!(
            "jobstack_finish_and_lease answered {outcome:?} for run {applied_in:?}"
        ))),
    }
}

#[cfg(test)]
mod tests;
