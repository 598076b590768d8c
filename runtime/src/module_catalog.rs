//! [`ModuleCatalog`]: the catalog of uploaded plugin modules a daemon serves
//! (agents download them) and splits runs with.
//!
//! The store keeps the bytes of every uploaded module, so that every daemon on
//! one database can use a module whichever daemon received its upload; the
//! engine's module directory in the data directory is a cache of them. A
//! module this daemon has not seen yet is fetched from the store the first
//! time it is needed (an agent downloads it, a run is split with it).
//!
//! Used by the API (uploads, downloads) and by the daemon (its splitter, its
//! bundled plugins, its local agent); it belongs to neither.

use std::sync::Arc;

use crate::engine::{Engine, LoadError, Plugin, Sha256};
use crate::store::{Store, StoreError};

/// Why a module could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// No module with this sha256 was uploaded.
    #[error("module {0} not found")]
    NotFound(Sha256),
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The local cache could not be read or written.
    #[error("module cache: {0}")]
    Cache(#[from] std::io::Error),
    /// The engine refused the module.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// The store's modules, cached in the engine's module directory.
#[derive(Clone)]
pub struct ModuleCatalog {
    engine: Engine,
    store: Arc<dyn Store>,
}

impl ModuleCatalog {
    /// Modules of `store`, cached and loaded by `engine`.
    pub fn new(engine: Engine, store: Arc<dyn Store>) -> Self {
        Self { engine, store }
    }

    /// The engine the modules are loaded into.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Validate an uploaded module and keep it: in the store for every daemon,
    /// in this daemon's cache and engine. The plugin record is the caller's
    /// to write, after this (a record never names bytes nobody has).
    pub async fn add(&self, bytes: &[u8]) -> Result<Arc<Plugin>, CatalogError> {
        let plugin = self.engine.load(bytes).await?;
        self.store.put_module(plugin.sha256().as_str(), bytes).await?;
        Ok(plugin)
    }

    /// A module's bytes (an agent's download): from the cache, else from the
    /// store (and cached).
    pub async fn bytes(&self, sha: &Sha256) -> Result<Vec<u8>, CatalogError> {
        if let Some(cache) = self.engine.module_store()
            && let Some(bytes) = cache.get(sha)?
        {
            return Ok(bytes);
        }
        let bytes = self
            .store
            .module(sha.as_str())
            .await?
            .ok_or_else(|| CatalogError::NotFound(sha.clone()))?;
        if Sha256::of(&bytes) != *sha {
            return Err(CatalogError::Store(StoreError::Corrupt(format!(
                "the stored bytes of module {sha} hash to {}",
                Sha256::of(&bytes)
            ))));
        }
        if let Some(cache) = self.engine.module_store() {
            cache.put(sha, &bytes)?;
        }
        Ok(bytes)
    }

    /// A module loaded into the engine (a run's split).
    pub async fn load(&self, sha: &Sha256) -> Result<Arc<Plugin>, CatalogError> {
        if let Some(plugin) = self.engine.loaded(sha) {
            return Ok(plugin);
        }
        let bytes = self.bytes(sha).await?;
        Ok(self.engine.load(&bytes).await?)
    }

    /// Put into the store the modules only this daemon's cache holds (uploaded
    /// before the store kept module bytes), so that other daemons find them.
    pub async fn share_cached(&self) -> Result<usize, CatalogError> {
        let Some(cache) = self.engine.module_store() else {
            return Ok(0);
        };
        let mut shared = 0;
        for plugin in self.store.plugins().await? {
            if self.store.has_module(&plugin.sha256).await? {
                continue;
            }
            let Some(sha) = Sha256::parse(&plugin.sha256) else {
                continue;
            };
            if let Some(bytes) = cache.get(&sha)? {
                self.store.put_module(&plugin.sha256, &bytes).await?;
                shared += 1;
            }
        }
        Ok(shared)
    }
}
