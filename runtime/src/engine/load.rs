//! Loading a plugin: validate, compile (or reuse the cached artifact),
//! pre-instantiate, read the manifest.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use wasmtime::component::Component;

use super::bindings::TaskPre;
use super::config::{ExecutionLimits, MANIFEST_TIMEOUT};
use super::error::LoadError;
use super::execute::{Call, CallResult, Mode};
use super::plugin::{Capability, Plugin, Sha256, check_manifest};
use super::{Engine, Grants};

/// The 8-byte preamble of a core module (magic + version 1) and of a component
/// (magic + version 0x0d, layer 1).
const WASM_MAGIC: &[u8; 4] = b"\0asm";
const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];

impl Engine {
    /// Validate, compile and pre-instantiate a plugin, then read its manifest.
    ///
    /// Loading the same bytes again returns the already loaded plugin. On success
    /// the bytes are kept in the module store (when the engine has one).
    pub async fn load(&self, bytes: &[u8]) -> Result<Arc<Plugin>, LoadError> {
        check_preamble(bytes)?;
        let sha = Sha256::of(bytes);
        if let Some(p) = self.loaded(&sha) {
            return Ok(p);
        }
        let _one_at_a_time = self.inner.loading.lock().await;
        // Whoever held the lock before may have loaded this very module.
        if let Some(p) = self.loaded(&sha) {
            return Ok(p);
        }
        let component = {
            let engine = self.clone();
            let sha = sha.clone();
            let bytes = bytes.to_vec();
            // Compiling is CPU work of up to seconds: keep it off async threads.
            tokio::task::spawn_blocking(move || engine.compile(&sha, &bytes))
                .await
                .map_err(|e| LoadError::Engine(format!("compiler task failed: {e}")))??
        };
        check_shape(&self.inner.wasmtime, &component)?;
        let imports_http = imports_http(&self.inner.wasmtime, &component);
        let linker = if imports_http { &self.inner.http_linker } else { &self.inner.linker };
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::UnsupportedImport(format!("{e:#}")))?;
        let pre = TaskPre::new(pre).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let manifest = self.read_manifest(&pre).await?;
        if imports_http && !manifest.capabilities.contains(&Capability::Http) {
            return Err(LoadError::UnsupportedImport(
                "wasi:http (the plugin imports it but its manifest does not declare the \
                 `http` capability)"
                    .to_string(),
            ));
        }
        if let Some(store) = &self.inner.modules {
            store.put(&sha, bytes)?;
        }
        let plugin = Arc::new(Plugin { sha256: sha.clone(), size: bytes.len(), manifest, pre });
        let mut loaded = self.inner.loaded.lock().expect("loaded plugins lock");
        Ok(loaded.entry(sha).or_insert(plugin).clone())
    }

    /// Load a plugin kept in the module store, by sha256.
    pub async fn load_stored(&self, sha: &Sha256) -> Result<Arc<Plugin>, LoadError> {
        if let Some(p) = self.loaded(sha) {
            return Ok(p);
        }
        let store =
            self.inner.modules.as_ref().ok_or_else(|| LoadError::UnknownModule(sha.clone()))?;
        let bytes = store.get(sha)?.ok_or_else(|| LoadError::UnknownModule(sha.clone()))?;
        self.load(&bytes).await
    }

    /// A plugin already loaded in this engine.
    pub fn loaded(&self, sha: &Sha256) -> Option<Arc<Plugin>> {
        self.inner.loaded.lock().expect("loaded plugins lock").get(sha).cloned()
    }

    /// Compile `bytes`, or deserialize the artifact cached for this engine.
    fn compile(&self, sha: &Sha256, bytes: &[u8]) -> Result<Component, LoadError> {
        let engine = &self.inner.wasmtime;
        if let Some(store) = &self.inner.modules {
            let path = store.compiled_path(sha);
            if path.exists() {
                // SAFETY: the artifact was written by this engine into its own data
                // directory (see `ModuleStore`), and wasmtime checks that it was
                // compiled with compatible settings; an incompatible or unreadable
                // artifact falls through to a fresh compile.
                match unsafe { Component::deserialize_file(engine, &path) } {
                    Ok(c) => return Ok(c),
                    Err(e) => {
                        tracing::warn!(%sha, error = %e, "cached artifact unusable, recompiling")
                    }
                }
            }
        }
        let component =
            Component::new(engine, bytes).map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        self.inner.compilations.fetch_add(1, Ordering::Relaxed);
        if let Some(store) = &self.inner.modules {
            match component.serialize() {
                Ok(artifact) => store.put_compiled(sha, &artifact)?,
                Err(e) => tracing::warn!(%sha, error = %e, "cannot serialize compiled plugin"),
            }
        }
        Ok(component)
    }

    async fn read_manifest(&self, pre: &TaskPre) -> Result<super::Manifest, LoadError> {
        let execution = self.prepare(
            pre.clone(),
            Call::Manifest,
            Mode::Pooled,
            ExecutionLimits::with_timeout(MANIFEST_TIMEOUT),
            Grants::new(),
        );
        let (outcome, result) = self.launch(execution, true).finish().await;
        match result {
            Some(CallResult::Manifest(m)) => check_manifest(m).map_err(LoadError::BadManifest),
            _ => Err(LoadError::BadManifest(format!(
                "manifest() did not return ({}): {}",
                outcome.status.as_str(),
                outcome.error.unwrap_or_default()
            ))),
        }
    }
}

/// The functions every plugin exports (the `task` world).
const TASK_EXPORTS: [&str; 4] = ["manifest", "split", "init", "execute"];

/// Import namespaces the host links: the WASI interfaces it grants and `host`.
const PROVIDED_IMPORTS: [&str; 2] = ["wasi:", "jobstack:plugin/"];

/// Name every missing export and every import the host does not provide, before
/// the linker's type check (whose first-error-only message helps less).
fn check_shape(engine: &wasmtime::Engine, component: &Component) -> Result<(), LoadError> {
    let ty = component.component_type();
    let unsupported: Vec<&str> = ty
        .imports(engine)
        .map(|(name, _)| name)
        .filter(|name| !PROVIDED_IMPORTS.iter().any(|p| name.starts_with(p)))
        .collect();
    if !unsupported.is_empty() {
        return Err(LoadError::UnsupportedImport(format!(
            "{} (a plugin may import only `jobstack:plugin/host` and the WASI interfaces)",
            unsupported.join(", ")
        )));
    }
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    let missing: Vec<&str> =
        TASK_EXPORTS.iter().copied().filter(|e| !exports.contains(e)).collect();
    if !missing.is_empty() {
        let found = if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") };
        return Err(LoadError::WrongWorld(format!(
            "missing export(s) {}; it exports {found}",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// Whether the component imports any `wasi:http` interface.
fn imports_http(engine: &wasmtime::Engine, component: &Component) -> bool {
    component.component_type().imports(engine).any(|(name, _)| name.starts_with("wasi:http/"))
}

/// Refuse what is not a component before handing bytes to the compiler, with
/// a message that says what the file is instead.
fn check_preamble(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.is_empty() {
        return Err(LoadError::Empty);
    }
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        return Err(LoadError::NotWasm);
    }
    if bytes[4..8] == CORE_MODULE_VERSION {
        return Err(LoadError::CoreModule);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preamble_names_what_the_file_is() {
        assert!(matches!(check_preamble(b""), Err(LoadError::Empty)));
        assert!(matches!(check_preamble(b"hello world"), Err(LoadError::NotWasm)));
        let core = wat::parse_str("(module)").unwrap();
        assert!(matches!(check_preamble(&core), Err(LoadError::CoreModule)));
        let component = wat::parse_str("(component)").unwrap();
        assert!(check_preamble(&component).is_ok());
    }
}
