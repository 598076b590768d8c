//! [`HttpLink`]: the agent protocol over the daemon's REST API
//! (`/api/v1/agent/...`), for `jobstack agent` on another machine.

use async_trait::async_trait;
use std::time::Duration;

use super::link::{AgentLink, LinkError};
use crate::client::{ApiClient, ClientError};
use crate::protocol::{
    AgentRegistration, HeartbeatAck, HeartbeatRequest, Lease, LeaseRef, LeaseRequest,
    ProgressReport, Registered, ResultAnswer, Submission,
};

/// Slack on top of a long-poll's wait before the request itself times out.
const LONG_POLL_SLACK: Duration = Duration::from_secs(15);

/// Timeout of every other call, module downloads included.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A registered agent's link to one daemon.
pub struct HttpLink {
    client: ApiClient,
    registered: Registered,
}

impl HttpLink {
    /// Register with the enrollment secret; later calls use the agent token
    /// the daemon answers with.
    pub async fn register(
        client: ApiClient, enroll_secret: &str, registration: &AgentRegistration,
    ) -> Result<Self, ClientError> {
        let registered: Registered = client
            .clone()
            .with_token(enroll_secret)
            .with_timeout(CALL_TIMEOUT)
            .post_json("/agent/register", registration)
            .await?
            .ok_or_else(|| ClientError::Decode("registration answered no content".into()))?;
        let client = client.with_token(&registered.token).with_timeout(CALL_TIMEOUT);
        Ok(HttpLink { client, registered })
    }

    /// What the daemon answered to the registration.
    pub fn registered(&self) -> &Registered {
        &self.registered
    }
}

/// 4xx answers are final (except the ones that say "later"); everything else
/// (unreachable, 5xx, a garbled answer) may work on a later try.
fn link_error(e: ClientError) -> LinkError {
    match &e {
        ClientError::Api { status, .. }
            if (400..500).contains(status) && !matches!(status, 408 | 429) =>
        {
            LinkError::Refused { status: *status, message: e.to_string() }
        }
        ClientError::Config(_) => LinkError::Refused { status: 0, message: e.to_string() },
        _ => LinkError::Unavailable(e.to_string()),
    }
}

impl HttpLink {
    /// `GET path`'s body (a module, an artifact).
    async fn bytes(&self, path: &str) -> Result<Vec<u8>, LinkError> {
        self.client.get_bytes(path).await.map(|b| b.to_vec()).map_err(link_error)
    }
}

#[async_trait]
impl AgentLink for HttpLink {
    async fn lease(&self, wait: Duration) -> Result<Option<Lease>, LinkError> {
        let max = Duration::from_millis(self.registered.max_lease_wait_ms);
        let wait = wait.min(max);
        let request = LeaseRequest { wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX) };
        self.client
            .clone()
            .with_timeout(wait + LONG_POLL_SLACK)
            .post_json("/agent/lease", &request)
            .await
            .map_err(link_error)
    }

    async fn heartbeat(&self, leases: &[LeaseRef]) -> Result<HeartbeatAck, LinkError> {
        let request = HeartbeatRequest { leases: leases.to_vec() };
        self.client
            .post_json("/agent/heartbeat", &request)
            .await
            .map_err(link_error)?
            .ok_or_else(|| LinkError::Unavailable("heartbeat answered no content".into()))
    }

    async fn progress(&self, lease: LeaseRef, done: u64, total: u64) -> Result<(), LinkError> {
        let report = ProgressReport { part_id: lease.part_id, attempt: lease.attempt, done, total };
        self.client
            .post_json::<_, serde_json::Value>("/agent/progress", &report)
            .await
            .map(|_| ())
            .map_err(link_error)
    }

    async fn submit(
        &self, result: &Submission, lease_next: bool,
    ) -> Result<ResultAnswer, LinkError> {
        let path = if lease_next { "/agent/results?lease_next=true" } else { "/agent/results" };
        let answer: Option<ResultAnswer> =
            self.client.post_json(path, result).await.map_err(link_error)?;
        answer.ok_or_else(|| LinkError::Unavailable("result answered no content".into()))
    }

    async fn module(&self, sha256: &str) -> Result<Vec<u8>, LinkError> {
        self.bytes(&format!("/agent/modules/{sha256}")).await
    }

    async fn artifact(&self, sha256: &str) -> Result<Vec<u8>, LinkError> {
        self.bytes(&format!("/agent/artifacts/{sha256}")).await
    }
}
