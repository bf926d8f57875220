//! Events as clients see them: the payload decoded once per event, its JSON written once, and
//! the whole SSE frame kept as `Bytes` that every recipient shares.

use bus::Incoming;
use bus::proto;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// The payload of an event the stream forwards.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Call(proto::CallChanged),
    Session(proto::SessionChanged),
    Participant(proto::SessionParticipantChanged),
    Guest(proto::GuestChanged),
    Message(proto::MessagePosted),
    Gift(proto::GiftSent),
}

/// Why an event is not forwarded.
#[derive(Debug, thiserror::Error)]
pub enum Skip {
    #[error("no client cares about {0}")]
    Unrouted(String),
    #[error("payload of {event_type} does not decode: {source}")]
    Undecodable {
        event_type: String,
        source: prost::DecodeError,
    },
}

/// The `session.*` events that carry `SessionChanged` (status changes of a session).
const SESSION_STATUS_EVENTS: [&str; 7] = [
    "created",
    "live",
    "host_disconnected",
    "host_returned",
    "paused",
    "resumed",
    "ended",
];

impl Payload {
    /// Decodes the payload `event_type` carries, as the event contract names it. Unknown
    /// types are skipped rather than guessed at: a payload decoded as the wrong message
    /// would route to the wrong users.
    pub fn decode(event_type: &str, incoming: &Incoming) -> Result<Payload, Skip> {
        let undecodable = |source| Skip::Undecodable {
            event_type: event_type.to_owned(),
            source,
        };
        let Some((family, name)) = event_type.split_once('.') else {
            return Err(Skip::Unrouted(event_type.to_owned()));
        };
        match (family, name) {
            ("call", _) => incoming.payload().map(Payload::Call),
            ("session", "participant_joined" | "participant_left") => {
                incoming.payload().map(Payload::Participant)
            }
            ("session", "message_posted" | "message_deleted") => {
                incoming.payload().map(Payload::Message)
            }
            ("session", "gift_sent") => incoming.payload().map(Payload::Gift),
            ("session", n) if n.starts_with("guest_") => incoming.payload().map(Payload::Guest),
            ("session", n) if SESSION_STATUS_EVENTS.contains(&n) => {
                incoming.payload().map(Payload::Session)
            }
            _ => return Err(Skip::Unrouted(event_type.to_owned())),
        }
        .map_err(undecodable)
    }

    /// The session the event is about (none for calls).
    pub fn session_id(&self) -> Option<Uuid> {
        let id = match self {
            Payload::Call(_) => return None,
            Payload::Session(p) => &p.session_id,
            Payload::Participant(p) => &p.session_id,
            Payload::Guest(p) => &p.session_id,
            Payload::Message(p) => &p.session_id,
            Payload::Gift(p) => &p.session_id,
        };
        Uuid::parse_str(id).ok()
    }

    /// The payload's fields in camelCase; empty proto strings (unset) are `null`.
    fn fields(&self) -> Value {
        match self {
            Payload::Call(p) => json!({
                "callId": s(&p.call_id),
                "callerId": s(&p.caller_id),
                "calleeId": s(&p.callee_id),
                "callType": s(&p.call_type),
                "status": s(&p.status),
                "previousStatus": s(&p.previous_status),
                "roomName": s(&p.room_name),
                "endedReason": s(&p.ended_reason),
            }),
            Payload::Session(p) => json!({
                "sessionId": s(&p.session_id),
                "creatorId": s(&p.creator_id),
                "sessionType": s(&p.session_type),
                "accessType": s(&p.access_type),
                "roomName": s(&p.room_name),
                "status": s(&p.status),
                "previousStatus": s(&p.previous_status),
                "endReason": s(&p.end_reason),
                "viewerCount": p.viewer_count,
                "peakViewers": p.peak_viewers,
                "title": s(&p.title),
            }),
            Payload::Participant(p) => json!({
                "sessionId": s(&p.session_id),
                "userId": s(&p.user_id),
                "role": s(&p.role),
                "active": p.active,
                "viewerCount": p.viewer_count,
            }),
            Payload::Guest(p) => json!({
                "sessionId": s(&p.session_id),
                "requestId": s(&p.request_id),
                "userId": s(&p.user_id),
                "kind": s(&p.kind),
                "status": s(&p.status),
                "role": s(&p.role),
            }),
            Payload::Message(p) => json!({
                "sessionId": s(&p.session_id),
                "messageId": s(&p.message_id),
                "userId": s(&p.user_id),
                "body": s(&p.body),
                "deleted": p.deleted,
            }),
            Payload::Gift(p) => json!({
                "sessionId": s(&p.session_id),
                "giftRowId": s(&p.gift_row_id),
                "senderId": s(&p.sender_id),
                "recipientId": s(&p.recipient_id),
                "giftId": s(&p.gift_id),
                "coins": p.coins,
                "hostShare": p.host_share,
            }),
        }
    }
}

fn s(v: &str) -> Value {
    if v.is_empty() {
        Value::Null
    } else {
        Value::String(v.to_owned())
    }
}

/// Parses a user id of a payload; a malformed one names nobody.
pub fn user(id: &str) -> Option<Uuid> {
    Uuid::parse_str(id).ok()
}

/// `id: <uuid>\nevent: <type>\ndata: <json>\n\n`, the data being the payload's fields plus
/// `type`, `id` and `occurredAt`. `event_type` comes from the NATS subject, which cannot hold
/// a line break; serde_json escapes any inside strings, so the data stays on one line.
pub fn frame(event_type: &str, incoming: &Incoming, payload: &Payload) -> Bytes {
    let mut data = match payload.fields() {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    data.insert("type".into(), Value::String(event_type.to_owned()));
    data.insert("id".into(), Value::String(incoming.id.to_string()));
    data.insert(
        "occurredAt".into(),
        Value::String(
            incoming
                .occurred_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ),
    );
    let data = Value::Object(data).to_string();
    Bytes::from(format!(
        "id: {}\nevent: {event_type}\ndata: {data}\n\n",
        incoming.id
    ))
}

/// Tells a resuming client that its `Last-Event-ID` is out of the window: refetch state.
pub fn resync_frame(reason: &str) -> Bytes {
    let data = json!({ "type": "resync", "reason": reason });
    Bytes::from(format!("event: resync\ndata: {data}\n\n"))
}

/// The first bytes of every stream: how long a client waits before reconnecting.
pub const RETRY: &[u8] = b"retry: 3000\n\n";

/// The heartbeat comment (keeps proxies and NATs from closing idle connections).
pub const HEARTBEAT: &[u8] = b": hb\n\n";

#[cfg(test)]
mod tests {
    use super::*;
    use bus::{Event, Family};

    fn incoming(event: &Event) -> Incoming {
        Incoming::decode("x", &event.encode(), 1).unwrap()
    }

    #[test]
    fn frame_is_one_event_with_camel_case_data_on_one_line() {
        let msg = proto::MessagePosted {
            session_id: Uuid::nil().to_string(),
            message_id: "m1".into(),
            user_id: "u1".into(),
            body: "two\nlines".into(),
            deleted: false,
        };
        let ev = Event::new(Family::Session, "message_posted", "s", &msg);
        let inc = incoming(&ev);
        let payload = Payload::decode("session.message_posted", &inc).unwrap();
        let text =
            String::from_utf8(frame("session.message_posted", &inc, &payload).to_vec()).unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines[0], format!("id: {}", ev.id));
        assert_eq!(lines[1], "event: session.message_posted");
        assert!(text.ends_with("\n\n"));
        assert_eq!(lines.len(), 5, "{text}");
        let data: Value = serde_json::from_str(lines[2].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["type"], "session.message_posted");
        assert_eq!(data["id"], ev.id.to_string());
        assert_eq!(data["messageId"], "m1");
        assert_eq!(data["body"], "two\nlines");
        assert!(data["occurredAt"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn unknown_and_garbage_are_skipped() {
        let ev = Event::new(
            Family::Session,
            "whatever",
            "s",
            &proto::SessionChanged::default(),
        );
        assert!(matches!(
            Payload::decode("session.whatever", &incoming(&ev)),
            Err(Skip::Unrouted(_))
        ));
        let mut bad = incoming(&ev);
        bad.payload = vec![0xff, 0xff, 0xff];
        assert!(matches!(
            Payload::decode("call.ringing", &bad),
            Err(Skip::Undecodable { .. })
        ));
    }
}
