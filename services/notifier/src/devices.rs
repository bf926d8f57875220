//! `PUT /v1/devices` and `DELETE /v1/devices/{token}`: the push device registry.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web as aw};
use db::models::PushDevice;
use db::queries::{profiles, push};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;
use web::error::success;
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

/// The device as API.md's style writes it.
pub fn device_json(d: &PushDevice) -> Value {
    let ts =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json!({
        "id": d.id,
        "platform": d.platform,
        "kind": d.kind,
        "token": d.token,
        "createdAt": ts(d.created_at),
        "updatedAt": ts(d.updated_at),
        "lastUsedAt": d.last_used_at.map(ts),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RegisterDevice {
    platform: Platform,
    kind: DeviceKind,
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

async fn register(
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
    Ok(success(
        StatusCode::OK,
        json!({ "device": device_json(&device) }),
    ))
}

async fn unregister(
    user: AuthUser,
    state: aw::Data<State>,
    token: aw::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    require_profile(&mut conn, user.0).await?;
    let token = token.into_inner();
    // Someone else's token answers as an unknown one: its existence is not revealed.
    let device = push::delete_device(&mut conn, user.0, &token)
        .await?
        .ok_or_else(|| ApiError::not_found("no such device"))?;
    tracing::info!(user.id = %user.0, device.id = %device.id, "push device removed");
    Ok(success(
        StatusCode::OK,
        json!({ "device": device_json(&device) }),
    ))
}
