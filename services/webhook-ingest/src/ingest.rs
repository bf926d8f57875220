//! `POST /webhooks/livekit`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web as aw};
use bus::{Event, Family, proto};
use chrono::{DateTime, Utc};
use livekit::WebhookEvent;
use sha2::{Digest, Sha256};
use web::ApiError;
use web::error::success;

use crate::State;
use crate::batch::{Fact, Prepared};

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
    Ok(success(
        StatusCode::OK,
        serde_json::json!({ "duplicate": !stored }),
    ))
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
    use super::subject_token;

    #[test]
    fn odd_event_names_become_unknown() {
        assert_eq!(subject_token("participant_joined"), "participant_joined");
        assert_eq!(subject_token("egress.v2"), "unknown");
        assert_eq!(subject_token("Room Started"), "unknown");
        assert_eq!(subject_token(""), "unknown");
    }
}
