//! Agents: the engines that pull parts. The daemon's own engine is one too.

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The name the daemon's own agent registers under; the API refuses it to
/// every other agent.
pub const LOCAL_AGENT_NAME: &str = "local";

/// What an agent says about itself when it registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentRegistration {
    /// A unique name, e.g. the host name.
    pub name: String,
    /// The networks it reaches, used by automatic targeting.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub networks: Vec<IpNet>,
    /// Plugin names it accepts; empty accepts every plugin.
    #[serde(default)]
    pub plugins: Vec<String>,
    /// Pooled execution slots.
    #[serde(default)]
    pub pooled_slots: u32,
    /// Dedicated execution slots.
    #[serde(default)]
    pub dedicated_slots: u32,
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Agent {
    /// Its id.
    pub id: i64,
    /// What it registered.
    #[serde(flatten)]
    pub registration: AgentRegistration,
    /// Its last request.
    pub last_seen: DateTime<Utc>,
    /// Since when the monitor finds it down (no request for the set time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_since: Option<DateTime<Utc>>,
}

impl Agent {
    /// Whether it accepts parts of `plugin`.
    pub fn accepts(&self, plugin: &str) -> bool {
        self.registration.plugins.is_empty()
            || self.registration.plugins.iter().any(|p| p == plugin)
    }
}
