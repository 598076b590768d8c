//! The port the data processor and the inventory's readers need of the
//! durable state: the [`InventoryStore`] trait, implemented by both backends
//! in [`crate::store`] beside the scheduler's [`Store`](crate::scheduler::store::Store).
//!
//! The queue is the results table itself: a finished, applied result is
//! waiting until its processing is recorded (`done` or `failed`), and that
//! record is written in the same transaction as what its observations
//! changed. So a daemon killed while processing leaves the result waiting, and
//! a result is never merged twice, however many daemons process at once.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::merge::Source;
use super::observation::Observation;
use super::view::{Asset, AssetDetail, AssetQuery, Change, ChangeQuery};
use crate::scheduler::store::StoreResult;

/// A finished result waiting for the data processor.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingResult {
    /// Its part.
    pub part_id: i64,
    /// Its attempt.
    pub attempt: u32,
    /// The plugin module that produced it (whose stage maps it).
    pub plugin_sha256: String,
    /// Where it came from (task, run, part, agent, time, the part's targets).
    pub source: Source,
    /// The records it emitted (JSON texts).
    pub records: Vec<String>,
    /// Its output (JSON text).
    pub output: Option<String>,
}

/// What processing a result gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Processed {
    /// Observations to merge (none for a plugin without a stage).
    Observed(Vec<Observation>),
    /// The stage failed: the reason, shown and retryable.
    Failed(String),
}

/// A processed result, ready to be merged.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessedResult {
    /// The result.
    pub result: PendingResult,
    /// What processing it gave.
    pub outcome: Processed,
}

/// What one [`InventoryStore::ingest`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Results recorded as processed (done or failed).
    pub results: usize,
    /// Results another processor had recorded first (nothing merged).
    pub skipped: usize,
    /// Observations merged.
    pub observations: usize,
    /// Changes recorded.
    pub changes: usize,
}

/// What the processor and the inventory's readers read. Both backends answer
/// it with the same SQL ([`crate::store`]'s portable inventory reads).
#[async_trait]
pub trait InventoryReads: Send + Sync + 'static {
    /// Up to `limit` results waiting for processing, oldest first.
    async fn pending_results(&self, limit: u32) -> StoreResult<Vec<PendingResult>>;

    /// Runs that ended, whose results are all processed (none failed), and
    /// that were not swept yet (at most `limit`, oldest first).
    async fn runs_to_sweep(&self, limit: u32) -> StoreResult<Vec<i64>>;

    /// Run `run_id`'s results whose processing failed: part, attempt, reason.
    async fn processing_failures(&self, run_id: i64) -> StoreResult<Vec<(i64, u32, String)>>;

    /// The assets `query` selects, by id.
    async fn assets(&self, query: &AssetQuery) -> StoreResult<Vec<Asset>>;

    /// One asset with its sources, relations and history.
    async fn asset(&self, id: i64) -> StoreResult<Option<AssetDetail>>;

    /// The changes `query` selects, in the order they were recorded.
    async fn changes(&self, query: &ChangeQuery) -> StoreResult<Vec<Change>>;

    /// How many assets disappeared (and were not seen again since).
    async fn disappeared_count(&self) -> StoreResult<u64>;
}

/// The inventory's durable state: its writes, each one transaction, and
/// (through [`InventoryReads`]) its reads.
#[async_trait]
pub trait InventoryStore: InventoryReads {
    /// Merge the observations of `processed` and record each result's
    /// processing, in one transaction; a result no longer waiting is skipped.
    async fn ingest(&self, processed: Vec<ProcessedResult>) -> StoreResult<IngestReport>;

    /// Record which assets run `run_id` proves gone ([`super::sweep`]), once;
    /// the number of assets that disappeared.
    async fn sweep(&self, run_id: i64, now: DateTime<Utc>) -> StoreResult<usize>;

    /// Make run `run_id`'s failed processing wait again; how many results.
    async fn retry_processing(&self, run_id: i64) -> StoreResult<u64>;
}
