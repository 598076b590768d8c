//! [`EngineSplitter`]: runs a plugin's `split` in the daemon's own engine with
//! no capabilities and the engine's tight split budget.

use async_trait::async_trait;

use crate::engine::{Sha256, SplitError, Status};
use crate::module_catalog::ModuleCatalog;
use crate::scheduler::{NewPart, Splitter};

/// Splits runs with the daemon's engine.
#[derive(Clone)]
pub struct EngineSplitter {
    modules: ModuleCatalog,
}

impl EngineSplitter {
    /// A splitter with the uploaded plugins of `modules`, in their engine.
    pub fn new(modules: ModuleCatalog) -> Self {
        Self { modules }
    }
}

#[async_trait]
impl Splitter for EngineSplitter {
    async fn split(
        &self, plugin_sha256: &str, params: &serde_json::Value,
    ) -> Result<Vec<NewPart>, String> {
        let sha = Sha256::parse(plugin_sha256)
            .ok_or_else(|| format!("invalid plugin sha256 {plugin_sha256:?}"))?;
        let plugin =
            self.modules.load(&sha).await.map_err(|e| format!("cannot load plugin {sha}: {e}"))?;
        let parts = self.modules.engine().split(&plugin, &params.to_string()).await.map_err(
            |SplitError(outcome)| {
                // The scheduler says "split failed: "; this says why.
                let why = outcome.error.as_deref().unwrap_or("no reason given");
                match outcome.status {
                    Status::Failed => why.to_string(),
                    other => format!("{}: {why}", other.as_str()),
                }
            },
        )?;
        Ok(parts
            .into_iter()
            .map(|p| NewPart { label: p.label, targets: p.targets, payload: p.payload })
            .collect())
    }
}
