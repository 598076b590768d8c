//! [`ArtifactCache`]: the artifacts a task grants (software to deploy), each
//! fetched once by sha256 into the agent's own content-addressed
//! [`ArtifactStore`] (bytes that do not hash to the sha256 asked for are never
//! stored), then staged per execution in a read-only
//! directory the plugin sees at `/artifacts`, holding exactly the granted
//! files, named by their sha256.
//!
//! The daemon's own agent uses the daemon's store: nothing is downloaded.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Mutex;

use super::link::{AgentLink, LinkError};
use crate::artifacts::{ArtifactError, ArtifactStore, MAX_ARTIFACT_BYTES};
use crate::engine::Sha256;

/// Where a plugin sees the granted artifacts.
pub const ARTIFACTS_GUEST_PATH: &str = "/artifacts";

/// Why the granted artifacts could not be made available.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactFetchError {
    /// The task names something that is not a sha256.
    #[error("invalid artifact sha256 {0:?}")]
    InvalidSha(String),
    /// Downloading failed.
    #[error("cannot download artifact {sha}: {source}")]
    Download {
        /// The artifact.
        sha: String,
        /// Why.
        #[source]
        source: LinkError,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] ArtifactError),
    /// Staging failed.
    #[error("cannot stage artifacts: {0}")]
    Io(#[from] std::io::Error),
}

impl ArtifactFetchError {
    /// Whether trying again later may help (the scheduler was away).
    pub fn is_transient(&self) -> bool {
        matches!(self, ArtifactFetchError::Download { source, .. } if source.is_transient())
    }
}

/// The agent's artifacts.
pub struct ArtifactCache {
    store: ArtifactStore,
    link: Arc<dyn AgentLink>,
    downloading: Mutex<()>,
}

/// The per-execution directory of granted artifacts; removed when dropped.
pub struct StagedArtifacts {
    dir: tempfile::TempDir,
}

impl StagedArtifacts {
    /// The directory to preopen.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl ArtifactCache {
    /// A cache over `store`, downloading through `link`.
    pub fn new(store: ArtifactStore, link: Arc<dyn AgentLink>) -> Self {
        ArtifactCache { store, link, downloading: Mutex::new(()) }
    }

    /// The local file of artifact `sha256`, downloaded and verified if missing.
    pub async fn ensure(&self, sha256: &str) -> Result<PathBuf, ArtifactFetchError> {
        let sha = Sha256::parse(sha256)
            .ok_or_else(|| ArtifactFetchError::InvalidSha(sha256.to_string()))?;
        if self.store.info(&sha).await?.is_some() {
            return Ok(self.store.path(&sha));
        }
        let _one_at_a_time = self.downloading.lock().await;
        if self.store.info(&sha).await?.is_some() {
            return Ok(self.store.path(&sha));
        }
        let bytes = self
            .link
            .artifact(sha.as_str())
            .await
            .map_err(|source| ArtifactFetchError::Download { sha: sha.to_string(), source })?;
        let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes)]);
        let stored = self.store.put_verified(body, &sha, MAX_ARTIFACT_BYTES).await?;
        tracing::info!(%sha, size = stored.size, "artifact downloaded");
        Ok(self.store.path(&sha))
    }

    /// A fresh directory holding exactly the artifacts `shas`, each fetched
    /// first if missing.
    pub async fn stage(&self, shas: &[String]) -> Result<StagedArtifacts, ArtifactFetchError> {
        let mut verified = Vec::with_capacity(shas.len());
        for sha in shas {
            self.ensure(sha).await?;
            verified.push(Sha256::parse(sha).expect("ensure checked the sha256"));
        }
        let staging = self.store.dir().with_file_name("artifact-staging");
        tokio::fs::create_dir_all(&staging).await?;
        let dir = tempfile::tempdir_in(&staging)?;
        self.store.stage(&verified, dir.path())?;
        Ok(StagedArtifacts { dir })
    }
}
