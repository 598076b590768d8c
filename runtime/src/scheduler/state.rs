//! The states of runs and job parts and the one table of legal transitions.
//!
//! Every change of state in the store goes through [`State::check`] (or the
//! sets derived from the same table), so an illegal transition is refused in
//! one place with an error naming both states.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The state of a run or of a job part (the Nsys document's states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// A run whose parts are not made yet (`split` pending).
    Created,
    /// Ready to be leased (a part), or not started yet (a run).
    Waiting,
    /// Leased to an agent (a part), or at least one part leased or done (a run).
    Running,
    /// Held back by an admin: not leased until resumed.
    Suspended,
    /// Done with success. Terminal.
    Finished,
    /// Done without success (retries spent, split failed). Terminal.
    Failed,
    /// Stopped by an admin. Terminal.
    Canceled,
}

/// Every state, in declaration order.
pub const ALL_STATES: [State; 7] = [
    State::Created,
    State::Waiting,
    State::Running,
    State::Suspended,
    State::Finished,
    State::Failed,
    State::Canceled,
];

/// What a state belongs to; runs and parts share states but not every transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// A run of a task.
    Run,
    /// A job part of a run.
    Part,
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Entity::Run => "run",
            Entity::Part => "part",
        })
    }
}

/// A transition the table does not allow. Its message is the admin's answer
/// (a second cancel says "already canceled"), so it reads as plain words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct IllegalTransition {
    /// Run or part.
    pub entity: Entity,
    /// The state it is in.
    pub from: State,
    /// The state it was asked to go to.
    pub to: State,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let IllegalTransition { entity, from, to } = self;
        if from == to {
            write!(f, "the {entity} is already {to}")
        } else if from.is_terminal() {
            write!(f, "the {entity} already ended ({from}); it cannot become {to}")
        } else {
            write!(f, "illegal {entity} transition from {from} to {to}")
        }
    }
}

impl State {
    /// The lowercase name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Waiting => "waiting",
            State::Running => "running",
            State::Suspended => "suspended",
            State::Finished => "finished",
            State::Failed => "failed",
            State::Canceled => "canceled",
        }
    }

    /// Finished, Failed and Canceled: ended. Only one change follows an end: a
    /// part failed when its last lease expired finishes with that lease's
    /// late success, and its run, failed with it, finishes with it.
    pub fn is_terminal(self) -> bool {
        matches!(self, State::Finished | State::Failed | State::Canceled)
    }

    /// Whether `entity` may go from `self` to `to`.
    ///
    /// Parts: Waiting -> Running (lease) -> Finished | Failed | Waiting (a failed
    /// or expired attempt with retries left); Waiting -> Suspended -> Waiting;
    /// any non-terminal -> Canceled; Waiting | Suspended -> Finished for a late
    /// result that arrives after the lease expired, and Failed -> Finished for
    /// the late success of the expired lease that failed the part. A Running
    /// part is not suspended: its lease runs to its end and only the leasing
    /// of new parts stops.
    ///
    /// Runs: Created -> Waiting (parts stored) | Failed (split failed);
    /// Waiting -> Running -> Finished | Failed; Waiting | Running <-> Suspended;
    /// a suspended run may also end when its last running part ends;
    /// Failed -> Finished when its failed parts finished late;
    /// any non-terminal -> Canceled.
    pub fn allows(self, entity: Entity, to: State) -> bool {
        use State::*;
        if to == Canceled {
            return !self.is_terminal();
        }
        match entity {
            Entity::Part => matches!(
                (self, to),
                (Waiting, Running)
                    | (Waiting, Suspended)
                    | (Waiting, Finished)
                    | (Waiting, Failed)
                    | (Suspended, Waiting)
                    | (Suspended, Finished)
                    | (Running, Finished)
                    | (Running, Failed)
                    | (Running, Waiting)
                    | (Failed, Finished)
            ),
            Entity::Run => matches!(
                (self, to),
                (Created, Waiting)
                    | (Created, Failed)
                    | (Waiting, Running)
                    | (Waiting, Suspended)
                    | (Waiting, Finished)
                    | (Waiting, Failed)
                    | (Running, Waiting)
                    | (Running, Suspended)
                    | (Running, Finished)
                    | (Running, Failed)
                    | (Suspended, Waiting)
                    | (Suspended, Running)
                    | (Suspended, Finished)
                    | (Suspended, Failed)
                    | (Failed, Finished)
            ),
        }
    }

    /// `Ok` if `entity` may go from `self` to `to`, else the error naming both.
    pub fn check(self, entity: Entity, to: State) -> Result<(), IllegalTransition> {
        if self.allows(entity, to) {
            Ok(())
        } else {
            Err(IllegalTransition { entity, from: self, to })
        }
    }

    /// The states from which `entity` may go to `to`: used by bulk updates
    /// (`UPDATE ... WHERE state IN (...)`) so they follow the same table.
    pub fn sources(entity: Entity, to: State) -> Vec<State> {
        ALL_STATES.into_iter().filter(|from| from.allows(entity, to)).collect()
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of the seven.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for State {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_STATES
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

/// How many parts of a run are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartCounts {
    /// Parts waiting to be leased (including those in backoff).
    pub waiting: u64,
    /// Parts leased to an agent.
    pub running: u64,
    /// Parts held back by a suspend.
    pub suspended: u64,
    /// Parts done with success.
    pub finished: u64,
    /// Parts whose retries are spent.
    pub failed: u64,
    /// Parts canceled.
    pub canceled: u64,
}

impl PartCounts {
    /// Count one more part in `state`.
    pub fn add(&mut self, state: State, n: u64) {
        match state {
            State::Waiting | State::Created => self.waiting += n,
            State::Running => self.running += n,
            State::Suspended => self.suspended += n,
            State::Finished => self.finished += n,
            State::Failed => self.failed += n,
            State::Canceled => self.canceled += n,
        }
    }

    /// All parts.
    pub fn total(&self) -> u64 {
        self.waiting + self.running + self.suspended + self.finished + self.failed + self.canceled
    }
}

/// The state a run should be in, given its parts, or `None` to leave it as is.
///
/// A run ends only when none of its parts can still change: Finished when every
/// part finished, Failed when any failed for good (one unreachable device does not
/// stop the inventory of the others). Until then it is Running once any part was
/// leased or done, Waiting otherwise, and a Suspended run stays Suspended.
pub fn run_state_from_parts(current: State, parts: &PartCounts) -> Option<State> {
    let open = parts.waiting + parts.running + parts.suspended;
    if current == State::Failed {
        // Its failed parts all finished late after all.
        let all_finished = open == 0 && parts.failed == 0 && parts.canceled == 0;
        return (all_finished && parts.total() > 0).then_some(State::Finished);
    }
    if current.is_terminal() || current == State::Created {
        return None;
    }
    let next = if open == 0 {
        if parts.failed > 0 || parts.canceled > 0 { State::Failed } else { State::Finished }
    } else if current == State::Suspended {
        State::Suspended
    } else if parts.running + parts.finished + parts.failed > 0 {
        State::Running
    } else {
        State::Waiting
    };
    (next != current).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for state in ALL_STATES {
            assert_eq!(state.as_str().parse::<State>().unwrap(), state);
        }
        assert!("done".parse::<State>().is_err());
    }

    #[test]
    fn ended_states_change_only_from_failed_to_finished() {
        for from in [State::Finished, State::Failed, State::Canceled] {
            for to in ALL_STATES {
                for entity in [Entity::Run, Entity::Part] {
                    let late = (from, to) == (State::Failed, State::Finished);
                    assert_eq!(from.allows(entity, to), late, "{entity} {from} -> {to}");
                }
            }
        }
    }

    #[test]
    fn a_failed_run_finishes_when_its_failed_parts_finished_late() {
        let mut c = PartCounts { finished: 2, failed: 1, ..PartCounts::default() };
        assert_eq!(run_state_from_parts(State::Failed, &c), None);
        c.failed = 0;
        c.finished = 3;
        assert_eq!(run_state_from_parts(State::Failed, &c), Some(State::Finished));
        c.canceled = 1;
        assert_eq!(run_state_from_parts(State::Failed, &c), None);
        // A run whose split failed has no parts: it stays failed.
        assert_eq!(run_state_from_parts(State::Failed, &PartCounts::default()), None);
    }

    #[test]
    fn illegal_transition_names_both_states() {
        let err = State::Finished.check(Entity::Part, State::Running).unwrap_err();
        assert_eq!(err.to_string(), "the part already ended (finished); it cannot become running");
        let err = State::Created.check(Entity::Run, State::Running).unwrap_err();
        assert_eq!(err.to_string(), "illegal run transition from created to running");
        let err = State::Canceled.check(Entity::Run, State::Canceled).unwrap_err();
        assert_eq!(err.to_string(), "the run is already canceled");
    }

    #[test]
    fn part_lifecycle() {
        use State::*;
        for (from, to) in [
            (Waiting, Running),
            (Running, Finished),
            (Running, Waiting),
            (Running, Failed),
            (Waiting, Suspended),
            (Suspended, Waiting),
            (Waiting, Finished),
            (Running, Canceled),
            (Suspended, Canceled),
        ] {
            assert!(from.check(Entity::Part, to).is_ok(), "{from} -> {to}");
        }
        for (from, to) in
            [(Running, Suspended), (Suspended, Running), (Created, Running), (Waiting, Created)]
        {
            assert!(from.check(Entity::Part, to).is_err(), "{from} -> {to}");
        }
    }

    #[test]
    fn sources_follow_the_table() {
        assert_eq!(State::sources(Entity::Part, State::Suspended), vec![State::Waiting]);
        assert_eq!(
            State::sources(Entity::Part, State::Canceled),
            vec![State::Created, State::Waiting, State::Running, State::Suspended]
        );
    }

    #[test]
    fn run_state_follows_parts() {
        let mut c = PartCounts::default();
        c.add(State::Waiting, 3);
        assert_eq!(run_state_from_parts(State::Waiting, &c), None);
        c.waiting = 2;
        c.running = 1;
        assert_eq!(run_state_from_parts(State::Waiting, &c), Some(State::Running));
        assert_eq!(run_state_from_parts(State::Suspended, &c), None);
        let done = PartCounts { finished: 3, ..PartCounts::default() };
        assert_eq!(run_state_from_parts(State::Running, &done), Some(State::Finished));
        let failed = PartCounts { finished: 2, failed: 1, ..PartCounts::default() };
        assert_eq!(run_state_from_parts(State::Suspended, &failed), Some(State::Failed));
        assert_eq!(run_state_from_parts(State::Canceled, &failed), None);
    }
}
