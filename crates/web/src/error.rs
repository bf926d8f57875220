//! The error envelope: `{"success":false,"error":"<human message>","errorCode":"<CODE>"}`.

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use domain::ErrorCode;

/// An error answered to a client. 5xx messages are opaque: the cause is logged once here.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds, for `429` (`Retry-After`).
    pub retry_after: Option<u64>,
    /// A status other than the code's own, where the contract says so (a webhook body that
    /// cannot be parsed is `400 VALIDATION_ERROR`: LiveKit does not retry 4xx).
    pub status: Option<u16>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
            status: None,
        }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationError, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        ApiError {
            code: ErrorCode::RateLimited,
            message: "too many requests".into(),
            retry_after: Some(retry_after_secs.max(1)),
            status: None,
        }
    }
    /// The same error with another HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    /// An unexpected failure: logged with its cause chain, answered opaquely.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::InternalError, "internal error")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status.unwrap_or(self.code.http_status()))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let body = serde_json::json!({
            "success": false,
            "error": self.message,
            "errorCode": self.code.as_str(),
        });
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        if let Some(secs) = self.retry_after {
            res.insert_header((RETRY_AFTER, secs.to_string()));
        }
        res.body(body.to_string())
    }
}

impl From<db::DbError> for ApiError {
    fn from(e: db::DbError) -> Self {
        ApiError::internal(e)
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<domain::InvalidTransition> for ApiError {
    fn from(e: domain::InvalidTransition) -> Self {
        ApiError::new(ErrorCode::InvalidTransition, e.to_string())
    }
}

impl From<domain::validate::InvalidInput> for ApiError {
    fn from(e: domain::validate::InvalidInput) -> Self {
        ApiError::validation(e.to_string())
    }
}

/// `{"success":true, ...payload}` with the given status.
pub fn success(status: StatusCode, payload: serde_json::Value) -> HttpResponse {
    let mut body = serde_json::Map::new();
    body.insert("success".into(), serde_json::Value::Bool(true));
    if let serde_json::Value::Object(map) = payload {
        body.extend(map);
    }
    HttpResponse::build(status).json(serde_json::Value::Object(body))
}
