//! [`ApiError`]: every way a request can fail, with its HTTP status and a stable
//! code, rendered as `{"error": {"code", "message"}}`.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::protocol::{ErrorBody, ErrorDetail};
use crate::scheduler::SchedulerError;
use crate::store::StoreError;

/// A failed request. Each variant maps to one status and one code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body or a parameter is not acceptable (400).
    #[error("{message}")]
    BadRequest {
        /// Stable code, e.g. `invalid_json`, `invalid_params`, `invalid_plugin`.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No token, or a token the daemon does not know (401).
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token asking for something it may not do (403).
    #[error("{0}")]
    Forbidden(String),
    /// The thing named does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than the daemon accepts (413).
    #[error("{0}")]
    TooLarge(String),
    /// A peer the daemon called for the request refused it (502).
    #[error("{0}")]
    Upstream(String),
    /// The database is unreachable; retry later (503).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure (500); details are in the daemon's log.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { code, message: message.into() }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream_refused"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body =
            ErrorBody { error: ErrorDetail { code: code.to_string(), message: self.to_string() } };
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            StoreError::Conflict { .. } | StoreError::VersionTaken { .. } => {
                ApiError::Conflict(e.to_string())
            }
            StoreError::Transition(_) => ApiError::Conflict(e.to_string()),
            StoreError::NotLeased { .. } => ApiError::Forbidden(e.to_string()),
            StoreError::Invalid(_) => ApiError::Conflict(e.to_string()),
            StoreError::Database(_)
            | StoreError::Sqlite(_)
            | StoreError::Closed
            | StoreError::WriterFailed
            | StoreError::Migration(_) => {
                ApiError::Unavailable(format!("the database is not available: {e}"))
            }
            StoreError::Corrupt(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<SchedulerError> for ApiError {
    fn from(e: SchedulerError) -> Self {
        match e {
            SchedulerError::InvalidTask(_) => ApiError::bad_request("invalid_task", e.to_string()),
            SchedulerError::UnknownPlugin(_) => {
                ApiError::bad_request("unknown_plugin", e.to_string())
            }
            SchedulerError::Cycle(_) => ApiError::bad_request("trigger_cycle", e.to_string()),
            SchedulerError::Store(e) => e.into(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::BytesRejection(BytesRejection::FailedToBufferBody(e))
                if e.to_string().contains("length limit") =>
            {
                ApiError::TooLarge(format!("request body too large: {e}"))
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::bad_request(
                "invalid_json",
                "expected a JSON body with Content-Type: application/json",
            ),
            other => ApiError::bad_request("invalid_json", other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        ApiError::TooLarge(format!("request body too large: {}", rejection.body_text()))
    }
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
