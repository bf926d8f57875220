use std::fmt;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

/// A Twirp error, as LiveKit answers it: `{"code","msg","meta":{}}` with Twirp's HTTP status.
/// The control API answers its errors the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError {
    pub code: String,
    pub msg: String,
}

impl SimError {
    pub fn new(code: &str, msg: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            msg: msg.into(),
        }
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new("not_found", msg)
    }
    pub fn unauthenticated(msg: impl Into<String>) -> Self {
        Self::new("unauthenticated", msg)
    }
    pub fn invalid_argument(msg: impl Into<String>) -> Self {
        Self::new("invalid_argument", msg)
    }
    pub fn permission_denied(msg: impl Into<String>) -> Self {
        Self::new("permission_denied", msg)
    }
    /// LiveKit answers a missing grant with `unauthenticated` "permissions denied".
    pub fn permissions_denied() -> Self {
        Self::unauthenticated("permissions denied")
    }
}

/// Twirp's code → HTTP status table.
pub fn twirp_status(code: &str) -> StatusCode {
    let s = match code {
        "canceled" | "deadline_exceeded" => 408,
        "invalid_argument" | "malformed" | "out_of_range" => 400,
        "not_found" | "bad_route" => 404,
        "already_exists" | "aborted" => 409,
        "permission_denied" => 403,
        "unauthenticated" => 401,
        "resource_exhausted" => 429,
        "failed_precondition" => 412,
        "unimplemented" => 501,
        "unavailable" => 503,
        _ => 500,
    };
    StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.msg)
    }
}

impl std::error::Error for SimError {}

impl ResponseError for SimError {
    fn status_code(&self) -> StatusCode {
        twirp_status(&self.code)
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .json(json!({"code": self.code, "msg": self.msg, "meta": {}}))
    }
}
