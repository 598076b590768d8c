//! Runs that start runs: a task may follow another, so that a run of it
//! starts when a run of the other ends (discovery, then inventory of what it
//! found).
//!
//! The sweep starts the chained runs ([`Scheduler::tick`](super::Scheduler::tick)):
//! for each task that follows another, the upstream runs that ended in a
//! state its [`Trigger`] accepts, since the trigger was set, with no run of
//! the task caused by them yet. The chained run records the run that caused
//! it, and the stores hold one run per (task, cause), so however many daemons
//! sweep, each upstream run starts at most one run of each follower. A
//! canceled upstream run starts nothing, and a suspended one has not ended.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::State;

/// Which ends of the upstream run start a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TriggerCondition {
    /// The upstream run finished. The default.
    #[default]
    Finished,
    /// The upstream run failed.
    Failed,
    /// The upstream run finished or failed (not canceled).
    Any,
}

impl TriggerCondition {
    /// The run states that start a run.
    pub fn states(self) -> &'static [State] {
        match self {
            TriggerCondition::Finished => &[State::Finished],
            TriggerCondition::Failed => &[State::Failed],
            TriggerCondition::Any => &[State::Finished, State::Failed],
        }
    }
}

/// Start a run of this task when a run of `task` ends as `on` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// The upstream task's name.
    pub task: String,
    /// Which ends start a run.
    #[serde(default)]
    pub on: TriggerCondition,
}

/// The cycle that making `task` follow `upstream` would close, as the task
/// names along it (starting and ending with `task`), or `None`.
///
/// `follows` maps each task name to the task it follows today.
pub fn cycle_through(
    task: &str, upstream: &str, follows: &BTreeMap<String, String>,
) -> Option<Vec<String>> {
    let mut path = vec![task.to_string(), upstream.to_string()];
    let mut at = upstream;
    // A chain is at most as long as the number of tasks; the bound also stops
    // on a cycle already stored (which a definition never makes).
    for _ in 0..=follows.len() {
        if at == task {
            return Some(path);
        }
        match follows.get(at) {
            Some(next) => {
                path.push(next.clone());
                at = next;
            }
            None => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follows(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn a_trigger_closing_a_loop_names_every_task_in_it() {
        let chain = follows(&[("snmp", "scan"), ("esx", "snmp")]);
        assert_eq!(
            cycle_through("scan", "esx", &chain),
            Some(vec!["scan".into(), "esx".into(), "snmp".into(), "scan".into()])
        );
        assert_eq!(cycle_through("scan", "scan", &chain), Some(vec!["scan".into(), "scan".into()]));
        assert_eq!(cycle_through("report", "esx", &chain), None);
        assert_eq!(cycle_through("esx", "scan", &chain), None, "moving a follower is no loop");
    }

    #[test]
    fn a_trigger_reads_with_finished_by_default_and_refuses_unknown_fields() {
        let t: Trigger = serde_json::from_str(r#"{"task": "scan"}"#).unwrap();
        assert_eq!(t.on, TriggerCondition::Finished);
        assert!(serde_json::from_str::<Trigger>(r#"{"task": "scan", "when": "x"}"#).is_err());
        assert!(serde_json::from_str::<Trigger>(r#"{"task": "scan", "on": "canceled"}"#).is_err());
        assert_eq!(TriggerCondition::Any.states(), [State::Finished, State::Failed]);
    }
}
