//! `PUT /v1/devices` and `DELETE /v1/devices/{token}`: the push device registry.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web as aw};
use db::models::PushDevice;
use db::queries::{profiles, push};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;
use web::openapi::ErrorBody;
use web::{ApiError, AuthUser};

use crate::State;
use crate::push::provider::{DeviceKind, Platform};

/// The longest token the table takes (APNs tokens are 64 hex digits, FCM ones ~160 chars).
pub const MAX_TOKEN_CHARS: usize = 4096;

/// Registers the device routes.
pub fn routes(cfg: &mut aw::ServiceConfig) {
    cfg.route("/v1/devices", aw::put().to(register))
        .route("/v1/devices/{token}", aw::delete().to(unregister));
}

/// A registered push device, as API.md's style writes it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub id: Uuid,
    #[schema(value_type = Platform)]
    pub platform: String,
    #[schema(value_type = DeviceKind)]
    pub kind: String,
    /// The provider's token (APNs device or PushKit token, FCM registration token).
    pub token: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// The last push sent to it, if any.
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
}

impl From<&PushDevice> for Device {
    fn from(d: &PushDevice) -> Self {
        let ts = |t: chrono::DateTime<chrono::Utc>| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        Device {
            id: d.id,
            platform: d.platform.clone(),
            kind: d.kind.clone(),
            token: d.token.clone(),
            created_at: ts(d.created_at),
            updated_at: ts(d.updated_at),
            last_used_at: d.last_used_at.map(ts),
        }
    }
}

/// `{"success":true,"device":{...}}`: the answer of both device routes.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceAnswer {
    /// Always `true`.
    pub success: bool,
    pub device: Device,
}

impl DeviceAnswer {
    fn ok(device: &PushDevice) -> HttpResponse {
        HttpResponse::build(StatusCode::OK).json(DeviceAnswer {
            success: true,
            device: device.into(),
        })
    }
}

/// `PUT /v1/devices`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RegisterDevice {
    platform: Platform,
    /// Android has only `standard` tokens.
    kind: DeviceKind,
    /// The provider's token: 1 to 4096 characters, no whitespace or control characters.
    #[schema(
        min_length = 1,
        max_length = 4096,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]+$"
    )]
    token: String,
}

/// A token is opaque, but never empty, never longer than the table allows, and never holds
/// whitespace or control characters (it travels in a URL path and an HTTP header).
fn check_token(token: &str) -> Result<(), ApiError> {
    if token.is_empty() {
        return Err(ApiError::validation("token must not be empty"));
    }
    if token.chars().count() > MAX_TOKEN_CHARS {
        return Err(ApiError::validation(format!(
            "token must be at most {MAX_TOKEN_CHARS} characters"
        )));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::validation(
            "token must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

/// The caller's profile must exist (a valid token naming no profile is 401).
async fn require_profile(c: &mut db::AsyncPgConnection, user: Uuid) -> Result<(), ApiError> {
    profiles::find(c, user)
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::unauthorized("unknown user"))
}

/// Registers (or re-registers) a push token for the caller; idempotent, and a token that
/// belonged to another user moves to the caller.
#[utoipa::path(
    put,
    path = "/v1/devices",
    tag = "devices",
    request_body = RegisterDevice,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Registered", body = DeviceAnswer),
        (status = 401, description = "UNAUTHORIZED: missing, bad or expired token, or no profile", body = ErrorBody),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = ErrorBody),
        (status = 422, description = "VALIDATION_ERROR: bad body, unknown platform or kind, a bad token, or an Android VoIP token", body = ErrorBody),
    ),
)]
pub(crate) async fn register(
    user: AuthUser,
    state: aw::Data<State>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    require_profile(&mut conn, user.0).await?;
    let body: RegisterDevice = web::extract::from_object(body.into_inner())?;
    check_token(&body.token)?;
    if body.platform == Platform::Android && body.kind == DeviceKind::Voip {
        return Err(ApiError::validation(
            "android has no VoIP tokens: register it as kind `standard`",
        ));
    }
    let device = push::upsert_device(
        &mut conn,
        user.0,
        body.platform.as_str(),
        body.kind.as_str(),
        &body.token,
    )
    .await?;
    tracing::info!(user.id = %user.0, device.id = %device.id, device.platform = %device.platform, device.kind = %device.kind, "push device registered");
    Ok(DeviceAnswer::ok(&device))
}

/// Removes one of the caller's push tokens.
#[utoipa::path(
    delete,
    path = "/v1/devices/{token}",
    tag = "devices",
    params(("token" = String, Path, description = "The push token, URL-encoded",
        min_length = 1, max_length = 4096, pattern = r"^[^\s\x00-\x1f\x7f-\x9f]+$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Removed: the device it was", body = DeviceAnswer),
        (status = 401, description = "UNAUTHORIZED", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: not a token of the caller's", body = ErrorBody),
        (status = 422, description = "VALIDATION_ERROR: not something `PUT /v1/devices` would have taken as a token", body = ErrorBody),
    ),
)]
pub(crate) async fn unregister(
    user: AuthUser,
    state: aw::Data<State>,
    token: aw::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    require_profile(&mut conn, user.0).await?;
    let token = token.into_inner();
    // What could never have been registered is refused as PUT refuses it (a NUL would also
    // fail the query: PostgreSQL's text cannot hold one).
    check_token(&token)?;
    // Someone else's token answers as an unknown one: its existence is not revealed.
    let device = push::delete_device(&mut conn, user.0, &token)
        .await?
        .ok_or_else(|| ApiError::not_found("no such device"))?;
    tracing::info!(user.id = %user.0, device.id = %device.id, "push device removed");
    Ok(DeviceAnswer::ok(&device))
}
