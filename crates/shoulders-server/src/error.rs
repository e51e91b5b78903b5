//! Every failure becomes `{"error":{"code":"E_...","message":"..."}}` with a fitting status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shoulders_attrib::index::IndexError;
use shoulders_ledger::LedgerError;
use shoulders_state::Reject;

/// An API error: HTTP status, stable code and a message a person can act on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds to send as `Retry-After` (a 429 that will pass later).
    pub retry_after_s: Option<u64>,
}

/// The JSON error body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable code, listed in ARCHITECTURE.md.
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "E_NOT_FOUND", message)
    }

    pub fn bad_json(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "E_JSON_INVALID",
            format!("the request body is not valid JSON for this route: {message}"),
        )
    }

    /// A write sent to a read-only node. 403, not 409: the refusal is this node's role, not a
    /// state of the resource that the client could resolve and retry against this node (the
    /// `openai` clients retry 409 but not 403), and the request itself is fine: it succeeds on
    /// the writer.
    pub fn read_only() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "E_READ_ONLY",
            "this node serves reads only; send writes to the writer node",
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "E_INTERNAL", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(v) = self
            .retry_after_s
            .and_then(|s| axum::http::HeaderValue::from_str(&s.to_string()).ok())
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        let status = match &e {
            LedgerError::Rejected(Reject::Record(_)) => StatusCode::BAD_REQUEST,
            LedgerError::Rejected(Reject::InsufficientFunds { .. }) => StatusCode::PAYMENT_REQUIRED,
            LedgerError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            LedgerError::IdConflict { .. } => StatusCode::CONFLICT,
            LedgerError::TimestampOutsideWindow { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            LedgerError::WrongLedger { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            LedgerError::BatchTooLarge { .. } | LedgerError::ContentTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            LedgerError::NotAContribution(_)
            | LedgerError::ContentHashMismatch { .. }
            | LedgerError::ContentNotUtf8(_) => StatusCode::BAD_REQUEST,
            LedgerError::ContentMissing(_) | LedgerError::ContentSizeMismatch { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            LedgerError::NotFound(_) => StatusCode::NOT_FOUND,
            LedgerError::PageSize { .. }
            | LedgerError::Cursor(_)
            | LedgerError::PeriodTooLarge { .. } => StatusCode::BAD_REQUEST,
            LedgerError::Log(shoulders_log::LogError::TileNotInTree(_)) => StatusCode::NOT_FOUND,
            LedgerError::Log(_) => StatusCode::BAD_REQUEST,
            LedgerError::WriterStopped | LedgerError::Locked(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<IndexError> for ApiError {
    fn from(e: IndexError) -> Self {
        let status = match &e {
            IndexError::QueryTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IndexError::Empty => StatusCode::CONFLICT,
            // Deterministic for this text and index: retrying it will not help.
            IndexError::BudgetExceeded { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            IndexError::Cancelled { .. } => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<shoulders_record::RecordError> for ApiError {
    fn from(e: shoulders_record::RecordError) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(format!("a worker task failed: {e}"))
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
