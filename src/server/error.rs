//! The API's one error type: JSON `{error, message}` with the status, never an internal
//! detail; `From` impls let handlers use `?` on the library's errors.

use crate::job::payload::PayloadError;
use crate::notebook::NotebookError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa::ToSchema;

/// One error type for every endpoint: a status, a stable code, and a message safe to show.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) error: &'static str,
    pub(super) message: String,
    pub(super) retry_after: Option<u64>,
}

/// The body of every error answer.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code: bad_request, unauthorized, forbidden, not_found, conflict,
    /// payload_too_large, too_many_jobs, unavailable, internal.
    pub error: String,
    /// What went wrong, for a person; never internals or credentials.
    pub message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            message: crate::redact::text(&message.into()),
            retry_after: None,
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(super) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(super) fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        e.retry_after = Some(5);
        e
    }

    pub(super) fn internal(e: impl std::fmt::Display) -> Self {
        // The detail goes to the log, not to the caller.
        tracing::error!("request failed: {}", crate::redact::text(&e.to_string()));
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request failed; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(json!({"error": self.error, "message": self.message})),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

impl From<PayloadError> for ApiError {
    fn from(e: PayloadError) -> Self {
        match e {
            PayloadError::MissingWorkflowId { .. } => {
                ApiError::bad_request("Missing required field: workflow_id")
            }
            PayloadError::InvalidJson(m) => ApiError::bad_request(format!("malformed JSON: {m}")),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

impl From<NotebookError> for ApiError {
    fn from(e: NotebookError) -> Self {
        match e {
            NotebookError::Invalid(_) | NotebookError::Mapping(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
            }
            NotebookError::NotFound { .. } => ApiError::not_found(e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

/// Failures of the server's own reads and writes: logged, answered as 500 without detail.
macro_rules! internal_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for ApiError {
            fn from(e: $t) -> Self {
                ApiError::internal(e)
            }
        }
    )*};
}

internal_errors!(
    crate::query::QueryError,
    crate::migrate::MigrateError,
    super::journal::RunsError,
    serde_json::Error
);
