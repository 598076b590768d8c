//! [`ModuleCache`]: the plugin modules an agent runs, each downloaded once by
//! sha256, verified, compiled once and kept (in the engine's module store and
//! compiled-artifact cache when the agent has a state directory).

use std::sync::Arc;
use tokio::sync::Mutex;

use super::link::{AgentLink, LinkError};
use crate::engine::{Engine, Plugin, Sha256};

/// Why a module could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The lease names something that is not a sha256.
    #[error("invalid plugin sha256 {0:?}")]
    InvalidSha(String),
    /// Downloading failed.
    #[error("cannot download plugin {sha}: {source}")]
    Download {
        /// The module.
        sha: String,
        /// Why.
        #[source]
        source: LinkError,
    },
    /// The bytes received are not the module asked for.
    #[error("plugin {expected}: downloaded bytes have sha256 {actual}; refusing to run them")]
    Mismatch {
        /// What the lease named.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// The module does not load in this engine.
    #[error("plugin {sha} does not load: {message}")]
    Load {
        /// The module.
        sha: String,
        /// The engine's reason.
        message: String,
    },
}

impl ModuleError {
    /// Whether trying again later may help (the scheduler was away).
    pub fn is_transient(&self) -> bool {
        matches!(self, ModuleError::Download { source, .. } if source.is_transient())
    }
}

/// Loaded plugins by sha256, fetched through the link when missing.
pub struct ModuleCache {
    engine: Engine,
    link: Arc<dyn AgentLink>,
    /// One download at a time: parts of one run arrive together and must not
    /// fetch the same module in parallel.
    downloading: Mutex<()>,
}

impl ModuleCache {
    /// A cache loading into `engine`, downloading through `link`.
    pub fn new(engine: Engine, link: Arc<dyn AgentLink>) -> Self {
        ModuleCache { engine, link, downloading: Mutex::new(()) }
    }

    /// The plugin with this sha256, ready to execute.
    pub async fn plugin(&self, sha256: &str) -> Result<Arc<Plugin>, ModuleError> {
        let sha =
            Sha256::parse(sha256).ok_or_else(|| ModuleError::InvalidSha(sha256.to_string()))?;
        if let Some(plugin) = self.engine.loaded(&sha) {
            return Ok(plugin);
        }
        let _one_at_a_time = self.downloading.lock().await;
        if let Ok(plugin) = self.engine.load_stored(&sha).await {
            return Ok(plugin);
        }
        let bytes = self
            .link
            .module(sha.as_str())
            .await
            .map_err(|source| ModuleError::Download { sha: sha.to_string(), source })?;
        let actual = Sha256::of(&bytes);
        if actual != sha {
            return Err(ModuleError::Mismatch {
                expected: sha.to_string(),
                actual: actual.to_string(),
            });
        }
        tracing::info!(%sha, size = bytes.len(), "plugin downloaded");
        self.engine
            .load(&bytes)
            .await
            .map_err(|e| ModuleError::Load { sha: sha.to_string(), message: e.to_string() })
    }
}
