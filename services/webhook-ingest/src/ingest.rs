//! `POST /webhooks/livekit`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web as aw};
use bus::{Event, Family, proto};
use chrono::{DateTime, Utc};
use livekit::WebhookEvent;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use web::ApiError;
use web::openapi::ErrorBody;

use crate::State;
use crate::batch::{Fact, Prepared};

/// The body LiveKit sends: its protobuf-JSON `WebhookEvent`. `livekit::parse_webhook` reads
/// it (leniently: every field optional, unknown fields and values accepted); this type
/// only describes, for the document, the fields webhook-ingest uses and the limits
/// [`check_storable`] holds them to (a unit test keeps the two equal).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WebhookEvent, example = json!({
    "event": "participant_joined",
    "id": "EV_3eU6Dhq9pBmK",
    "createdAt": "1771351907",
    "room": {"sid": "RM_hycBMAjmt6Ub", "name": "live_video_0193f1c2-7b7e-7c44-9a0e-5b3c1d2e4f60"},
    "participant": {"sid": "PA_8wqkFg2LbZxA", "identity": "0193f1c2-8a11-7d2b-b1f4-3e2d1c0b9a87",
                    "name": "alice", "state": "ACTIVE", "joinedAt": "1771351907"}
}))]
#[allow(dead_code)] // read by the OpenAPI derive only
pub(crate) struct WebhookEventDoc {
    /// `room_started`, `participant_joined`, ... (any name; an empty one is refused).
    #[schema(min_length = 1)]
    event: String,
    /// `EV_...`, the same across LiveKit's retries: the deduplication key.
    #[serde(default)]
    #[schema(max_length = 128)]
    id: String,
    /// Unix seconds when LiveKit emitted it (protojson writes int64 as a string).
    #[serde(default)]
    #[schema(schema_with = string_integer_or_null)]
    created_at: String,
    room: Option<RoomDoc>,
    participant: Option<ParticipantDoc>,
    track: Option<TrackDoc>,
}

/// `livekit.Room`: the fields used.
#[derive(ToSchema)]
#[schema(as = Room)]
#[allow(dead_code)]
pub(crate) struct RoomDoc {
    #[serde(default)]
    #[schema(max_length = 256)]
    sid: String,
    #[serde(default)]
    #[schema(max_length = 256)]
    name: String,
}

/// `livekit.ParticipantInfo`: the fields used.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ParticipantInfo)]
#[allow(dead_code)]
pub(crate) struct ParticipantDoc {
    #[serde(default)]
    #[schema(max_length = 256)]
    sid: String,
    /// The user id (token-issuer's identity).
    #[serde(default)]
    #[schema(max_length = 256)]
    identity: String,
    #[serde(default)]
    name: String,
    /// `CLIENT_INITIATED`, `PARTICIPANT_REMOVED`, ... or a newer name.
    #[serde(default)]
    #[schema(schema_with = string_integer_or_null)]
    disconnect_reason: String,
}

/// `livekit.TrackInfo`: the fields used.
#[derive(ToSchema)]
#[schema(as = TrackInfo)]
#[allow(dead_code)]
pub(crate) struct TrackDoc {
    #[serde(default)]
    sid: String,
    /// `CAMERA`, `MICROPHONE`, `SCREEN_SHARE`, `SCREEN_SHARE_AUDIO`, `UNKNOWN`.
    #[serde(default)]
    #[schema(schema_with = string_integer_or_null)]
    source: String,
}

/// `webhook_events.id`'s limit.
const MAX_ID_CHARS: usize = 128;
/// Room names, sids and identities are short (ours: `live_video_<uuid>`, user ids; LiveKit's
/// sids ~15 characters); a longer one could not go into an index (PostgreSQL refuses
/// entries over ~2.7 kB), so it is refused at the door rather than failing the write.
const MAX_NAME_CHARS: usize = 256;

/// What the database cannot store is refused as a bad body (400, LiveKit does not retry):
/// a NUL character anywhere (`text` and `jsonb` refuse `\u0000`), an over-long id or name.
fn check_storable(event: &WebhookEvent, raw: &serde_json::Value) -> Result<(), ApiError> {
    let refuse = |why: String| Err(ApiError::validation(why).with_status(400));
    if holds_nul(raw) {
        return refuse("the body holds a NUL character (\\u0000)".into());
    }
    if event.id.chars().count() > MAX_ID_CHARS {
        return refuse(format!("id is over {MAX_ID_CHARS} characters"));
    }
    let room = event.room.as_ref();
    let participant = event.participant.as_ref();
    let names = [
        ("room.name", room.map(|r| r.name.as_str())),
        ("room.sid", room.map(|r| r.sid.as_str())),
        ("participant.sid", participant.map(|p| p.sid.as_str())),
        (
            "participant.identity",
            participant.map(|p| p.identity.as_str()),
        ),
    ];
    for (field, value) in names {
        if value.is_some_and(|v| v.chars().count() > MAX_NAME_CHARS) {
            return refuse(format!("{field} is over {MAX_NAME_CHARS} characters"));
        }
    }
    Ok(())
}

fn holds_nul(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// What the lenient parser takes for an int64 (`createdAt`: protojson's decimal string or a
/// plain integer) and for an enum (its name or number); `null` is the zero value.
fn string_integer_or_null() -> utoipa::openapi::schema::Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([
            Type::String,
            Type::Integer,
            Type::Null,
        ]))
        .into()
}

/// The answer to a verified webhook.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Received {
    /// Always `true`.
    success: bool,
    /// `true` when this event id was stored before (a retry): nothing changed.
    duplicate: bool,
}

/// LiveKit's webhook: verified, stored once by its id, published through the outbox.
#[utoipa::path(
    post,
    path = "/webhooks/livekit",
    tag = "webhooks",
    request_body(content = WebhookEventDoc, content_type = "application/webhook+json"),
    security(("livekitWebhook" = [])),
    responses(
        (status = 200, description = "Stored (`duplicate: false`) or already stored (`duplicate: true`)", body = Received),
        (status = 400, description = "VALIDATION_ERROR: signed, but not a webhook body (LiveKit does not retry 4xx)", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED: missing or bad signature, or the body does not match its `sha256` claim", body = ErrorBody),
        (status = 413, description = "PAYLOAD_TOO_LARGE: over `MAX_BODY_BYTES`", body = ErrorBody),
    ),
)]
pub(crate) async fn receive(
    req: HttpRequest,
    payload: aw::Payload,
    state: aw::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let body = web::extract::read_body(payload, state.max_body_bytes).await?;
    let authorization = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    if let Err(e) = livekit::verify_webhook(&state.livekit, authorization, &body) {
        metrics::counter!("webhook_events_total", "event" => "unknown", "outcome" => "unauthorized").increment(1);
        tracing::warn!(error = %e, "webhook refused: bad signature");
        return Err(ApiError::unauthorized(format!("webhook signature: {e}")));
    }
    let event = livekit::parse_webhook(&body).map_err(|e| {
        metrics::counter!("webhook_events_total", "event" => "unknown", "outcome" => "unparseable")
            .increment(1);
        ApiError::validation(format!("not a LiveKit webhook body: {e}")).with_status(400)
    })?;
    if event.event.is_empty() {
        return Err(ApiError::validation("webhook without an event name").with_status(400));
    }
    let raw: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    check_storable(&event, &raw).inspect_err(|_| {
        metrics::counter!("webhook_events_total", "event" => "unknown", "outcome" => "unstorable")
            .increment(1);
    })?;
    let name = subject_token(&event.event);
    let stored = state
        .batcher
        .submit(prepare(&event, raw, &body))
        .await
        .map_err(|e| ApiError::internal(format!("storing the webhook: {e}")))?;
    metrics::counter!(
        "webhook_events_total",
        "event" => name.clone(),
        "outcome" => if stored { "stored" } else { "duplicate" }
    )
    .increment(1);
    Ok(HttpResponse::build(StatusCode::OK).json(Received {
        success: true,
        duplicate: !stored,
    }))
}

/// The event name as a subject token: LiveKit's names are `[a-z_]+`; anything else (a
/// future name with odd characters) is published as `livekit.unknown` rather than refused.
fn subject_token(event: &str) -> String {
    if !event.is_empty()
        && event.len() <= 64
        && event
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        event.to_owned()
    } else {
        "unknown".to_owned()
    }
}

fn at(seconds: i64) -> DateTime<Utc> {
    if seconds > 0 {
        DateTime::from_timestamp(seconds, 0).unwrap_or_else(Utc::now)
    } else {
        Utc::now()
    }
}

/// Prepares the rows of a webhook; the batcher stores them with others in one transaction.
fn prepare(event: &WebhookEvent, raw: serde_json::Value, body: &[u8]) -> Prepared {
    // LiveKit always sends an id; without one, the body's hash keeps retries idempotent.
    let id = if event.id.is_empty() {
        format!("body-{:x}", Sha256::digest(body))
    } else {
        event.id.clone()
    };
    let occurred_at = at(event.created_at);
    let room = event
        .room
        .as_ref()
        .map(|r| r.name.clone())
        .filter(|n| !n.is_empty());
    let participant = event.participant.as_ref().filter(|p| !p.sid.is_empty());
    let name = subject_token(&event.event);
    let payload = proto::LiveKitEvent {
        webhook_id: id.clone(),
        event: event.event.clone(),
        created_at: occurred_at.timestamp(),
        room_name: room.clone().unwrap_or_default(),
        room_sid: event
            .room
            .as_ref()
            .map(|r| r.sid.clone())
            .unwrap_or_default(),
        participant_sid: participant.map(|p| p.sid.clone()).unwrap_or_default(),
        participant_identity: participant.map(|p| p.identity.clone()).unwrap_or_default(),
        participant_name: participant.map(|p| p.name.clone()).unwrap_or_default(),
        disconnect_reason: participant
            .map(|p| p.disconnect_reason.clone())
            .unwrap_or_default(),
        track_sid: event
            .track
            .as_ref()
            .map(|t| t.sid.clone())
            .unwrap_or_default(),
        track_source: event
            .track
            .as_ref()
            .map(|t| t.source.clone())
            .unwrap_or_default(),
        raw_json: raw.to_string(),
    };
    let outgoing = Event::new(
        Family::LiveKit,
        &name,
        room.as_deref().unwrap_or("-"),
        &payload,
    );
    let fact = match (event.event.as_str(), &room, participant) {
        ("participant_joined", Some(room), Some(p)) => Fact::Joined {
            sid: p.sid.clone(),
            room: room.clone(),
            identity: p.identity.clone(),
        },
        ("participant_left" | "participant_connection_aborted", Some(room), Some(p)) => {
            Fact::Left {
                sid: p.sid.clone(),
                room: room.clone(),
                identity: p.identity.clone(),
                reason: Some(p.disconnect_reason.clone()).filter(|r| !r.is_empty()),
            }
        }
        ("room_finished", Some(room), _) => Fact::RoomFinished { room: room.clone() },
        _ => Fact::None,
    };
    Prepared {
        id,
        event: event.event.clone(),
        room,
        participant_sid: participant.map(|p| p.sid.clone()),
        identity: participant.map(|p| p.identity.clone()),
        occurred_at,
        payload: raw,
        fact,
        outgoing,
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_ID_CHARS, MAX_NAME_CHARS, subject_token};

    /// The document states the limits `check_storable` holds.
    #[test]
    fn the_documented_limits_are_the_checked_ones() {
        let doc = serde_json::to_value(crate::openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["WebhookEvent"]["properties"]["id"]["maxLength"],
            MAX_ID_CHARS
        );
        for (schema, field) in [
            ("Room", "name"),
            ("Room", "sid"),
            ("ParticipantInfo", "sid"),
            ("ParticipantInfo", "identity"),
        ] {
            assert_eq!(
                schemas[schema]["properties"][field]["maxLength"], MAX_NAME_CHARS,
                "{schema}.{field}"
            );
        }
    }

    #[test]
    fn odd_event_names_become_unknown() {
        assert_eq!(subject_token("participant_joined"), "participant_joined");
        assert_eq!(subject_token("egress.v2"), "unknown");
        assert_eq!(subject_token("Room Started"), "unknown");
        assert_eq!(subject_token(""), "unknown");
    }
}
