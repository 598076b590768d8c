//! What the writer applies, with its SQL: each operation is a function of
//! the writer's connection ([`WriterConn`]) run inside the open batch's
//! transaction; none commits.
//!
//! - [`lease`] and [`submit`]: the hot path (leasing, the fencing rule's
//!   compare-and-sets), with the statements of [`statements`].
//! - [`runs`]: new runs and their parts; [`admin`]: suspend, resume,
//!   cancel, a failed split; [`expiry`]: expired leases.
//! - [`agents`]: registration, heartbeats, progress; [`catalog`]: plugins,
//!   modules, tasks.
//! - [`transition`]: every state change of a part or a run, with its event;
//!   [`counts`]: the part counters a batch writes once per run.

pub(in crate::store::sqlite) mod admin;
pub(in crate::store::sqlite) mod agents;
pub(in crate::store::sqlite) mod catalog;
mod counts;
pub(in crate::store::sqlite) mod expiry;
pub(in crate::store::sqlite) mod inventory;
pub(in crate::store::sqlite) mod lease;
pub(in crate::store::sqlite) mod outbox;
pub(in crate::store::sqlite) mod runs;
mod snapshots;
pub(in crate::store::sqlite) mod statements;
pub(in crate::store::sqlite) mod submit;
pub(in crate::store::sqlite) mod transition;

pub(in crate::store::sqlite) use statements::{Hot, WriterConn};
