//! The content-addressed module store on disk.
//!
//! ```text
//! <data>/modules/<sha256>.wasm                  the component as uploaded
//! <data>/compiled/<sha256>-<engine-key>.cwasm   its compiled code for this engine
//! ```
//!
//! The engine key hashes wasmtime's version and every setting that changes the
//! compiled code, so a restart reuses the artifact and an upgrade recompiles.
//! Files are written to a temporary name and renamed, so a crash never leaves a
//! half-written module or artifact under its final name.

use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};

use super::plugin::Sha256;

/// Module bytes and compiled artifacts, addressed by sha256.
#[derive(Debug, Clone)]
pub struct ModuleStore {
    modules: PathBuf,
    compiled: PathBuf,
    engine_key: String,
}

impl ModuleStore {
    /// Open (creating if needed) a store under `root` for `engine`.
    pub fn open(root: &Path, engine: &wasmtime::Engine) -> io::Result<Self> {
        let modules = root.join("modules");
        let compiled = root.join("compiled");
        std::fs::create_dir_all(&modules)?;
        std::fs::create_dir_all(&compiled)?;
        Ok(ModuleStore { modules, compiled, engine_key: engine_key(engine) })
    }

    /// Store `bytes` under their sha256 (a no-op when already stored).
    pub fn put(&self, sha: &Sha256, bytes: &[u8]) -> io::Result<()> {
        let path = self.module_path(sha);
        if path.exists() {
            return Ok(());
        }
        write_atomically(&path, bytes)
    }

    /// The bytes of a stored module, verified against their sha256.
    pub fn get(&self, sha: &Sha256) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.module_path(sha)) {
            Ok(bytes) if Sha256::of(&bytes) == *sha => Ok(Some(bytes)),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("stored module {sha} does not match its sha256 (disk corruption?)"),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every stored module's sha256.
    pub fn list(&self) -> io::Result<Vec<Sha256>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.modules)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(sha) = name.strip_suffix(".wasm").and_then(Sha256::parse) {
                out.push(sha);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Where the compiled artifact of `sha` for this engine lives.
    pub fn compiled_path(&self, sha: &Sha256) -> PathBuf {
        self.compiled.join(format!("{sha}-{}.cwasm", self.engine_key))
    }

    /// Save a compiled artifact.
    pub fn put_compiled(&self, sha: &Sha256, artifact: &[u8]) -> io::Result<()> {
        write_atomically(&self.compiled_path(sha), artifact)
    }

    fn module_path(&self, sha: &Sha256) -> PathBuf {
        self.modules.join(format!("{sha}.wasm"))
    }
}

/// A short, stable name for everything about `engine` that shapes compiled code.
fn engine_key(engine: &wasmtime::Engine) -> String {
    // SipHash with fixed keys: stable for a given build of jobstack, which is all
    // a cache key needs (wasmtime itself also refuses incompatible artifacts).
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("store paths have a parent");
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    io::Write::write_all(&mut tmp, bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_then_get_returns_the_same_bytes_and_lists_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path(), &wasmtime::Engine::default()).unwrap();
        let sha = Sha256::of(b"module");
        store.put(&sha, b"module").unwrap();
        store.put(&sha, b"module").unwrap();
        assert_eq!(store.get(&sha).unwrap().as_deref(), Some(&b"module"[..]));
        assert_eq!(store.list().unwrap(), vec![sha]);
        assert_eq!(store.get(&Sha256::of(b"other")).unwrap(), None);
    }

    #[test]
    fn a_corrupted_module_is_reported_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path(), &wasmtime::Engine::default()).unwrap();
        let sha = Sha256::of(b"module");
        store.put(&sha, b"module").unwrap();
        std::fs::write(store.module_path(&sha), b"tampered").unwrap();
        let err = store.get(&sha).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
