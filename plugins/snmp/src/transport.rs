//! How the client exchanges datagrams with one agent. The plugin uses WASI UDP
//! ([`crate::udp`]); the unit tests use a scripted agent.

use std::time::Duration;

/// A datagram exchange with one agent.
pub trait Transport {
    /// Send one datagram to the agent.
    fn send(&mut self, datagram: &[u8]) -> Result<(), TransportError>;
    /// Wait up to `timeout` for the next datagram from the agent; `None` when
    /// none came in time.
    fn recv(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, TransportError>;
}

/// Why a datagram could not be exchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The host does not let the plugin reach this address.
    Denied(String),
    /// The agent's host answered "port unreachable": nothing listens there.
    Refused(String),
    /// Any other socket failure.
    Other(String),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Denied(peer) => write!(
                f,
                "the host does not allow UDP to {peer}: the device's address must be granted to the execution (jobstack exec --allow-net)"
            ),
            TransportError::Refused(peer) => write!(
                f,
                "nothing listens on udp {peer} (the host answered port unreachable): no SNMP agent on that port"
            ),
            TransportError::Other(e) => write!(f, "socket error: {e}"),
        }
    }
}
