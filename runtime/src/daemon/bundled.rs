//! Deploying the bundled plugins at start: every `*.wasm` in the bundled
//! directory (test fixtures, named `fixture_*`, skipped) is loaded and recorded
//! as if uploaded. Uploading the same bytes again changes nothing, so this is
//! safe at every start.

use std::path::Path;

use crate::module_catalog::ModuleCatalog;
use crate::store::{PluginRecord, Store, StoreError};

/// Deploy the plugins in `dir`; returns the names deployed for the first time.
pub async fn deploy(
    modules: &ModuleCatalog, store: &dyn Store, dir: &Path, now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Vec<String>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("bundled plugins {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("fixture_")))
        .collect();
    entries.sort();
    let mut deployed = Vec::new();
    for path in entries {
        let bytes = std::fs::read(&path)?;
        let plugin = match modules.add(&bytes).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "bundled plugin skipped");
                continue;
            }
        };
        let manifest = plugin.manifest();
        let record = PluginRecord {
            sha256: plugin.sha256().to_string(),
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            manifest: serde_json::to_value(manifest)?,
            size: plugin.size() as u64,
            uploaded_at: now,
            retired_at: None,
        };
        match store.put_plugin(&record).await {
            Ok(true) => {
                tracing::info!(plugin = %record.name, version = %record.version, "bundled plugin deployed");
                deployed.push(record.name);
            }
            Ok(false) => {}
            // A rebuilt bundle under an unchanged version: the stored module
            // stays, as it would for an upload.
            Err(e @ StoreError::VersionTaken { .. }) => {
                tracing::warn!(path = %path.display(), error = %e, "bundled plugin skipped");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(deployed)
}
