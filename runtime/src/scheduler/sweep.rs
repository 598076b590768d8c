//! The background sweep: [`Scheduler::tick`], run every second by the daemon.
//! Each step is a store operation of its own, so a step that fails leaves the
//! others' work done, and the next pass retries it.

use chrono::TimeDelta;

use super::service::{SchedulerError, SchedulerResult};
use super::store::{Recurrence, StoreError};
use super::{LeaseRef, RunCause, Scheduler};

/// What one [`Scheduler::tick`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Leases that expired.
    pub expired: Vec<LeaseRef>,
    /// Runs created by recurrence.
    pub scheduled: Vec<i64>,
    /// Due tasks held back because their previous run is still active.
    pub held_back: Vec<i64>,
    /// Runs left in Created by an interrupted split, split now.
    pub resplit: Vec<i64>,
    /// Runs started by the end of a run of the task they follow.
    pub chained: Vec<i64>,
    /// Agents found down.
    pub agents_down: Vec<String>,
    /// Agents back up.
    pub agents_up: Vec<String>,
}

/// A Created run older than this is split by the sweep (its creator died or its
/// split was interrupted); younger ones are being split by whoever made them.
const STALE_SPLIT: TimeDelta = TimeDelta::seconds(30);

/// Upstream runs looked at per follower and pass.
const CHAIN_BATCH: u32 = 16;

impl Scheduler {
    /// One pass of the background sweep, in order:
    ///
    /// 1. expire leases past their expiry (parts retry with backoff or fail);
    /// 2. create the runs of due recurring tasks: one run per due task however
    ///    many occurrences were missed, held back while the previous run is
    ///    active unless the task allows overlap; the claim is a compare-and-set
    ///    on the task's next run time, so one daemon wins each occurrence;
    /// 3. start the runs of tasks that follow another ([`super::chain`]),
    ///    held back the same way;
    /// 4. split runs left in Created by an interrupted split;
    /// 5. mark agents down (no request for the set time) and up again.
    pub async fn tick(&self) -> SchedulerResult<TickReport> {
        let mut report = TickReport::default();
        let now = self.now();

        report.expired = self.store.expire_leases(now).await?;
        if !report.expired.is_empty() {
            self.work.notify_parts(report.expired.len() as u64);
        }
        self.schedule_due(&mut report).await?;
        self.start_chained(&mut report).await?;

        for run in self.store.created_runs().await? {
            if now - run.created_at < STALE_SPLIT {
                continue;
            }
            match self.split_run(&run).await {
                Ok(_) => report.resplit.push(run.id),
                // Another daemon split it meanwhile.
                Err(SchedulerError::Store(StoreError::Invalid(_))) => {}
                Err(e) => return Err(e),
            }
        }

        if now >= self.monitor_from {
            let cutoff = now.checked_sub_signed(self.agent_down_after).unwrap_or(now);
            let changes = self.store.monitor_agents(cutoff, now).await?;
            report.agents_down = changes.down;
            report.agents_up = changes.up;
        }
        Ok(report)
    }

    /// Step 2: the runs of due recurring tasks.
    async fn schedule_due(&self, report: &mut TickReport) -> SchedulerResult<()> {
        let now = self.now();
        for task in self.store.due_tasks(now).await? {
            let Some(due) = task.next_run_at else {
                continue;
            };
            if !task.spec.allow_overlap && !self.store.active_runs(task.id).await?.is_empty() {
                report.held_back.push(task.id);
                continue;
            }
            let next = task
                .spec
                .frequency
                .after(due, now)
                .map_err(|e| SchedulerError::InvalidTask(e.to_string()))?;
            let mut new = match self.snapshot(&task, RunCause::Scheduled).await {
                Ok(new) => new,
                Err(SchedulerError::UnknownPlugin(name)) => {
                    tracing::warn!(task = task.id, plugin = %name, "due task skipped: plugin missing");
                    self.store.set_next_run(task.id, Some(due), next).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            // Selected before the claim: the claimed run is the snapshot.
            let selected = self.select(&mut new).await;
            let recurrence = Recurrence { task_id: task.id, due, next };
            if let Some(run) = self.store.claim_recurrence(&recurrence, &new, now).await? {
                report.scheduled.push(run.id);
                match selected {
                    Ok(()) => self.split_run(&run).await?,
                    Err(why) => self.fail_created(run.id, &format!("select failed: {why}")).await?,
                };
            }
        }
        Ok(())
    }

    /// Step 3: the runs of tasks that follow another, one per upstream run
    /// that ended as their trigger says, in the order those ended.
    async fn start_chained(&self, report: &mut TickReport) -> SchedulerResult<()> {
        for follower in self.store.followers().await? {
            let (Some(trigger), Some(since)) = (&follower.spec.after, follower.chained_since)
            else {
                continue;
            };
            let Some(upstream) = self.store.task_by_name(&trigger.task).await? else {
                continue;
            };
            let states = trigger.on.states();
            let ended =
                self.store.runs_to_chain(upstream.id, follower.id, states, since, CHAIN_BATCH);
            for cause in ended.await? {
                let busy = !follower.spec.allow_overlap
                    && !self.store.active_runs(follower.id).await?.is_empty();
                if busy {
                    // Its turn comes when the follower's run ends.
                    report.held_back.push(follower.id);
                    break;
                }
                match self.chain(&follower, cause.id).await {
                    Ok(Some(run)) => report.chained.push(run.id),
                    Ok(None) => {}
                    Err(SchedulerError::UnknownPlugin(name)) => {
                        tracing::warn!(task = follower.id, plugin = %name, "chained run waits: plugin missing");
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}
