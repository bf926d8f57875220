//! Extractors and their error handlers, so every bad input gets the envelope.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{FromRequest, HttpRequest, web};
use auth::JwtVerifier;
use domain::ErrorCode;

use crate::error::ApiError;

/// The verifier, registered as app data by every service.
#[derive(Clone, Debug)]
pub struct Verifier(pub JwtVerifier);

/// A caller with a valid bearer token. Whether a `profiles` row exists is up to the handler
/// (token-issuer folds it into its single query; others use `require_profile`).
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub uuid::Uuid);

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(verifier) = req.app_data::<web::Data<Verifier>>() else {
            return ready(Err(ApiError::internal("no JWT verifier registered")));
        };
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok());
        ready(
            verifier
                .0
                .verify_header(header)
                .map(|c| AuthUser(c.user_id))
                .map_err(|e| ApiError::unauthorized(e.to_string())),
        )
    }
}

/// JSON bodies: size limit and the envelope for every refusal.
pub fn json_config(max_body_bytes: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(max_body_bytes)
        .error_handler(|err, _req| json_error(err).into())
}

fn json_error(err: JsonPayloadError) -> ApiError {
    match err {
        JsonPayloadError::OverflowKnownLength { length, limit } => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("body of {length} bytes is over the limit of {limit} bytes"),
        ),
        JsonPayloadError::Overflow { limit } => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("body is over the limit of {limit} bytes"),
        ),
        JsonPayloadError::ContentType => {
            ApiError::validation("expected Content-Type: application/json")
        }
        JsonPayloadError::Deserialize(e) => ApiError::validation(format!("invalid JSON body: {e}")),
        JsonPayloadError::Serialize(e) => ApiError::internal(e),
        JsonPayloadError::Payload(e) => ApiError::validation(format!("cannot read body: {e}")),
        other => ApiError::validation(format!("invalid body: {other}")),
    }
}

/// Raw bodies (webhooks): size limit with the envelope.
pub fn payload_config(max_body_bytes: usize) -> web::PayloadConfig {
    web::PayloadConfig::new(max_body_bytes)
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        ApiError::validation(format!("invalid query string: {err}")).into()
    })
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err: PathError, _req| {
        ApiError::validation(format!("invalid path: {err}")).into()
    })
}

/// 404 with the envelope for unknown routes.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found("no such route"))
}

/// Reads a raw body up to `limit` bytes (webhooks hash the exact bytes), answering the
/// envelope's 413 past it.
pub async fn read_body(
    mut payload: actix_web::web::Payload,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    use futures_util::StreamExt;
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::validation(format!("cannot read body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("body is over the limit of {limit} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Parses a JSON body into `T`, refusing anything but an object (serde would otherwise
/// read an array's items as the struct's fields by position).
pub fn from_object<T: serde::de::DeserializeOwned>(body: serde_json::Value) -> Result<T, ApiError> {
    if !body.is_object() {
        return Err(ApiError::validation("the body must be a JSON object"));
    }
    serde_json::from_value(body).map_err(|e| ApiError::validation(format!("invalid body: {e}")))
}
