//! `POST /webhooks/livekit`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web as aw};
use bus::{Event, Family, proto};
use chrono::{DateTime, Utc};
use db::models::NewWebhookEvent;
use db::queries::webhooks::{self, ConnectionFact};
use diesel_async::AsyncConnection;
use livekit::WebhookEvent;
use sha2::{Digest, Sha256};
use web::ApiError;
use web::error::success;

use crate::State;

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
    let stored = store(&state, &event, &raw, &body).await?;
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

/// Stores the event, its connection fact and its outbox row in one transaction; `false`
/// when the event id was already stored.
async fn store(
    state: &State,
    event: &WebhookEvent,
    raw: &serde_json::Value,
    body: &[u8],
) -> Result<bool, ApiError> {
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
        .map(|r| r.name.as_str())
        .filter(|n| !n.is_empty());
    let participant = event.participant.as_ref().filter(|p| !p.sid.is_empty());
    let name = subject_token(&event.event);
    let payload = proto::LiveKitEvent {
        webhook_id: id.clone(),
        event: event.event.clone(),
        created_at: occurred_at.timestamp(),
        room_name: room.unwrap_or_default().to_owned(),
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
    let outgoing = Event::new(Family::LiveKit, &name, room.unwrap_or("-"), &payload);
    let mut conn = db::pool::conn(&state.pool).await?;
    let stored = conn
        .transaction::<bool, db::DbError, _>(async |c| {
            let row = NewWebhookEvent {
                id: &id,
                event: &event.event,
                room_name: room,
                participant_sid: participant.map(|p| p.sid.as_str()),
                identity: participant.map(|p| p.identity.as_str()),
                occurred_at,
                payload: raw.clone(),
            };
            if !webhooks::insert_event(c, &row).await? {
                return Ok(false);
            }
            match (event.event.as_str(), room, participant) {
                ("participant_joined", Some(room), Some(p)) => {
                    webhooks::record_connection(
                        c,
                        &p.sid,
                        room,
                        &p.identity,
                        ConnectionFact::Joined { at: occurred_at },
                    )
                    .await?;
                }
                ("participant_left" | "participant_connection_aborted", Some(room), Some(p)) => {
                    let reason = Some(p.disconnect_reason.as_str()).filter(|r| !r.is_empty());
                    webhooks::record_connection(
                        c,
                        &p.sid,
                        room,
                        &p.identity,
                        ConnectionFact::Left {
                            at: occurred_at,
                            reason,
                        },
                    )
                    .await?;
                }
                ("room_finished", Some(room), _) => {
                    webhooks::close_room(c, room, occurred_at, "ROOM_FINISHED").await?;
                }
                _ => {}
            }
            bus::outbox::enqueue(c, &state.subjects, &outgoing).await?;
            Ok(true)
        })
        .await?;
    Ok(stored)
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
