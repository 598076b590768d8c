//! [`Scheduler`]: the operations the API and the in-process agent call, on top
//! of a [`Store`], a [`Clock`] and a [`Splitter`].

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;
use std::time::Duration;

use super::store::{Store, StoreError, TaskWrite};
use super::{
    Agent, Clock, HeartbeatAck, LEASE_GRACE, Lease, LeaseRef, NewPart, NewRun, Part,
    ProgressReport, ResultAck, Run, RunCause, Selection, State, Submission, Task, TaskSpec,
    WorkSignal, cycle_through, selected_targets, targeting,
};

/// Cuts a run into parts: the plugin's `split`, run by the daemon's engine. The
/// scheduler only takes the parts as data.
#[async_trait]
pub trait Splitter: Send + Sync + 'static {
    /// The parts of a run of `plugin_sha256` with `params`, or why there are none.
    async fn split(
        &self, plugin_sha256: &str, params: &serde_json::Value,
    ) -> Result<Vec<NewPart>, String>;
}

/// Why a scheduler operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The task definition is not valid.
    #[error("invalid task: {0}")]
    InvalidTask(String),
    /// No plugin of that name was uploaded.
    #[error("unknown plugin {0:?}: upload it first")]
    UnknownPlugin(String),
    /// A trigger would make tasks start each other in a loop: the task names
    /// along it.
    #[error("the trigger would make a cycle: {}", .0.join(" → "))]
    Cycle(Vec<String>),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A scheduler operation's result.
pub type SchedulerResult<T> = Result<T, SchedulerError>;

/// An agent with no request for this long is down, by default: six missed
/// heartbeats.
pub const DEFAULT_AGENT_DOWN_AFTER: Duration = Duration::from_secs(60);

/// The scheduler. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Scheduler {
    pub(super) store: Arc<dyn Store>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) splitter: Arc<dyn Splitter>,
    pub(super) selection: Option<Arc<dyn Selection>>,
    pub(super) work: WorkSignal,
    pub(super) agent_down_after: TimeDelta,
    /// The lease grace of tasks that set none.
    pub(super) lease_grace: Duration,
    /// Agents are judged only from here on: after a start, they get the
    /// whole delay to come back before one is called down.
    pub(super) monitor_from: DateTime<Utc>,
}

impl Scheduler {
    /// A scheduler over `store`, reading time from `clock`, splitting runs with
    /// `splitter`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, splitter: Arc<dyn Splitter>) -> Self {
        let agent_down_after = TimeDelta::from_std(DEFAULT_AGENT_DOWN_AFTER).expect("a minute");
        let monitor_from = clock.now() + agent_down_after;
        Self {
            store,
            clock,
            splitter,
            selection: None,
            work: WorkSignal::new(),
            agent_down_after,
            lease_grace: LEASE_GRACE,
            monitor_from,
        }
    }

    /// Give leases of tasks that set no `lease_grace_ms` this grace (agents
    /// heartbeat every third of it).
    pub fn with_lease_grace(mut self, grace: Duration) -> Self {
        self.lease_grace = grace;
        self
    }

    /// How often agents heartbeat (the daemon tells each at registration): a
    /// third of the lease grace, so two lost heartbeats still keep a lease.
    pub fn heartbeat_interval(&self) -> Duration {
        self.lease_grace / 3
    }

    /// Resolve task selectors with `selection` (the inventory); without it a
    /// task with a selector is refused.
    pub fn with_selection(mut self, selection: Arc<dyn Selection>) -> Self {
        self.selection = Some(selection);
        self
    }

    /// Call an agent down after `after` without a request.
    pub fn with_agent_down_after(mut self, after: Duration) -> Self {
        self.agent_down_after = TimeDelta::from_std(after).unwrap_or(TimeDelta::MAX);
        self.monitor_from = self
            .clock
            .now()
            .checked_add_signed(self.agent_down_after)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self
    }

    /// The store, for reads (listings, results, events).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Now, by the scheduler's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The signal that wakes agents waiting for work.
    pub fn work_signal(&self) -> &WorkSignal {
        &self.work
    }

    // ---- tasks ---------------------------------------------------------------

    /// Check a definition, as an edit of `old` when given.
    async fn check_spec(&self, spec: &TaskSpec, old: Option<&Task>) -> SchedulerResult<()> {
        spec.validate().map_err(SchedulerError::InvalidTask)?;
        if self.store.latest_plugin(&spec.plugin).await?.is_none() {
            return Err(SchedulerError::UnknownPlugin(spec.plugin.clone()));
        }
        if let Some(select) = &spec.select {
            let selection = self.selection.as_ref().ok_or_else(|| {
                SchedulerError::InvalidTask("this daemon has no inventory to select from".into())
            })?;
            selection
                .check(select)
                .map_err(|e| SchedulerError::InvalidTask(format!("select: {e}")))?;
        }
        let renamed = old.filter(|old| old.spec.name != spec.name);
        if spec.after.is_none() && renamed.is_none() {
            return Ok(());
        }
        let followers = self.store.followers().await?;
        if let Some(trigger) = &spec.after {
            if self.store.task_by_name(&trigger.task).await?.is_none() {
                return Err(SchedulerError::InvalidTask(format!(
                    "after.task: there is no task named {:?}",
                    trigger.task
                )));
            }
            let follows = followers
                .iter()
                .filter(|f| Some(f.id) != old.map(|o| o.id))
                .filter_map(|f| Some((f.spec.name.clone(), f.spec.after.as_ref()?.task.clone())))
                .collect();
            if let Some(cycle) = cycle_through(&spec.name, &trigger.task, &follows) {
                return Err(SchedulerError::Cycle(cycle));
            }
        }
        if let Some(old) = renamed {
            let follower = followers
                .iter()
                .find(|f| f.spec.after.as_ref().is_some_and(|t| t.task == old.spec.name));
            if let Some(f) = follower {
                return Err(SchedulerError::InvalidTask(format!(
                    "task {:?} follows this task by its name: change its trigger before renaming",
                    f.spec.name
                )));
            }
        }
        Ok(())
    }

    /// Create a task; its first run is created by the next [`tick`](Self::tick)
    /// once due (at once for `once` and `every`).
    pub async fn create_task(
        &self, spec: &TaskSpec, secrets: &serde_json::Value,
    ) -> SchedulerResult<Task> {
        self.check_spec(spec, None).await?;
        if !secrets.is_object() {
            return Err(SchedulerError::InvalidTask("secrets must be a JSON object".into()));
        }
        let now = self.now();
        let first =
            spec.frequency.first(now).map_err(|e| SchedulerError::InvalidTask(e.to_string()))?;
        let task = TaskWrite {
            spec: spec.clone(),
            secrets: Some(secrets.clone()),
            next_run_at: first,
            chained_since: spec.after.as_ref().map(|_| now),
        };
        Ok(self.store.create_task(&task, now).await?)
    }

    /// Replace a task's definition (secrets too, when given). Runs already
    /// created keep their snapshot. A changed frequency restarts the schedule.
    pub async fn update_task(
        &self, id: i64, spec: &TaskSpec, secrets: Option<&serde_json::Value>,
    ) -> SchedulerResult<Task> {
        let old = self.store.existing_task(id).await?;
        self.check_spec(spec, Some(&old)).await?;
        if secrets.is_some_and(|s| !s.is_object()) {
            return Err(SchedulerError::InvalidTask("secrets must be a JSON object".into()));
        }
        let now = self.now();
        let next = if old.spec.frequency == spec.frequency {
            old.next_run_at
        } else {
            spec.frequency.first(now).map_err(|e| SchedulerError::InvalidTask(e.to_string()))?
        };
        // A changed trigger follows from now on; an unchanged one keeps its
        // start, so no upstream run that ended meanwhile is lost.
        let chained_since = match &spec.after {
            None => None,
            Some(after) if old.spec.after.as_ref() == Some(after) => old.chained_since,
            Some(_) => Some(now),
        };
        let task = TaskWrite {
            spec: spec.clone(),
            secrets: secrets.cloned(),
            next_run_at: next,
            chained_since,
        };
        Ok(self.store.update_task(id, &task, now).await?)
    }

    pub(super) async fn snapshot(&self, task: &Task, cause: RunCause) -> SchedulerResult<NewRun> {
        // Both reads at once: a forced run's admin, and the agents it wakes,
        // wait for them.
        let (plugin, secrets) = tokio::try_join!(
            self.store.latest_plugin(&task.spec.plugin),
            self.store.task_secrets(task.id)
        )?;
        let plugin =
            plugin.ok_or_else(|| SchedulerError::UnknownPlugin(task.spec.plugin.clone()))?;
        let mut spec = task.spec.clone();
        spec.lease_grace_ms.get_or_insert(self.lease_grace.as_millis() as u64);
        Ok(NewRun {
            task_id: task.id,
            spec,
            secrets,
            plugin_sha256: plugin.sha256,
            cause,
            rerun_of: None,
            caused_by: None,
        })
    }

    /// Resolve the run's selector, if its task has one, into its snapshot of
    /// the parameters; why not, when it cannot.
    pub(super) async fn select(&self, new: &mut NewRun) -> Result<(), String> {
        let Some(select) = &new.spec.select else {
            return Ok(());
        };
        let selection =
            self.selection.as_ref().ok_or("this daemon has no inventory to select from")?;
        let targets = selection.resolve(select, self.now()).await?;
        new.spec.params = select.fill(&new.spec.params, &targets);
        Ok(())
    }

    /// Split `params` with the plugin `plugin_sha256` as a run would, storing
    /// nothing (bounded by the splitter's budget): a task's parameters are
    /// checked when it is defined. The number of parts, or the split's error.
    pub async fn check_split(
        &self, plugin_sha256: &str, params: &serde_json::Value,
    ) -> Result<usize, String> {
        self.splitter.split(plugin_sha256, params).await.map(|parts| parts.len())
    }

    /// The parts of a run with `spec`: its plugin's `split`, or none when
    /// its selector selected nothing.
    async fn split(&self, plugin_sha256: &str, spec: &TaskSpec) -> Result<Vec<NewPart>, String> {
        if selected_targets(spec).is_some_and(|t| t.is_empty()) {
            return Ok(Vec::new());
        }
        self.splitter.split(plugin_sha256, &spec.params).await
    }

    async fn run(&self, id: i64) -> SchedulerResult<Run> {
        Ok(self
            .store
            .run(id)
            .await?
            .ok_or(StoreError::NotFound { what: "run", id: id.to_string() })?)
    }

    // ---- runs ----------------------------------------------------------------

    /// Split a Created run and store its parts (or fail it with the split's
    /// error), then wake the agents.
    pub async fn split_run(&self, run: &Run) -> SchedulerResult<Run> {
        let split = self.split(&run.plugin_sha256, &run.spec).await;
        let now = self.now();
        let parts = match split {
            Ok(parts) => parts,
            Err(error) => {
                return self.fail_created(run.id, &format!("split failed: {error}")).await;
            }
        };
        let stored = self.store.add_parts(run.id, &parts, now).await?;
        self.work.notify_parts(parts.len() as u64);
        Ok(stored)
    }

    /// Mark a Created run Failed, saying why.
    pub(super) async fn fail_created(&self, run_id: i64, why: &str) -> SchedulerResult<Run> {
        Ok(self.store.fail_run(run_id, why, self.now()).await?)
    }

    /// Force a run of `task` (as the caller just read it) now, above every
    /// priority, and wake the agents.
    ///
    /// Split first, then the run and its parts stored in one transaction: the
    /// admin waits for one commit, not two (a recurring run is created before
    /// its split instead, in the transaction that claims its due time).
    pub async fn force_run(&self, task: &Task) -> SchedulerResult<Run> {
        let new = self.snapshot(task, RunCause::Forced).await?;
        self.start(new).await
    }

    /// Select, split and store a new run with its parts in one transaction,
    /// and wake the agents. A run whose selector or split fails is kept as
    /// a failed run, so the admin sees why.
    async fn start(&self, mut new: NewRun) -> SchedulerResult<Run> {
        let split = match self.select(&mut new).await {
            Ok(()) => self
                .split(&new.plugin_sha256, &new.spec)
                .await
                .map_err(|e| format!("split failed: {e}")),
            Err(why) => Err(format!("select failed: {why}")),
        };
        let now = self.now();
        let parts = match split {
            Ok(parts) => parts,
            Err(why) => {
                let run = self.store.create_run(&new, now).await?;
                return self.fail_created(run.id, &why).await;
            }
        };
        let run = self.store.create_run_with_parts(&new, &parts, now).await?;
        self.work.notify_parts(parts.len() as u64);
        Ok(run)
    }

    /// Start a run of `follower` caused by the end of upstream run `cause`;
    /// `None` when another daemon started it first.
    pub(super) async fn chain(&self, follower: &Task, cause: i64) -> SchedulerResult<Option<Run>> {
        let mut new = self.snapshot(follower, RunCause::Chained).await?;
        new.caused_by = Some(cause);
        match self.start(new).await {
            Ok(run) => Ok(Some(run)),
            Err(SchedulerError::Store(StoreError::Conflict { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Run a run again with the same snapshot (definition, secrets, plugin
    /// module): all its parts, or only those that failed or were canceled.
    ///
    /// For an `each_agent` run, a failed-only re-run repeats the failed parts on
    /// the agents where a copy failed.
    pub async fn rerun(&self, run_id: i64, failed_only: bool) -> SchedulerResult<Run> {
        let old = self.run(run_id).await?;
        let all = self.store.parts(run_id).await?;
        let selected: Vec<&Part> = all
            .iter()
            .filter(|p| !failed_only || matches!(p.state, State::Failed | State::Canceled))
            .collect();
        if failed_only && selected.is_empty() {
            return Err(SchedulerError::InvalidTask(format!(
                "run {run_id} has no failed parts to re-run"
            )));
        }
        let mut spec = old.spec.clone();
        if spec.targeting.each_agent && failed_only {
            let failed_on: Vec<&String> =
                selected.iter().filter_map(|p| p.pinned_agent.as_ref()).collect();
            spec.targeting.agents.retain(|a| failed_on.contains(&a));
        }
        // The copies of one split part share `seq / copies`.
        let copies = old.spec.targeting.pins().len().max(1) as i64;
        let mut parts: Vec<NewPart> = Vec::new();
        let mut last_original = None;
        for p in selected {
            let original = p.seq / copies;
            if last_original == Some(original) {
                continue;
            }
            last_original = Some(original);
            parts.push(NewPart {
                label: p.label.clone(),
                targets: p.targets.clone(),
                payload: p.payload.clone(),
            });
        }
        let new = NewRun {
            task_id: old.task_id,
            spec,
            secrets: self.store.run_secrets(run_id).await?,
            plugin_sha256: old.plugin_sha256.clone(),
            cause: RunCause::Rerun,
            rerun_of: Some(run_id),
            caused_by: None,
        };
        let run = self.store.create_run_with_parts(&new, &parts, self.now()).await?;
        self.work.notify_parts(parts.len() as u64);
        Ok(run)
    }

    /// Suspend a run: its waiting parts are not leased until resumed.
    pub async fn suspend(&self, run_id: i64) -> SchedulerResult<Run> {
        Ok(self.store.suspend_run(run_id, self.now()).await?)
    }

    /// Resume a suspended run and wake the agents.
    pub async fn resume(&self, run_id: i64) -> SchedulerResult<Run> {
        let run = self.store.resume_run(run_id, self.now()).await?;
        self.work.notify();
        Ok(run)
    }

    /// Cancel a run: open parts canceled, leases revoked.
    pub async fn cancel(&self, run_id: i64) -> SchedulerResult<Run> {
        Ok(self.store.cancel_run(run_id, self.now()).await?)
    }

    /// A run's parts, in split order; a waiting part that no registered
    /// agent may take says why in `unassignable`.
    pub async fn parts(&self, run_id: i64) -> SchedulerResult<Vec<Part>> {
        let run = self.run(run_id).await?;
        let agents = self.store.agents().await?;
        let mut parts = self.store.parts(run_id).await?;
        targeting::explain_waiting(&agents, &run, &mut parts);
        Ok(parts)
    }

    /// Waiting parts of a run that no registered agent may take (wrong
    /// networks, unknown agent names, no agent accepting the plugin).
    pub async fn unassignable_parts(&self, run_id: i64) -> SchedulerResult<Vec<Part>> {
        let parts = self.parts(run_id).await?;
        Ok(parts.into_iter().filter(|p| p.unassignable.is_some()).collect())
    }

    // ---- agents --------------------------------------------------------------

    /// Lease the best part `agent` may take, or `None`.
    pub async fn lease(&self, agent: &Agent) -> SchedulerResult<Option<Lease>> {
        Ok(self.store.lease(agent, self.now()).await?)
    }

    /// Lease a part, waiting up to `wait` for one (the agents' long-poll): new
    /// or forced work wakes the wait at once; every `recheck` it looks again
    /// anyway, for parts whose retry backoff ended without a signal (and for
    /// work another daemon added, when the store cannot signal it).
    pub async fn lease_waiting(
        &self, agent: &Agent, wait: Duration, recheck: Duration,
    ) -> SchedulerResult<Option<Lease>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut waiter = self.work.waiter(agent.id);
        loop {
            // Ready for wakes before looking, so work added while we look
            // wakes the wait below.
            let look = waiter.look();
            let lease = self.lease(agent).await?;
            look.found(lease.is_some());
            if lease.is_some() {
                return Ok(lease);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let nap = (deadline - now).min(recheck);
            let _ = tokio::time::timeout(nap, waiter.woken()).await;
        }
    }

    /// Extend the leases the agent still works on.
    ///
    /// A lease the agent lost because it expired, while its part is still open
    /// (waiting, or running under another agent's newer lease), is reported as
    /// `superseded` rather than `revoked`: the agent may finish the work, and
    /// its late success is accepted once by the fencing rule (the seed's agent
    /// B). A lease whose part is finished, failed, canceled or suspended is
    /// `revoked`: the work is no longer wanted.
    pub async fn heartbeat(
        &self, agent: &Agent, held: &[LeaseRef],
    ) -> SchedulerResult<HeartbeatAck> {
        let mut ack = self.store.heartbeat(agent, held, self.now()).await?;
        let lost = std::mem::take(&mut ack.revoked);
        for lease in lost {
            let still_open = match self.store.part(lease.part_id).await? {
                // Another agent's live lease was never this agent's: not its
                // work to finish.
                Some(part)
                    if part.state == State::Running
                        && part.attempt == lease.attempt
                        && part.owner.as_ref() != Some(&agent.registration.name) =>
                {
                    false
                }
                Some(part) => {
                    matches!(part.state, State::Waiting | State::Running)
                        && part.attempt >= lease.attempt
                }
                None => false,
            };
            if still_open {
                ack.superseded.push(lease);
            } else {
                ack.revoked.push(lease);
            }
        }
        Ok(ack)
    }

    /// Store progress of a leased part.
    pub async fn progress(&self, agent: &Agent, report: &ProgressReport) -> SchedulerResult<()> {
        Ok(self.store.progress(agent, report, self.now()).await?)
    }

    /// Apply a result under the fencing rule. A retried part wakes the agents.
    pub async fn submit(&self, agent: &Agent, result: &Submission) -> SchedulerResult<ResultAck> {
        let ack = self.store.submit(agent, result, self.now()).await?;
        self.after_result(agent, result, ack, false);
        Ok(ack)
    }

    /// Apply a result, then lease the agent's next part without waiting: one
    /// request where an agent would make two (see
    /// [`Store::submit_and_lease`]). `Err`: the result was not applied.
    pub async fn submit_and_lease(
        &self, agent: &Agent, result: &Submission,
    ) -> SchedulerResult<(ResultAck, Option<Lease>)> {
        let (ack, lease) = self.store.submit_and_lease(agent, result, self.now()).await?;
        self.after_result(agent, result, ack, true);
        Ok((ack, lease))
    }

    /// Wake whom an applied result concerns; `leased_after`: a lease for the
    /// same agent followed the result in the same call.
    fn after_result(&self, agent: &Agent, result: &Submission, ack: ResultAck, leased_after: bool) {
        if ack == ResultAck::Applied && result.status != super::ResultStatus::Finished {
            // A retried part is waiting again.
            self.work.notify_parts(1);
        }
        if !leased_after && matches!(ack, ResultAck::Applied | ResultAck::AcceptedLate) {
            // The agent no longer holds this part: a long-poll of its held
            // back by "one part per run per agent" may lease now. Not when
            // a lease followed the result: it looked first and took the best
            // part the agent may take, usually of the same run, which holds
            // the long-polls back again. Waking them would cost an empty
            // lease per waiting slot and part; in the rare case where one
            // could have leased, its recheck finds the part.
            self.work.notify_agent(agent.id);
        }
    }
}
