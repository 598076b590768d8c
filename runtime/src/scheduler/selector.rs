//! Targets from the inventory: a task may take its targets from a selector
//! over the inventory instead of a fixed list in its parameters.
//!
//! The selector is resolved when a run is created, and the addresses it
//! selected are written into the run's snapshot of the parameters (the
//! parameter the selector names), so that editing the task or the inventory
//! later changes no run already made. The scheduler owns the selector's shape;
//! the inventory resolves it, through the [`Selection`] port the daemon
//! injects.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which assets of the inventory give a task's targets. Every filter given
/// must hold; the same filters as an inventory listing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSelector {
    /// The plugin parameter that receives the selected addresses (a list),
    /// e.g. `devices` for snmp, `hosts` for esx, `targets` for netscan.
    pub into: String,
    /// Assets of this kind, e.g. `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// With an address in this network; the address taken is one inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// Attribute predicates: `name=value`, `name~text` (contains),
    /// `name^=text` (starts with), `name[]=value` (a list holding the value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attr: Vec<String>,
    /// Seen within this duration before the run, e.g. `1d`, `12h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_within: Option<String>,
}

/// The most targets one selection gives: a run of more is refused, saying to
/// narrow the selector.
pub const MAX_SELECTED: usize = 65_536;

/// Resolves selectors against the inventory (implemented by the inventory,
/// injected by the daemon).
#[async_trait]
pub trait Selection: Send + Sync + 'static {
    /// Whether `selector` reads, saying what is wrong (at definition).
    fn check(&self, selector: &TargetSelector) -> Result<(), String>;

    /// The addresses `selector` selects at `now`, in address order, without
    /// duplicates; at most [`MAX_SELECTED`].
    async fn resolve(
        &self, selector: &TargetSelector, now: DateTime<Utc>,
    ) -> Result<Vec<String>, String>;
}

impl TargetSelector {
    /// What can be checked without the inventory.
    pub fn validate(&self) -> Result<(), String> {
        if self.into.trim().is_empty() {
            return Err("select.into must name the parameter that receives the targets".into());
        }
        Ok(())
    }

    /// `params` with the selected `targets` in the parameter [`Self::into`].
    pub fn fill(&self, params: &serde_json::Value, targets: &[String]) -> serde_json::Value {
        let mut params = params.clone();
        if let Some(object) = params.as_object_mut() {
            object.insert(self.into.clone(), serde_json::json!(targets));
        }
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selector_refuses_unknown_fields_and_fills_its_parameter() {
        let err = serde_json::from_str::<TargetSelector>(r#"{"into": "devices", "colour": "red"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
        let s: TargetSelector =
            serde_json::from_str(r#"{"into": "devices", "attr": ["tcp_open[]=161"]}"#).unwrap();
        let params = serde_json::json!({"port": 1161, "devices": ["10.9.9.9"]});
        assert_eq!(
            s.fill(&params, &["127.0.0.5".into()]),
            serde_json::json!({"port": 1161, "devices": ["127.0.0.5"]})
        );
        assert!(TargetSelector::default().validate().is_err());
    }
}
