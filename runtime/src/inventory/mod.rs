//! The inventory: what the fleet's results say is out there, merged into
//! assets with their sources, relations and history.
//!
//! The data flow ends here. A finished result's records pass through the
//! stages in order: the plugin's own stage (run on the daemon in the sandbox,
//! [`crate::engine::Engine::stage`]) maps them to [`Observation`]s; the merge
//! ([`merge`]) decides which asset each one is and what it changed; change
//! detection records each change, and after a run ended, the sweep
//! ([`sweep`]) records what the run proves gone. The processor
//! ([`crate::daemon::processor`]) drives them from the durable queue that
//! [`store::InventoryStore`] keeps.
//!
//! - [`keys`]: identity keys and locators, and how values are normalized;
//! - [`observation`]: what a stage answers, checked;
//! - [`merge`]: the merge rules, over an in-memory [`merge::Book`];
//! - [`sweep`]: the disappearance rule;
//! - [`view`]: what the inventory answers (assets, changes, queries);
//! - [`select`]: task selectors resolved against it;
//! - [`store`]: the port both backends implement.

pub mod glpi;
pub mod keys;
pub mod merge;
pub mod observation;
pub mod select;
pub mod store;
pub mod sweep;
pub mod view;

pub use merge::{AssetId, ChangeKind, Source};
pub use observation::Observation;
pub use select::InventorySelection;
pub use store::{InventoryReads, InventoryStore, PendingResult, Processed, ProcessedResult};
pub use view::{Asset, AssetDetail, AssetQuery, Change, ChangeQuery};
