//! OpenAPI: every service's document is generated from its handlers' `#[utoipa::path]`
//! annotations and the `ToSchema` types they answer with, and served at `GET /openapi.json`.
//! The pieces every service shares live here: the error envelope, the bearer scheme, wire
//! enums (from `domain`'s `WIRE_NAMES`), and the route itself.

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web as aw};
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::{Modify, ToSchema};

/// The error envelope of API.md: `{"success":false,"error":"...","errorCode":"..."}`.
#[derive(serde::Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    /// A human message (opaque for 5xx).
    pub error: String,
    /// One of API.md's error codes.
    #[schema(schema_with = error_code_schema)]
    pub error_code: String,
}

// What `web::error::success` answers, as a type: a handler answers `ok(status, payload)` and
// its `#[utoipa::path]` names the body `Success<Payload>`, so the document and the answer come
// from the same struct. (The doc comment below is the schema's description.)
/// A success answer: `{"success":true, ...payload}`.
#[derive(serde::Serialize, ToSchema)]
pub struct Success<T> {
    /// Always `true`.
    pub success: bool,
    #[serde(flatten)]
    pub payload: T,
}

impl<T: serde::Serialize> Success<T> {
    pub fn new(payload: T) -> Self {
        Success {
            success: true,
            payload,
        }
    }

    /// The answer as JSON, for answers that are stored (idempotent replays).
    pub fn into_value(self) -> serde_json::Value {
        // Plain structs with string keys: serializing them cannot fail.
        serde_json::to_value(self).expect("an answer serializes to JSON")
    }
}

/// Answers `{"success":true, ...payload}` with the given status.
pub fn ok<T: serde::Serialize>(status: actix_web::http::StatusCode, payload: T) -> HttpResponse {
    HttpResponse::build(status).json(Success::new(payload))
}

/// `errorCode`'s schema: every code of `domain::ErrorCode`.
pub fn error_code_schema() -> Schema {
    wire_enum(domain::ErrorCode::WIRE_NAMES)
}

/// A string schema limited to the given wire names (use with `#[schema(schema_with = ..)]`
/// for fields of `domain`'s wire enums).
pub fn wire_enum(names: &[&str]) -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .enum_values(Some(names.iter().copied()))
            .build(),
    )
}

/// The same, nullable (an optional wire enum answered as `null` when absent).
pub fn nullable_wire_enum(names: &[&str]) -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
            .enum_values(Some(names.iter().copied().map(Some).chain([None])))
            .build(),
    )
}

/// Adds the `bearer` security scheme (the app's HS256 access token) to a document; use as
/// `#[openapi(modifiers(&web::openapi::BearerAuth), security(("bearer" = [])))]`.
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components
            .schemas
            .entry("ErrorBody".to_owned())
            .or_insert_with(|| RefOr::T(<ErrorBody as utoipa::PartialSchema>::schema().into()));
    }
}

/// Registers `GET /openapi.json` answering `doc` (serialized once).
pub fn route(doc: OpenApi) -> impl FnOnce(&mut aw::ServiceConfig) {
    let body = doc.to_json().expect("an OpenAPI document serializes");
    move |cfg| {
        let body = aw::Bytes::from(body);
        cfg.route(
            "/openapi.json",
            aw::get().to(move || {
                let body = body.clone();
                async move {
                    HttpResponse::Ok()
                        .content_type(ContentType::json())
                        .body(body)
                }
            }),
        );
    }
}
