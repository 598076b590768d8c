//! [`EngineSplitter`]: runs a plugin's `split` in the daemon's own engine with
//! no capabilities and the engine's tight split budget.

use async_trait::async_trait;

use crate::engine::{Engine, Sha256};
use crate::scheduler::{NewPart, Splitter};

/// Splits runs with the daemon's engine.
#[derive(Clone)]
pub struct EngineSplitter {
    engine: Engine,
}

impl EngineSplitter {
    /// A splitter over `engine` (whose module store holds the uploaded plugins).
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

#[async_trait]
impl Splitter for EngineSplitter {
    async fn split(
        &self,
        plugin_sha256: &str,
        params: &serde_json::Value,
    ) -> Result<Vec<NewPart>, String> {
        let sha = Sha256::parse(plugin_sha256)
            .ok_or_else(|| format!("invalid plugin sha256 {plugin_sha256:?}"))?;
        let plugin = self
            .engine
            .load_stored(&sha)
            .await
            .map_err(|e| format!("cannot load plugin {sha}: {e}"))?;
        let parts = self
            .engine
            .split(&plugin, &params.to_string())
            .await
            .map_err(|e| e.to_string())?;
        Ok(parts
            .into_iter()
            .map(|p| NewPart {
                label: p.label,
                targets: p.targets,
                payload: p.payload,
            })
            .collect())
    }
}
