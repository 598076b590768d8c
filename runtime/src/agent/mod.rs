//! The agent: pulls job parts from the scheduler, runs them in the engine,
//! sends the results back.
//!
//! - [`AgentLink`]: the scheduler calls (over HTTP for `jobstack agent`,
//!   in-process for the daemon's own agent);
//! - [`AgentLoop`]: the pull loop with its heartbeats and result delivery;
//! - [`Spool`]: results kept until acknowledged, on disk for remote agents;
//! - [`ModuleCache`]: plugin modules downloaded once by sha256 and verified;
//! - [`ArtifactCache`]: granted artifacts fetched once, staged at `/artifacts`;
//! - [`grants_for`]: what one part may touch, within [`OperatorPolicy`].

mod artifacts;
mod grants;
pub use grants::narrow_to_targets;
mod http_link;
mod link;
mod modules;
mod runner;
mod settings;
mod spool;

pub use artifacts::{ARTIFACTS_GUEST_PATH, ArtifactCache, ArtifactFetchError, StagedArtifacts};
pub use grants::{GrantError, grants_for, target_networks};
pub use http_link::HttpLink;
pub use link::{AgentLink, LinkError};
pub use modules::{ModuleCache, ModuleError};
pub use runner::{AgentError, AgentLoop};
pub use settings::{AgentSettings, OperatorDir, OperatorPolicy};
pub use spool::{Spool, SpoolError};
