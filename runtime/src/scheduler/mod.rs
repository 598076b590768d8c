//! The scheduler: tasks, runs, job parts and the leases that hand parts to agents.
//!
//! # What it owns
//!
//! An admin defines a [`TaskSpec`]. A run of the task snapshots the definition,
//! its secrets and the sha256 of the plugin module at that moment ([`NewRun`]):
//! editing the task or uploading a new plugin version later changes no run
//! already created. The plugin's `split` cuts the run into [`Part`]s (through
//! the injected [`Splitter`]), and agents lease them one at a time.
//!
//! # The state machine
//!
//! Runs and parts move through [`State`]s; [`State::check`] holds the one table
//! of legal transitions and every backend routes each change through it.
//!
//! # Leasing
//!
//! `lease(agent)` hands out the best waiting part the agent may take (order in
//! [`priority`], who may take what in [`targeting`]) and sets owner, attempt + 1
//! and expiry = now + the task's timeout + [`LEASE_GRACE`]. Heartbeats extend
//! the leases the agent still works on. A lease past its expiry is a timed-out
//! attempt: the part waits again with exponential backoff ([`retry`]) until its
//! retries are spent, then fails.
//!
//! # The fencing rule
//!
//! The attempt number is a fencing token: a result names its attempt and
//! [`fencing::judge`] decides what it may change. A late success from an agent
//! that was cut off is accepted once if the part is not finished and revokes the
//! newer lease; nothing is ever applied twice or overwrites a newer result.
//!
//! # Durable state
//!
//! Every operation is one atomic call of the [`Store`](store::Store) trait, the
//! port this module owns ([`store`]); the backends that implement it, SQLite
//! and PostgreSQL, are in [`crate::store`].
//!
//! # Time
//!
//! Every timestamp comes from the injected [`Clock`], so expiry, backoff and
//! recurrence are tested by moving a [`ManualClock`].

mod agent;
mod chain;
mod clock;
mod event;
pub mod fencing;
mod lease;
pub mod priority;
pub mod recurrence;
pub mod retry;
mod run;
mod selector;
mod service;
mod state;
pub mod store;
mod sweep;
pub mod targeting;
mod task;
mod wake;

pub use agent::{Agent, AgentRegistration, LOCAL_AGENT_NAME};
pub use chain::{Trigger, TriggerCondition, cycle_through};
pub use clock::{Clock, ManualClock, SystemClock};
pub use event::{Event, late_result_detail};
pub use lease::{
    HeartbeatAck, Lease, LeaseRef, ProgressReport, ResultAck, ResultStatus, StoredResult,
    Submission, lease_expiry,
};
pub use priority::{FORCED_RANK, Priority};
pub use recurrence::Frequency;
pub use run::{NewPart, NewRun, Part, Run, RunCause, selected_targets};
pub use selector::{MAX_SELECTED, Selection, TargetSelector};
pub use service::{DEFAULT_AGENT_DOWN_AFTER, Scheduler, SchedulerError, Splitter};
pub use state::{ALL_STATES, Entity, IllegalTransition, PartCounts, State, run_state_from_parts};
pub use sweep::TickReport;
pub use task::{
    ExecMode, LEASE_GRACE_BOUNDS_MS, MAX_TIMEOUT_MS, Targeting, Task, TaskGrants, TaskSpec,
};
pub use wake::WorkSignal;

use std::time::Duration;

/// Added to a task's timeout to make a lease's lifetime: covers the agent's
/// start-up of the execution and the trip of its result back to the server, so
/// a part that finishes just in time is not regenerated.
pub const LEASE_GRACE: Duration = Duration::from_secs(30);

/// How often agents heartbeat (the daemon tells each agent at registration):
/// a third of the lease grace, so two lost heartbeats still keep a lease alive.
pub const HEARTBEAT_INTERVAL: Duration = LEASE_GRACE.checked_div(3).expect("3 is not zero");
