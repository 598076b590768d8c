//! [`AgentLink`]: how an agent talks to the scheduler. Remote agents use
//! [`HttpLink`](super::HttpLink) over the REST API; the daemon's own agent calls
//! the scheduler in-process. The agent loop does not know which.

use async_trait::async_trait;
use std::time::Duration;

use crate::protocol::{HeartbeatAck, Lease, LeaseRef, ResultAnswer, Submission};

/// Why a call to the scheduler did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    /// The scheduler answered and refused: retrying the same call cannot
    /// succeed (e.g. a result for a part this agent never leased).
    #[error("refused ({status}): {message}")]
    Refused {
        /// HTTP status (or its in-process equivalent).
        status: u16,
        /// The scheduler's reason.
        message: String,
    },
    /// The scheduler could not be reached or is not ready: try again later.
    #[error("scheduler unavailable: {0}")]
    Unavailable(String),
}

impl LinkError {
    /// Whether the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, LinkError::Unavailable(_))
    }
}

/// The scheduler calls an agent makes. Every method is safe to retry.
#[async_trait]
pub trait AgentLink: Send + Sync + 'static {
    /// Lease a part, waiting up to `wait` for one (long-poll).
    async fn lease(&self, wait: Duration) -> Result<Option<Lease>, LinkError>;

    /// Extend the leases still in progress; learn which ones to stop.
    async fn heartbeat(&self, leases: &[LeaseRef]) -> Result<HeartbeatAck, LinkError>;

    /// Report progress of a leased part.
    async fn progress(&self, lease: LeaseRef, done: u64, total: u64) -> Result<(), LinkError>;

    /// Deliver a result. Durable on the scheduler when this returns `Ok`.
    /// With `lease_next`, the scheduler then leases this agent's next part,
    /// if one is waiting (no long-poll), and answers it with the
    /// acknowledgement: the agent then owns it as if from [`AgentLink::lease`].
    async fn submit(
        &self, result: &Submission, lease_next: bool,
    ) -> Result<ResultAnswer, LinkError>;

    /// The bytes of a plugin module (the caller verifies the sha256).
    async fn module(&self, sha256: &str) -> Result<Vec<u8>, LinkError>;

    /// The bytes of an artifact from the daemon's artifact store (the caller
    /// verifies the sha256).
    async fn artifact(&self, sha256: &str) -> Result<Vec<u8>, LinkError>;
}
