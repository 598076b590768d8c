//! The artifact store: content-addressed files (software to deploy) kept in one
//! directory, each named by the sha256 of its bytes.
//!
//! The daemon keeps admins' uploads in `<data_dir>/artifacts/`; an agent can
//! keep its downloads the same way. What it promises:
//!
//! - **Content addressing.** A file's name is its sha256, computed while it is
//!   written; the same bytes twice are one file. Readers never see a partial
//!   file: bytes go to a temporary file in the same directory, which is synced
//!   and then renamed into place (and the directory synced).
//! - **Bounded.** An upload larger than the limit given to [`ArtifactStore::put`]
//!   is refused as soon as it passes the limit, and its temporary file removed.
//! - **Streaming.** Uploads are written as they arrive; nothing holds a whole
//!   artifact in memory.

use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

use crate::engine::Sha256;

/// The largest artifact the daemon accepts: room for a sizeable software
/// package, small enough that one upload cannot fill a typical data disk.
pub const MAX_ARTIFACT_BYTES: u64 = 512 << 20;

/// Prefix of temporary files; never a valid sha256, so never listed.
const TEMP_PREFIX: &str = ".upload-";

/// What the store knows of one artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArtifactInfo {
    /// The sha256 of its bytes: its name.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was stored.
    pub created: DateTime<Utc>,
}

/// Why an artifact could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The upload passed the size limit.
    #[error("the artifact is larger than the {} MiB limit", .limit >> 20)]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The upload is empty.
    #[error("the artifact is empty")]
    Empty,
    /// The upload broke off.
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    /// The bytes do not hash to the sha256 they were fetched by.
    #[error("sha256 mismatch: expected {expected}, got {actual}")]
    Mismatch {
        /// The sha256 asked for.
        expected: String,
        /// The sha256 of the bytes received.
        actual: String,
    },
    /// The disk failed.
    #[error("artifact store: {0}")]
    Io(#[from] std::io::Error),
}

/// Content-addressed files in one directory. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    dir: PathBuf,
}

impl ArtifactStore {
    /// Open (creating it if needed) the store in `dir`, removing temporary files
    /// an interrupted upload left behind.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(ArtifactStore { dir })
    }

    /// The directory holding the artifacts.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the artifact `sha` is (or would be) kept.
    pub fn path(&self, sha: &Sha256) -> PathBuf {
        self.dir.join(sha.as_str())
    }

    /// The artifact `sha`, if stored.
    pub async fn info(&self, sha: &Sha256) -> std::io::Result<Option<ArtifactInfo>> {
        match tokio::fs::metadata(self.path(sha)).await {
            Ok(m) => Ok(Some(info_of(sha.as_str(), &m))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every stored artifact, oldest first.
    pub async fn list(&self) -> std::io::Result<Vec<ArtifactInfo>> {
        let mut out = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if Sha256::parse(&name).is_none() {
                continue;
            }
            out.push(info_of(&name, &entry.metadata().await?));
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.sha256.cmp(&b.sha256)));
        Ok(out)
    }

    /// Store the bytes of `body` (at most `limit` of them), returning what was
    /// stored. Storing bytes already present returns the existing artifact.
    pub async fn put<S, B, E>(&self, body: S, limit: u64) -> Result<ArtifactInfo, ArtifactError>
    where
        S: Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        self.put_checked(body, limit, None).await
    }

    /// Like [`put`](Self::put), for bytes fetched by their sha256 (an agent
    /// downloading a granted artifact): bytes that hash to anything else are
    /// refused with [`ArtifactError::Mismatch`] and never stored.
    pub async fn put_verified<S, B, E>(
        &self, body: S, expected: &Sha256, limit: u64,
    ) -> Result<ArtifactInfo, ArtifactError>
    where
        S: Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        self.put_checked(body, limit, Some(expected)).await
    }

    /// Make the artifacts `shas` visible in `dir` (which must exist), each
    /// named by its sha256: the view an execution gets at `/artifacts`, holding
    /// only what its task grants. Files are hard-linked (copied across file
    /// systems); a missing artifact is an error.
    pub fn stage(&self, shas: &[Sha256], dir: &Path) -> std::io::Result<()> {
        for sha in shas {
            let from = self.path(sha);
            let to = dir.join(sha.as_str());
            if to.exists() {
                continue;
            }
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("artifact {sha}: {e}")))?;
            }
        }
        Ok(())
    }

    async fn put_checked<S, B, E>(
        &self, mut body: S, limit: u64, expected: Option<&Sha256>,
    ) -> Result<ArtifactInfo, ArtifactError>
    where
        S: Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        // 128 random bits: concurrent uploads never share a temporary file.
        let temp =
            self.dir.join(format!("{TEMP_PREFIX}{}", hex::encode(rand::random::<[u8; 16]>())));
        let result = async {
            let mut file = tokio::fs::File::create(&temp).await?;
            let mut hasher = sha2::Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| ArtifactError::Interrupted(e.to_string()))?;
                let chunk = chunk.as_ref();
                size += chunk.len() as u64;
                if size > limit {
                    return Err(ArtifactError::TooLarge { limit });
                }
                hasher.update(chunk);
                file.write_all(chunk).await?;
            }
            if size == 0 {
                return Err(ArtifactError::Empty);
            }
            file.sync_all().await?;
            let actual = hex::encode(hasher.finalize());
            match expected {
                Some(e) if e.as_str() != actual => {
                    Err(ArtifactError::Mismatch { expected: e.to_string(), actual })
                }
                _ => Ok(actual),
            }
        }
        .await;
        let sha = match result {
            Ok(sha) => sha,
            Err(e) => {
                let _ = tokio::fs::remove_file(&temp).await;
                return Err(e);
            }
        };
        let sha = Sha256::parse(&sha).expect("hex of a sha256 digest");
        if let Some(existing) = self.info(&sha).await? {
            let _ = tokio::fs::remove_file(&temp).await;
            return Ok(existing);
        }
        tokio::fs::rename(&temp, self.path(&sha)).await?;
        // The rename is durable only once the directory is synced.
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
        tracing::info!(sha256 = %sha, "artifact stored");
        Ok(self.info(&sha).await?.expect("just stored"))
    }
}

fn info_of(sha: &str, meta: &std::fs::Metadata) -> ArtifactInfo {
    let created = meta.modified().map(DateTime::<Utc>::from).unwrap_or_else(|_| Utc::now());
    ArtifactInfo { sha256: sha.to_string(), size: meta.len(), created }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(
        parts: &[&'static [u8]],
    ) -> impl Stream<Item = Result<&'static [u8], String>> + Unpin {
        futures_util::stream::iter(parts.iter().map(|p| Ok(*p)).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn put_names_the_file_by_its_sha256_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let a = store.put(chunks(&[b"hello ", b"world"]), 1024).await.unwrap();
        assert_eq!(a.sha256, Sha256::of(b"hello world").as_str());
        assert_eq!(a.size, 11);
        let path = store.path(&Sha256::parse(&a.sha256).unwrap());
        assert_eq!(std::fs::read(path).unwrap(), b"hello world");
        let again = store.put(chunks(&[b"hello world"]), 1024).await.unwrap();
        assert_eq!(again, a);
        assert_eq!(store.list().await.unwrap(), vec![a]);
    }

    #[tokio::test]
    async fn verified_puts_refuse_other_bytes_and_staging_shows_only_what_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().join("store")).unwrap();
        let expected = Sha256::of(b"the package");
        let err = store.put_verified(chunks(&[b"tampered"]), &expected, 1024).await.unwrap_err();
        assert!(matches!(err, ArtifactError::Mismatch { .. }), "{err}");
        assert!(store.list().await.unwrap().is_empty());
        let ok = store.put_verified(chunks(&[b"the ", b"package"]), &expected, 1024).await.unwrap();
        assert_eq!(ok.sha256, expected.as_str());
        store.put(chunks(&[b"another"]), 1024).await.unwrap();

        let view = dir.path().join("view");
        std::fs::create_dir(&view).unwrap();
        store.stage(std::slice::from_ref(&expected), &view).unwrap();
        let names: Vec<String> = std::fs::read_dir(&view)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![expected.to_string()]);
        assert_eq!(std::fs::read(view.join(expected.as_str())).unwrap(), b"the package");
        let missing = Sha256::of(b"never stored");
        assert!(store.stage(&[missing], &view).is_err());
    }

    #[tokio::test]
    async fn oversize_and_empty_uploads_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let err = store.put(chunks(&[b"0123456789", b"x"]), 10).await.unwrap_err();
        assert!(matches!(err, ArtifactError::TooLarge { limit: 10 }), "{err}");
        let err = store.put(chunks(&[]), 10).await.unwrap_err();
        assert!(matches!(err, ArtifactError::Empty), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
