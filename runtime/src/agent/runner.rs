//! [`AgentLoop`]: the pull loop of an agent.
//!
//! One loop asks the scheduler for a part whenever an execution slot is free
//! (long-poll), and hands each lease to its own task, which readies the module,
//! computes the grants, runs the plugin in the engine, reports progress, and
//! sends the result through the spool. The result asks for the agent's next
//! part in the same request; while one comes back, the task runs it on the
//! same slot, so a busy agent makes one request per part, not two. Beside
//! them, a heartbeat task extends the leases in progress (stopping the
//! executions whose lease was revoked) and a delivery task re-sends what the
//! spool holds whenever the scheduler was away.
//!
//! Shutdown stops leasing, gives running executions the grace period to end,
//! stops the rest (their canceled results are sent, so their parts are retried
//! at once rather than after their lease expires) and delivers what it can;
//! undelivered results stay in the spool for the next start.

use chrono::Utc;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::artifacts::{ARTIFACTS_GUEST_PATH, ArtifactCache, ArtifactFetchError};
use super::grants::grants_for;
use super::link::{AgentLink, LinkError};
use super::modules::{ModuleCache, ModuleError};
use super::settings::AgentSettings;
use super::spool::{Spool, SpoolError};
use crate::artifacts::ArtifactStore;
use crate::engine::{
    Engine, ExecutionControl, ExecutionLimits, ExecutionOutcome, ExecutionRequest, Mode, Part,
    Status,
};
use crate::protocol::{Lease, LeaseRef, Submission};
use crate::scheduler::{ExecMode, ResultStatus};

/// Why an agent loop ended other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The scheduler refused the agent itself (bad token, agent removed).
    #[error("the scheduler refused this agent: {0}")]
    Refused(LinkError),
    /// Results cannot be kept safely.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// An execution in progress, as the heartbeat sees it.
#[derive(Default)]
struct Running {
    /// Set once the engine started the execution.
    control: Option<Arc<ExecutionControl>>,
}

/// The pull loop. Cheap to share; [`AgentLoop::run`] drives it.
pub struct AgentLoop {
    link: Arc<dyn AgentLink>,
    engine: Engine,
    modules: ModuleCache,
    artifacts: ArtifactCache,
    spool: Spool,
    settings: AgentSettings,
    running: Mutex<HashMap<LeaseRef, Running>>,
    /// Wakes the delivery task: a result is waiting in the spool.
    undelivered: Notify,
    /// Cleared at shutdown: results no longer ask for the next part.
    leasing: AtomicBool,
}

/// What became of a result sent from the spool.
enum Delivery {
    /// The scheduler took it or refused it for good: it left the spool. The
    /// next part, if the result asked for one and there was one.
    Done(Option<Box<Lease>>),
    /// The scheduler is away: it stays in the spool.
    Kept,
}

impl AgentLoop {
    /// A loop pulling through `link`, executing in `engine`, keeping results
    /// in `spool` and the artifacts tasks grant in `artifacts`.
    pub fn new(
        link: Arc<dyn AgentLink>, engine: Engine, spool: Spool, artifacts: ArtifactStore,
        settings: AgentSettings,
    ) -> Arc<Self> {
        Arc::new(AgentLoop {
            modules: ModuleCache::new(engine.clone(), link.clone()),
            artifacts: ArtifactCache::new(artifacts, link.clone()),
            link,
            engine,
            spool,
            settings,
            running: Mutex::new(HashMap::new()),
            undelivered: Notify::new(),
            leasing: AtomicBool::new(true),
        })
    }

    /// The leases being executed now.
    pub fn running(&self) -> Vec<LeaseRef> {
        let mut refs: Vec<_> = self.lock_running().keys().copied().collect();
        refs.sort_by_key(|r| (r.part_id, r.attempt));
        refs
    }

    /// Pull and execute parts until `shutdown` resolves (then drain as the
    /// module documentation says) or the scheduler refuses this agent.
    pub async fn run(
        self: Arc<Self>, shutdown: impl Future<Output = ()>,
    ) -> Result<(), AgentError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let heartbeat = tokio::spawn(self.clone().heartbeat_loop(stop_rx.clone()));
        let delivery = tokio::spawn(self.clone().delivery_loop(stop_rx.clone()));
        let mut executions = JoinSet::new();
        let ended = tokio::select! {
            ended = self.clone().lease_loop(&mut executions) => ended,
            () = shutdown => Ok(()),
        };
        self.leasing.store(false, Ordering::Relaxed);
        // Drain: let running parts finish within the grace period, then stop them.
        let drain = async { while executions.join_next().await.is_some() {} };
        if tokio::time::timeout(self.settings.stop_grace, drain).await.is_err() {
            let controls: Vec<_> =
                self.lock_running().values().filter_map(|r| r.control.clone()).collect();
            tracing::info!(executions = controls.len(), "stopping executions for shutdown");
            for control in controls {
                control.stop(self.settings.stop_grace);
            }
            while executions.join_next().await.is_some() {}
        }
        let _ = stop_tx.send(true);
        let _ = heartbeat.await;
        let _ = delivery.await;
        self.deliver_spooled().await?;
        ended
    }

    /// Lease while a slot is free; each lease runs in its own task.
    async fn lease_loop(self: Arc<Self>, executions: &mut JoinSet<()>) -> Result<(), AgentError> {
        let slots = Arc::new(Semaphore::new(self.settings.slots.max(1)));
        let mut delay = self.settings.retry_delay;
        let mut reachable = true;
        loop {
            // Reap finished executions so the set does not grow.
            while executions.try_join_next().is_some() {}
            let permit = slots.clone().acquire_owned().await.expect("semaphore never closed");
            let answer = self.link.lease(self.settings.lease_wait).await;
            if answer.is_ok() && !reachable {
                // The scheduler is back: deliver what waited without waiting
                // for the delivery task's next try.
                tracing::info!("scheduler reachable again");
                self.undelivered.notify_one();
            }
            reachable = !matches!(answer, Err(LinkError::Unavailable(_)));
            match answer {
                Ok(Some(lease)) => {
                    delay = self.settings.retry_delay;
                    self.took(&lease);
                    executions.spawn(self.clone().execute(lease, permit));
                }
                Ok(None) => delay = self.settings.retry_delay,
                Err(e @ LinkError::Refused { status: 401 | 403, .. }) => {
                    return Err(AgentError::Refused(e));
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot lease");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.settings.max_retry_delay);
                }
            }
        }
    }

    /// A lease arrived: it is in progress from now on (the heartbeat
    /// extends it).
    fn took(&self, lease: &Lease) {
        tracing::info!(
            part = lease.part_id,
            attempt = lease.attempt,
            plugin = %lease.plugin,
            label = %lease.part.label,
            "leased"
        );
        self.lock_running().insert(lease.lease_ref(), Running::default());
    }

    /// Run a leased part on its slot, then the parts its result's answer
    /// brings, one after another.
    async fn execute(self: Arc<Self>, lease: Lease, _slot: OwnedSemaphorePermit) {
        let mut next = Some(lease);
        while let Some(lease) = next.take() {
            next = self.execute_one(lease).await;
            if let Some(lease) = &next {
                self.took(lease);
            }
        }
    }

    /// Run one leased part and send its result; the next part, if the
    /// result's answer brought one.
    async fn execute_one(&self, lease: Lease) -> Option<Lease> {
        let lease_ref = lease.lease_ref();
        let started_at = Utc::now();
        let outcome = self.run_plugin(&lease).await;
        self.lock_running().remove(&lease_ref);
        let result = submission(&lease, started_at, outcome);
        tracing::info!(
            part = lease.part_id,
            attempt = lease.attempt,
            status = result.status.as_str(),
            error = result.error.as_deref().unwrap_or(""),
            "executed"
        );
        if let Err(e) = self.spool.put(&result).await {
            // Without the spool the result can only be sent now; say so loudly.
            tracing::error!(error = %e, "cannot spool the result; sending it without a safety net");
        }
        self.deliver(&result).await
    }

    /// Ready the module and the grants, execute, report progress meanwhile.
    async fn run_plugin(&self, lease: &Lease) -> ExecutionOutcome {
        // The scheduler being away for a moment is no fault of the part: keep
        // trying to fetch what it needs, for as long as the part may run.
        let patience = Duration::from_millis(lease.timeout_ms);
        let plugin = match self
            .patiently(patience, ModuleError::is_transient, || {
                self.modules.plugin(&lease.plugin_sha256)
            })
            .await
        {
            Ok(p) => p,
            Err(e) => return ExecutionOutcome::not_run(Status::Failed, e.to_string()),
        };
        let mut grants = match grants_for(lease, &self.settings.policy) {
            Ok(g) => g,
            Err(e) => return ExecutionOutcome::not_run(Status::Failed, e.to_string()),
        };
        // Staged for this execution only; removed when it ends.
        let _staged = if lease.grants.artifacts.is_empty() {
            None
        } else {
            let staged = self
                .patiently(patience, ArtifactFetchError::is_transient, || {
                    self.artifacts.stage(&lease.grants.artifacts)
                })
                .await;
            match staged {
                Ok(staged) => {
                    grants = grants.preopen(staged.path(), ARTIFACTS_GUEST_PATH, false);
                    Some(staged)
                }
                Err(e) => return ExecutionOutcome::not_run(Status::Failed, e.to_string()),
            }
        };
        let request = ExecutionRequest {
            params: lease.params.to_string(),
            secrets: lease.secrets.to_string(),
            part: Part {
                label: lease.part.label.clone(),
                targets: lease.part.targets.clone(),
                payload: lease.part.payload.clone(),
            },
            attempt: lease.attempt,
            mode: match lease.mode {
                ExecMode::Pooled => Mode::Pooled,
                ExecMode::Dedicated => Mode::Dedicated,
            },
            limits: ExecutionLimits::with_timeout(Duration::from_millis(lease.timeout_ms)),
            grants,
        };
        let handle = self.engine.start(&plugin, request);
        let control = handle.control().clone();
        if let Some(r) = self.lock_running().get_mut(&lease.lease_ref()) {
            r.control = Some(control.clone());
        }
        let wait = handle.wait();
        tokio::pin!(wait);
        let mut ticks = tokio::time::interval(self.settings.progress_interval);
        let mut reported = None;
        loop {
            tokio::select! {
                outcome = &mut wait => return outcome,
                _ = ticks.tick() => {
                    let now = control.progress();
                    if let Some(p) = now
                        && now != reported
                    {
                        reported = now;
                        if let Err(e) = self.link.progress(lease.lease_ref(), p.done, p.total).await {
                            tracing::debug!(error = %e, "progress not delivered");
                        }
                    }
                }
            }
        }
    }

    /// Run `attempt` until it succeeds, fails for good, or `patience` is
    /// spent, pausing longer after each transient failure.
    async fn patiently<T, E, F, Fut>(
        &self, patience: Duration, is_transient: fn(&E) -> bool, mut attempt: F,
    ) -> Result<T, E>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let give_up = tokio::time::Instant::now() + patience;
        let mut delay = self.settings.retry_delay;
        loop {
            match attempt().await {
                Err(e) if is_transient(&e) && tokio::time::Instant::now() + delay < give_up => {
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot fetch what the part needs yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.settings.max_retry_delay);
                }
                other => return other,
            }
        }
    }

    /// Send a result just spooled, asking for the next part unless the agent
    /// is shutting down; if the scheduler is away, wake the delivery task to
    /// try again later.
    async fn deliver(&self, result: &Submission) -> Option<Lease> {
        match self.send(result, self.leasing.load(Ordering::Relaxed)).await {
            Delivery::Done(next) => next.map(|lease| *lease),
            Delivery::Kept => {
                tracing::warn!(part = result.part_id, "result kept in the spool for later");
                self.undelivered.notify_one();
                None
            }
        }
    }

    /// Send one spooled result. It leaves the spool when the scheduler took it
    /// or refused it for good; it stays when the scheduler is away.
    async fn send(&self, result: &Submission, lease_next: bool) -> Delivery {
        match self.link.submit(result, lease_next).await {
            Ok(answer) => {
                tracing::info!(
                    part = result.part_id,
                    attempt = result.attempt,
                    "{}",
                    answer.ack.describe()
                );
                self.forget(result);
                Delivery::Done(answer.lease.map(Box::new))
            }
            Err(LinkError::Refused { status, message }) => {
                tracing::warn!(part = result.part_id, attempt = result.attempt, status, %message, "result refused; dropped");
                self.forget(result);
                Delivery::Done(None)
            }
            Err(e) => {
                tracing::debug!(part = result.part_id, error = %e, "scheduler away");
                Delivery::Kept
            }
        }
    }

    fn forget(&self, result: &Submission) {
        if let Err(e) = self.spool.remove(result.part_id, result.attempt) {
            // It will be sent again and answered as a duplicate: harmless.
            tracing::warn!(error = %e, "cannot remove a delivered result from the spool");
        }
    }

    /// Send everything the spool holds; stop at the first transient failure.
    /// Returns whether all of it left the spool.
    async fn deliver_spooled(&self) -> Result<bool, SpoolError> {
        // A result enters the spool only once its execution ended, so nothing
        // here is still running.
        for result in self.spool.pending()? {
            if let Delivery::Kept = self.send(&result, false).await {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Re-send spooled results: at start, when a delivery failed, and with
    /// growing pauses while the scheduler stays away.
    async fn delivery_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut delay = self.settings.retry_delay;
        loop {
            let empty = match self.deliver_spooled().await {
                Ok(empty) => empty,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the result spool");
                    false
                }
            };
            delay = if empty {
                self.settings.retry_delay
            } else {
                (delay * 2).min(self.settings.max_retry_delay)
            };
            tokio::select! {
                _ = stop.changed() => return,
                () = self.undelivered.notified() => {}
                () = tokio::time::sleep(delay), if !empty => {}
            }
        }
    }

    /// Extend the leases in progress; stop the revoked ones.
    async fn heartbeat_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(self.settings.heartbeat_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = ticks.tick() => {}
            }
            let held = self.running();
            if held.is_empty() {
                continue;
            }
            match self.link.heartbeat(&held).await {
                Ok(ack) => {
                    for lease in &ack.superseded {
                        tracing::info!(
                            part = lease.part_id,
                            attempt = lease.attempt,
                            "lease expired but the part is still open; finishing it"
                        );
                    }
                    for lease in &ack.revoked {
                        let control =
                            self.lock_running().get(lease).and_then(|r| r.control.clone());
                        if let Some(control) = control {
                            tracing::info!(
                                part = lease.part_id,
                                attempt = lease.attempt,
                                "lease revoked; stopping"
                            );
                            control.stop(self.settings.stop_grace);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<LeaseRef, Running>> {
        self.running.lock().expect("running executions lock")
    }
}

/// The result to send for an execution.
fn submission(
    lease: &Lease, started_at: chrono::DateTime<Utc>, outcome: ExecutionOutcome,
) -> Submission {
    Submission {
        part_id: lease.part_id,
        attempt: lease.attempt,
        status: match outcome.status {
            Status::Finished => ResultStatus::Finished,
            Status::Failed => ResultStatus::Failed,
            Status::Timeout => ResultStatus::Timeout,
            Status::Canceled => ResultStatus::Canceled,
        },
        output: outcome.output,
        error: outcome.error,
        emitted: outcome.emitted,
        logs: outcome
            .logs
            .iter()
            .map(|l| serde_json::to_value(l).expect("a log line serializes"))
            .collect(),
        started_at: Some(started_at),
        duration_ms: u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
    }
}
