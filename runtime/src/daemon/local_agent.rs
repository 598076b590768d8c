//! The daemon's own agent: the same [`AgentLoop`] as `jobstack agent`, linked
//! to the scheduler in-process instead of over HTTP. It registers under the
//! name `local` with the loopback networks only (real targets belong to remote
//! agents on their networks unless the admin targets `local` by name), and it
//! grants plugins nothing beyond what its operator (the daemon's config) allows.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::{AgentLink, AgentLoop, AgentSettings, LinkError, Spool};
use crate::api::state::LEASE_RECHECK;
use crate::artifacts::ArtifactStore;
use crate::engine::Sha256;
use crate::module_catalog::{CatalogError, ModuleCatalog};
use crate::protocol::{
    AgentRegistration, HeartbeatAck, Lease, LeaseRef, ProgressReport, ResultAnswer, Submission,
};
use crate::scheduler::{Agent, LOCAL_AGENT_NAME, Scheduler, SchedulerError};
use crate::store::StoreError;

/// Calls the scheduler directly.
pub struct LocalLink {
    scheduler: Scheduler,
    modules: ModuleCatalog,
    artifacts: ArtifactStore,
    agent: Agent,
}

impl LocalLink {
    /// Register the local agent and link it to `scheduler`.
    pub async fn register(
        scheduler: Scheduler, modules: ModuleCatalog, artifacts: ArtifactStore,
        settings: &AgentSettings,
    ) -> Result<Self, SchedulerError> {
        let registration = AgentRegistration {
            name: LOCAL_AGENT_NAME.to_string(),
            networks: vec![
                "127.0.0.0/8".parse().expect("valid network"),
                "::1/128".parse().expect("valid network"),
            ],
            plugins: Vec::new(),
            pooled_slots: settings.slots as u32,
            dedicated_slots: modules.engine().config().dedicated_slots,
        };
        // In-process calls carry no token; the hash of a fresh random token
        // keeps the row from matching any HTTP caller.
        let unusable = crate::api::auth::hash_token(&crate::api::auth::new_token());
        let agent =
            scheduler.store().register_agent(&registration, &unusable, scheduler.now()).await?;
        Ok(LocalLink { scheduler, modules, artifacts, agent })
    }

    /// Start the loop; it runs until `shutdown` resolves.
    pub fn spawn(
        self, settings: AgentSettings,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let engine = self.modules.engine().clone();
        // The daemon's own store: granted artifacts are already there.
        let artifacts = self.artifacts.clone();
        let agent = AgentLoop::new(Arc::new(self), engine, Spool::in_memory(), artifacts, settings);
        tokio::spawn(async move {
            if let Err(e) = agent.run(shutdown).await {
                tracing::error!(error = %e, "the local agent stopped");
            }
        })
    }
}

/// Map the scheduler's errors to what the agent loop understands: a refusal
/// for what retrying cannot fix, unavailable for the database being away.
fn link_error(e: SchedulerError) -> LinkError {
    let refused = |status: u16, e: &dyn std::fmt::Display| LinkError::Refused {
        status,
        message: e.to_string(),
    };
    match &e {
        SchedulerError::Store(StoreError::NotLeased { .. }) => refused(403, &e),
        SchedulerError::Store(StoreError::NotFound { .. }) => refused(404, &e),
        SchedulerError::Store(
            StoreError::Conflict { .. } | StoreError::Transition(_) | StoreError::Invalid(_),
        ) => refused(409, &e),
        SchedulerError::InvalidTask(_)
        | SchedulerError::UnknownPlugin(_)
        | SchedulerError::Cycle(_) => refused(400, &e),
        SchedulerError::Store(_) => LinkError::Unavailable(e.to_string()),
    }
}

#[async_trait]
impl AgentLink for LocalLink {
    async fn lease(&self, wait: Duration) -> Result<Option<Lease>, LinkError> {
        self.scheduler.lease_waiting(&self.agent, wait, LEASE_RECHECK).await.map_err(link_error)
    }

    async fn heartbeat(&self, leases: &[LeaseRef]) -> Result<HeartbeatAck, LinkError> {
        self.scheduler.heartbeat(&self.agent, leases).await.map_err(link_error)
    }

    async fn progress(&self, lease: LeaseRef, done: u64, total: u64) -> Result<(), LinkError> {
        let report = ProgressReport { part_id: lease.part_id, attempt: lease.attempt, done, total };
        self.scheduler.progress(&self.agent, &report).await.map_err(link_error)
    }

    async fn submit(
        &self, result: &Submission, lease_next: bool,
    ) -> Result<ResultAnswer, LinkError> {
        let (ack, lease) = if lease_next {
            self.scheduler.submit_and_lease(&self.agent, result).await
        } else {
            let ack = self.scheduler.submit(&self.agent, result).await;
            ack.map(|ack| (ack, None))
        }
        .map_err(link_error)?;
        Ok(ResultAnswer { ack, lease })
    }

    async fn module(&self, sha256: &str) -> Result<Vec<u8>, LinkError> {
        let sha = Sha256::parse(sha256).ok_or_else(|| LinkError::Refused {
            status: 404,
            message: format!("module {sha256} not found"),
        })?;
        self.modules.bytes(&sha).await.map_err(|e| match e {
            CatalogError::NotFound(_) => LinkError::Refused { status: 404, message: e.to_string() },
            other => LinkError::Unavailable(other.to_string()),
        })
    }

    async fn artifact(&self, sha256: &str) -> Result<Vec<u8>, LinkError> {
        let missing =
            || LinkError::Refused { status: 404, message: format!("artifact {sha256} not found") };
        let sha = Sha256::parse(sha256).ok_or_else(missing)?;
        match tokio::fs::read(self.artifacts.path(&sha)).await {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing()),
            Err(e) => Err(LinkError::Unavailable(format!("reading artifact {sha}: {e}"))),
        }
    }
}
