//! The data processor: finished results from the durable queue
//! ([`InventoryStore`]) through their plugin's stage, run in the daemon's
//! engine with no capabilities, into the inventory's merge and change
//! detection; then the sweep of the runs that ended.
//!
//! A result whose stage fails (a trap, its budget spent, observations that do
//! not parse) is recorded as failed with the reason, shown with its run and
//! retried on request; it holds back nothing else. Leasing comes first: a
//! batch is one bounded writer operation, and the processor waits between
//! batches only when there is nothing left to do.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use tokio::sync::watch;

use crate::engine::{Plugin, Sha256};
use crate::inventory::Observation;
use crate::inventory::observation::MAX_OBSERVATIONS;
use crate::inventory::store::{
    IngestReport, InventoryStore, PendingResult, Processed, ProcessedResult,
};
use crate::module_catalog::ModuleCatalog;
use crate::scheduler::Clock;
use crate::store::StoreResult;

/// Results merged in one transaction: bounds how long one batch holds the
/// writer (a lease waits for it at most that long).
pub const PROCESS_BATCH: u32 = 256;

/// Stages run at once.
const STAGES_AT_ONCE: usize = 1;

/// Runs swept per pass.
const SWEEPS_PER_PASS: u32 = 16;

/// How long the processor rests when the queue is empty.
pub const PROCESS_IDLE: Duration = Duration::from_millis(500);

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// What the merge did.
    pub ingest: IngestReport,
    /// Results whose processing failed.
    pub failed: usize,
    /// Runs swept.
    pub swept: usize,
    /// Assets that disappeared.
    pub gone: usize,
}

/// The data processor of one daemon (several may share a PostgreSQL store).
#[derive(Clone)]
pub struct Processor {
    modules: ModuleCatalog,
    inventory: Arc<dyn InventoryStore>,
    clock: Arc<dyn Clock>,
}

impl Processor {
    /// A processor of `inventory`'s queue with the plugins of `modules`.
    pub fn new(
        modules: ModuleCatalog, inventory: Arc<dyn InventoryStore>, clock: Arc<dyn Clock>,
    ) -> Self {
        Self { modules, inventory, clock }
    }

    /// Process one batch of waiting results, then sweep what ended.
    pub async fn pass(&self) -> StoreResult<PassReport> {
        let pending = self.inventory.pending_results(PROCESS_BATCH).await?;
        let mut plugins: HashMap<String, Result<Arc<Plugin>, String>> = HashMap::new();
        for result in &pending {
            if !plugins.contains_key(&result.plugin_sha256) {
                let plugin = self.plugin(&result.plugin_sha256).await;
                plugins.insert(result.plugin_sha256.clone(), plugin);
            }
        }
        let plugins = &plugins;
        let processed: Vec<ProcessedResult> = stream::iter(pending)
            .map(|result| async move {
                let outcome = match &plugins[&result.plugin_sha256] {
                    Ok(plugin) => self.stage(plugin, &result).await,
                    Err(reason) => Processed::Failed(reason.clone()),
                };
                ProcessedResult { result, outcome }
            })
            .buffered(STAGES_AT_ONCE)
            .collect()
            .await;
        let failed = processed.iter().filter(|p| matches!(p.outcome, Processed::Failed(_))).count();
        for p in &processed {
            if let Processed::Failed(reason) = &p.outcome {
                tracing::warn!(
                    part = p.result.part_id,
                    attempt = p.result.attempt,
                    run = p.result.source.run_id,
                    %reason,
                    "processing a result failed; retry it from the run"
                );
            }
        }
        let ingest = if processed.is_empty() {
            IngestReport::default()
        } else {
            self.inventory.ingest(processed).await?
        };
        let mut report = PassReport { ingest, failed, ..PassReport::default() };
        for run_id in self.inventory.runs_to_sweep(SWEEPS_PER_PASS).await? {
            report.gone += self.inventory.sweep(run_id, self.clock.now()).await?;
            report.swept += 1;
        }
        Ok(report)
    }

    /// Pass after pass until `shutdown`; rests while the queue is empty, and
    /// as long as a full batch took between two of them.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let started = std::time::Instant::now();
            let rest = match self.pass().await {
                // More waits: leasing first, so rest as long as the batch took
                // (the processor takes at most half of the writer's time).
                Ok(report)
                    if report.ingest.results + report.ingest.skipped == PROCESS_BATCH as usize =>
                {
                    started.elapsed()
                }
                Ok(report) => {
                    if report.ingest.changes > 0 || report.gone > 0 {
                        tracing::debug!(?report, "inventory updated");
                    }
                    PROCESS_IDLE
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the data processor failed; retrying");
                    PROCESS_IDLE
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(rest) => {}
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            }
        }
    }

    async fn plugin(&self, sha256: &str) -> Result<Arc<Plugin>, String> {
        let sha =
            Sha256::parse(sha256).ok_or_else(|| format!("invalid plugin sha256 {sha256:?}"))?;
        self.modules.load(&sha).await.map_err(|e| format!("cannot load plugin {sha}: {e}"))
    }

    /// Run the plugin's stage on a result's records and check what it answers.
    async fn stage(&self, plugin: &Plugin, result: &PendingResult) -> Processed {
        if result.records.is_empty() {
            return Processed::Observed(Vec::new());
        }
        let engine = self.modules.engine();
        let source = &result.source;
        let texts = match engine.stage(plugin, &result.records, &source.agent, &source.scope).await
        {
            Ok(texts) => texts,
            Err(e) => return Processed::Failed(e.to_string()),
        };
        if texts.len() > MAX_OBSERVATIONS {
            return Processed::Failed(format!(
                "the stage answered {} observations, more than {MAX_OBSERVATIONS}",
                texts.len()
            ));
        }
        let mut observations = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            match Observation::parse(text) {
                Ok(o) => observations.push(o),
                Err(e) => return Processed::Failed(format!("the stage's observation {i}: {e}")),
            }
        }
        Processed::Observed(observations)
    }
}
