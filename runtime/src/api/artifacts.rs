//! Artifact routes: admins upload and list the files deploy tasks install;
//! agents download the ones a task they lease grants. The files live in the
//! daemon's [`ArtifactStore`](crate::artifacts::ArtifactStore).
//!
//! Uploads are streamed to disk (never held in memory) and bounded by
//! [`MAX_ARTIFACT_BYTES`]; downloads are streamed from disk. Tasks name
//! artifacts by sha256 in `grants.artifacts`; [`check_task_artifacts`] refuses
//! a task naming one the store does not hold.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio_util::io::ReaderStream;

use super::ApiState;
use super::auth::{Admin, AgentCaller};
use super::error::{ApiError, ApiResult};
use crate::artifacts::{ArtifactError, ArtifactInfo, MAX_ARTIFACT_BYTES};
use crate::engine::Sha256;
use crate::scheduler::TaskSpec;

impl From<ArtifactError> for ApiError {
    fn from(e: ArtifactError) -> Self {
        match e {
            ArtifactError::TooLarge { .. } => ApiError::TooLarge(e.to_string()),
            ArtifactError::Empty => {
                ApiError::bad_request("invalid_artifact", "empty upload: send the file as the body")
            }
            ArtifactError::Interrupted(_) | ArtifactError::Mismatch { .. } => {
                ApiError::bad_request("invalid_artifact", e.to_string())
            }
            ArtifactError::Io(_) => ApiError::Internal(e.to_string()),
        }
    }
}

fn parse_sha(text: &str) -> ApiResult<Sha256> {
    Sha256::parse(text).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_sha256",
            format!("{text:?} is not a sha256 (64 lowercase hex digits)"),
        )
    })
}

/// Upload an artifact (the body is the file, at most 512 MiB).
///
/// Answers 201 with what was stored, or 200 when the same bytes were already there.
#[utoipa::path(
    post, path = "/artifacts", tag = "artifacts", security(("adminToken" = [])),
    request_body(content = [u8], content_type = "application/octet-stream", description = "The file"),
    responses(
        (status = 201, description = "Stored", body = ArtifactInfo),
        (status = 200, description = "Already stored", body = ArtifactInfo),
    ),
)]
pub async fn upload_artifact(
    State(state): State<ApiState>, _: Admin, headers: HeaderMap, body: Body,
) -> ApiResult<(StatusCode, Json<ArtifactInfo>)> {
    let announced =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_ARTIFACT_BYTES) {
        return Err(ArtifactError::TooLarge { limit: MAX_ARTIFACT_BYTES }.into());
    }
    let before = state.artifacts.list().await.map_err(ArtifactError::Io)?;
    let info = state.artifacts.put(body.into_data_stream(), MAX_ARTIFACT_BYTES).await?;
    let created = !before.iter().any(|a| a.sha256 == info.sha256);
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(info)))
}

/// List the stored artifacts, oldest first.
#[utoipa::path(
    get, path = "/artifacts", tag = "artifacts", security(("adminToken" = [])),
    responses((status = 200, description = "The artifacts", body = Vec<ArtifactInfo>)),
)]
pub async fn list_artifacts(
    State(state): State<ApiState>, _: Admin,
) -> ApiResult<Json<Vec<ArtifactInfo>>> {
    Ok(Json(state.artifacts.list().await.map_err(ArtifactError::Io)?))
}

/// Download an artifact by sha256 (streamed; the agent verifies the hash).
#[utoipa::path(
    get, path = "/agent/artifacts/{sha256}", tag = "agent", security(("agentToken" = [])),
    params(("sha256" = String, Path, description = "The artifact's sha256 (64 hex digits)")),
    responses((status = 200, description = "The file", body = [u8], content_type = "application/octet-stream")),
)]
pub async fn download_artifact(
    State(state): State<ApiState>, AgentCaller(_agent): AgentCaller, Path(sha): Path<String>,
) -> ApiResult<Response> {
    let sha = parse_sha(&sha)?;
    let file = match tokio::fs::File::open(state.artifacts.path(&sha)).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::NotFound(format!("artifact {sha} not found")));
        }
        Err(e) => return Err(ApiError::Internal(format!("reading artifact {sha}: {e}"))),
    };
    let size = file
        .metadata()
        .await
        .map_err(|e| ApiError::Internal(format!("reading artifact {sha}: {e}")))?
        .len();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(ReaderStream::new(file)),
    )
        .into_response())
}

/// Refuse a task whose `grants.artifacts` names anything but stored artifacts.
pub async fn check_task_artifacts(state: &ApiState, spec: &TaskSpec) -> ApiResult<()> {
    for text in &spec.grants.artifacts {
        let sha = parse_sha(text)?;
        let stored = state
            .artifacts
            .info(&sha)
            .await
            .map_err(|e| ApiError::Internal(format!("artifact store: {e}")))?;
        if stored.is_none() {
            return Err(ApiError::bad_request(
                "unknown_artifact",
                format!(
                    "grants.artifacts names {sha}, which is not in the artifact store: upload it first (POST /api/v1/artifacts)"
                ),
            ));
        }
    }
    Ok(())
}
