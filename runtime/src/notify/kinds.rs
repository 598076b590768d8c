//! The kinds of event a subscription may ask for, and which entry of the
//! event log or of the inventory's history each one is.

use serde::{Deserialize, Serialize};

use crate::inventory::{Change, ChangeKind};
use crate::scheduler::{Event, State};

/// A kind of event delivered to webhooks.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum EventKind {
    /// A run finished.
    #[serde(rename = "run.finished")]
    RunFinished,
    /// A run failed.
    #[serde(rename = "run.failed")]
    RunFailed,
    /// A part failed for good (its retries spent).
    #[serde(rename = "part.failed")]
    PartFailed,
    /// An asset was seen for the first time.
    #[serde(rename = "asset.appeared")]
    AssetAppeared,
    /// An asset changed (an attribute, its kind, a relation, a key; or it
    /// was seen again after it disappeared).
    #[serde(rename = "asset.changed")]
    AssetChanged,
    /// A complete run over an asset's address no longer saw it.
    #[serde(rename = "asset.disappeared")]
    AssetDisappeared,
    /// An agent sent no request for the set time.
    #[serde(rename = "agent.down")]
    AgentDown,
    /// An agent that was down is back.
    #[serde(rename = "agent.up")]
    AgentUp,
    /// A plugin module was uploaded.
    #[serde(rename = "plugin.uploaded")]
    PluginUploaded,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 9] = [
        EventKind::RunFinished,
        EventKind::RunFailed,
        EventKind::PartFailed,
        EventKind::AssetAppeared,
        EventKind::AssetChanged,
        EventKind::AssetDisappeared,
        EventKind::AgentDown,
        EventKind::AgentUp,
        EventKind::PluginUploaded,
    ];

    /// Its name, e.g. `run.finished`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RunFinished => "run.finished",
            EventKind::RunFailed => "run.failed",
            EventKind::PartFailed => "part.failed",
            EventKind::AssetAppeared => "asset.appeared",
            EventKind::AssetChanged => "asset.changed",
            EventKind::AssetDisappeared => "asset.disappeared",
            EventKind::AgentDown => "agent.down",
            EventKind::AgentUp => "agent.up",
            EventKind::PluginUploaded => "plugin.uploaded",
        }
    }

    /// The kind named `name`, or what the names are.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|k| k.as_str() == name).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
            format!("unknown event kind {name:?}: use {}", names.join(", "))
        })
    }

    /// The kind of an entry of the event log, if a subscriber may want it.
    pub fn of_event(event: &Event) -> Option<Self> {
        match (event.entity.as_str(), event.kind.as_str(), event.to) {
            ("run", _, Some(State::Finished)) => Some(EventKind::RunFinished),
            ("run", _, Some(State::Failed)) => Some(EventKind::RunFailed),
            ("part", _, Some(State::Failed)) => Some(EventKind::PartFailed),
            ("agent", "down", _) => Some(EventKind::AgentDown),
            ("agent", "up", _) => Some(EventKind::AgentUp),
            ("plugin", "uploaded", _) => Some(EventKind::PluginUploaded),
            _ => None,
        }
    }

    /// The kind of a change of the inventory.
    pub fn of_change(change: &Change) -> Self {
        match change.kind {
            ChangeKind::Appeared => EventKind::AssetAppeared,
            ChangeKind::Disappeared => EventKind::AssetDisappeared,
            _ => EventKind::AssetChanged,
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_name_and_an_unknown_one_lists_them() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Ok(kind));
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str());
        }
        let err = EventKind::parse("run.exploded").unwrap_err();
        assert!(err.contains("unknown event kind") && err.contains("agent.down"), "{err}");
    }

    #[test]
    fn log_entries_map_to_the_kinds_subscribers_want() {
        let event = |entity: &str, kind: &str, to: Option<State>| Event {
            id: 1,
            at: chrono::Utc::now(),
            entity: entity.into(),
            entity_id: 1,
            kind: kind.into(),
            from: None,
            to,
            detail: serde_json::json!({}),
        };
        assert_eq!(
            EventKind::of_event(&event("run", "state", Some(State::Finished))),
            Some(EventKind::RunFinished)
        );
        assert_eq!(
            EventKind::of_event(&event("part", "expired", Some(State::Failed))),
            Some(EventKind::PartFailed)
        );
        assert_eq!(EventKind::of_event(&event("part", "state", Some(State::Waiting))), None);
        assert_eq!(EventKind::of_event(&event("run", "state", Some(State::Canceled))), None);
        assert_eq!(EventKind::of_event(&event("agent", "down", None)), Some(EventKind::AgentDown));
        assert_eq!(
            EventKind::of_event(&event("plugin", "uploaded", None)),
            Some(EventKind::PluginUploaded)
        );
    }
}
