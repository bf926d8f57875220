//! The answered shapes' shared parts and the OpenAPI document.
//!
//! Every success answer is a [`Success`] around a payload struct the handler builds and
//! serializes, and the same structs are the document's schemas (through `ToSchema`), so
//! `GET /openapi.json` describes what is sent rather than what someone remembered to write.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use utoipa::openapi::schema::Schema;
use utoipa::{OpenApi, ToSchema};
use web::openapi::{BearerAuth, nullable_wire_enum, wire_enum};

pub use web::openapi::Success;

/// An answer with nothing but the envelope: `{"success":true}`.
#[derive(Serialize, ToSchema)]
pub struct Empty {}

/// Times as API.md shows them: RFC 3339 UTC with milliseconds (`2026-01-02T03:04:05.678Z`).
pub fn millis<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// The same, `null` when absent.
pub fn millis_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => millis(t, s),
        None => s.serialize_none(),
    }
}

// The wire enums of `domain` that the answers and bodies carry, as schemas.
pub fn session_type_schema() -> Schema {
    wire_enum(domain::session::SessionType::WIRE_NAMES)
}
pub fn access_type_schema() -> Schema {
    wire_enum(domain::session::AccessType::WIRE_NAMES)
}
pub fn session_status_schema() -> Schema {
    wire_enum(domain::session::SessionStatus::WIRE_NAMES)
}
pub fn end_reason_schema() -> Schema {
    nullable_wire_enum(domain::session::EndReason::WIRE_NAMES)
}
pub fn stage_status_schema() -> Schema {
    wire_enum(domain::stage::StageStatus::WIRE_NAMES)
}
/// The roles a guest goes back to.
pub fn audience_role_schema() -> Schema {
    use domain::roles::audience_role;
    use domain::session::SessionType;
    let roles: Vec<&str> = SessionType::ALL
        .iter()
        .map(|&t| audience_role(t).as_str())
        .collect();
    wire_enum(&roles)
}

#[derive(OpenApi)]
#[openapi(
    info(title = "session-manager", description = "Live sessions, the stage, chat and gifts (API.md)."),
    paths(
        crate::routes::create,
        crate::routes::list,
        crate::routes::get,
        crate::routes::leave,
        crate::routes::end,
        crate::routes::pause,
        crate::routes::resume,
        crate::stage::invite,
        crate::stage::respond_invitation,
        crate::stage::request,
        crate::stage::respond_request,
        crate::stage::end_turn,
        crate::chat::post,
        crate::chat::list,
        crate::gifts::send,
        crate::gifts::catalogue,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
struct Doc;

/// The service's OpenAPI document, generated from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = Doc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.info.license = None; // the crate names none
    doc
}

/// PostgreSQL's `text` cannot hold U+0000 (the insert would fail as a 500): a text field
/// with one is refused as the bad input it is. (Their schemas say so with the pattern
/// `^[^\x00]*$`.)
pub fn no_nul(field: &str, text: &str) -> Result<(), web::ApiError> {
    if text.contains('\0') {
        return Err(web::ApiError::validation(format!(
            "{field} must not contain NUL characters"
        )));
    }
    Ok(())
}

// What each refusal means, for the responses' descriptions (codes and statuses: API.md).
pub const UNAUTHORIZED: &str =
    "UNAUTHORIZED: no token, a malformed, badly signed or expired one, or one naming no profile";
pub const INVALID_INPUT: &str =
    "VALIDATION_ERROR: a malformed path id, query, body or header (unknown fields included)";
pub const TOO_LARGE: &str = "PAYLOAD_TOO_LARGE: the body is over MAX_BODY_BYTES";
pub const SESSION_NOT_FOUND: &str = "SESSION_NOT_FOUND: no such session";
pub const NOT_HOST: &str = "FORBIDDEN: only the session's host may do this";
pub const TRANSITION: &str =
    "INVALID_TRANSITION: the session's (or the stage request's) state does not allow it";
pub const LIVEKIT_UNAVAILABLE: &str = "INTERNAL_ERROR: LiveKit did not apply the permission \
     change; nothing was changed, try again after Retry-After";

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    /// The limits written as literals in the annotations (utoipa takes no constants there)
    /// are the ones the code enforces.
    #[test]
    fn documented_limits_are_the_enforced_ones() {
        use domain::validate::{PriceCoins, SessionTitle};
        let doc: Value = serde_json::to_value(super::openapi()).unwrap();
        let schema = |name: &str| doc["components"]["schemas"][name]["properties"].clone();
        let create = schema("CreateSession");
        assert_eq!(create["title"]["maxLength"], json!(SessionTitle::MAX_CHARS));
        assert_eq!(create["priceCoins"]["minimum"], json!(PriceCoins::MIN));
        assert_eq!(create["priceCoins"]["maximum"], json!(PriceCoins::MAX));
        assert_eq!(
            schema("PostMessage")["body"]["maxLength"],
            json!(crate::chat::MAX_BODY_CHARS)
        );
        let key = &doc["paths"]["/v1/sessions/{id}/gifts"]["post"]["parameters"][1];
        assert_eq!(key["name"], web::idempotency::HEADER);
        let pattern = key["schema"]["pattern"].as_str().unwrap();
        assert!(
            pattern.contains(&format!("{{0,{}}}", web::idempotency::MAX_LEN - 2)),
            "{pattern}"
        );
    }
}
