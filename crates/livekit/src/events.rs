//! Lenient LiveKit webhook types.
//!
//! LiveKit writes webhook bodies as protobuf-JSON: camelCase keys, zero values omitted, int64
//! values as strings, enums as names. These types read that leniently — every field is
//! optional, unknown fields are ignored, int64 fields take `"123"` or `123`, enum values are kept
//! as strings so a value added by a newer LiveKit still parses — and write it back the way
//! LiveKit does, so tests and `livekit-sim` can produce bodies with them.
//!
//! An enum field that protojson omits holds the name of the zero value (`state` = `JOINING`,
//! `kind` = `STANDARD`, `disconnectReason` = `UNKNOWN_REASON`, track `type` = `AUDIO`,
//! `source` = `UNKNOWN`), so comparing with a name works whether or not the field was sent.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::serde_util::{enum_string_or, enum_strings, int64_as_string, is_zero, lenient_int};

/// Parses a webhook body. Fails only on a body that is not a JSON object of the expected shape
/// (for example a string where an object must be); unknown fields and values are accepted.
pub fn parse_webhook(body: &[u8]) -> Result<WebhookEvent, serde_json::Error> {
    serde_json::from_slice(body)
}

macro_rules! enum_field {
    ($default:ident, $de:ident, $is_zero:ident, $zero:literal) => {
        fn $default() -> String {
            $zero.to_owned()
        }
        fn $de<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
            enum_string_or(d, $zero)
        }
        fn $is_zero(v: &str) -> bool {
            v.is_empty() || v == $zero
        }
    };
}

enum_field!(state_zero, state_de, state_is_zero, "JOINING");
enum_field!(kind_zero, kind_de, kind_is_zero, "STANDARD");
enum_field!(reason_zero, reason_de, reason_is_zero, "UNKNOWN_REASON");
enum_field!(type_zero, type_de, type_is_zero, "AUDIO");
enum_field!(source_zero, source_de, source_is_zero, "UNKNOWN");

/// `livekit.WebhookEvent`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEvent {
    /// `room_started`, `participant_joined`, ... — any string, known or not.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<ParticipantInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<TrackInfo>,
    /// `EV_...`, the same across LiveKit's retries of one emission: the deduplication key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Unix seconds when LiveKit emitted the event.
    #[serde(
        default,
        deserialize_with = "lenient_int",
        serialize_with = "int64_as_string",
        skip_serializing_if = "is_zero"
    )]
    pub created_at: i64,
    #[serde(
        default,
        deserialize_with = "lenient_int",
        skip_serializing_if = "is_zero"
    )]
    pub num_dropped: i32,
}

/// `livekit.Room` (the fields we use).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomInfo {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Seconds.
    #[serde(
        default,
        deserialize_with = "lenient_int",
        skip_serializing_if = "is_zero"
    )]
    pub empty_timeout: u32,
    /// Seconds.
    #[serde(
        default,
        deserialize_with = "lenient_int",
        skip_serializing_if = "is_zero"
    )]
    pub departure_timeout: u32,
    #[serde(
        default,
        deserialize_with = "lenient_int",
        skip_serializing_if = "is_zero"
    )]
    pub max_participants: u32,
    /// Unix seconds.
    #[serde(
        default,
        deserialize_with = "lenient_int",
        serialize_with = "int64_as_string",
        skip_serializing_if = "is_zero"
    )]
    pub creation_time: i64,
    /// Unix milliseconds.
    #[serde(
        default,
        deserialize_with = "lenient_int",
        serialize_with = "int64_as_string",
        skip_serializing_if = "is_zero"
    )]
    pub creation_time_ms: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metadata: String,
    /// Unreliable in webhooks: count participants from our own rows.
    #[serde(
        default,
        deserialize_with = "lenient_int",
        skip_serializing_if = "is_zero"
    )]
    pub num_participants: u32,
    #[serde(
        default,
        deserialize_with = "lenient_int",
        skip_serializing_if = "is_zero"
    )]
    pub num_publishers: u32,
}

/// `livekit.ParticipantInfo` (the fields we use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantInfo {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub identity: String,
    /// `JOINING`, `JOINED`, `ACTIVE`, `DISCONNECTED`, or anything newer.
    #[serde(
        default = "state_zero",
        deserialize_with = "state_de",
        skip_serializing_if = "state_is_zero"
    )]
    pub state: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracks: Vec<TrackInfo>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metadata: String,
    /// Unix seconds.
    #[serde(
        default,
        deserialize_with = "lenient_int",
        serialize_with = "int64_as_string",
        skip_serializing_if = "is_zero"
    )]
    pub joined_at: i64,
    /// Unix milliseconds.
    #[serde(
        default,
        deserialize_with = "lenient_int",
        serialize_with = "int64_as_string",
        skip_serializing_if = "is_zero"
    )]
    pub joined_at_ms: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<ParticipantPermission>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub is_publisher: bool,
    /// `STANDARD`, `INGRESS`, `EGRESS`, `SIP`, `AGENT`, ...
    #[serde(
        default = "kind_zero",
        deserialize_with = "kind_de",
        skip_serializing_if = "kind_is_zero"
    )]
    pub kind: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// `CLIENT_INITIATED`, `DUPLICATE_IDENTITY`, `PARTICIPANT_REMOVED`, ... or a newer name.
    #[serde(
        default = "reason_zero",
        deserialize_with = "reason_de",
        skip_serializing_if = "reason_is_zero"
    )]
    pub disconnect_reason: String,
}

impl Default for ParticipantInfo {
    fn default() -> Self {
        Self {
            sid: String::new(),
            identity: String::new(),
            state: state_zero(),
            tracks: Vec::new(),
            metadata: String::new(),
            joined_at: 0,
            joined_at_ms: 0,
            name: String::new(),
            permission: None,
            is_publisher: false,
            kind: kind_zero(),
            attributes: BTreeMap::new(),
            disconnect_reason: reason_zero(),
        }
    }
}

/// `livekit.ParticipantPermission` (the fields we use).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantPermission {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub can_subscribe: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub can_publish: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub can_publish_data: bool,
    /// Enum names as LiveKit writes them here: `CAMERA`, `MICROPHONE`, `SCREEN_SHARE`,
    /// `SCREEN_SHARE_AUDIO` (see [`crate::normalize_source`]).
    #[serde(
        default,
        deserialize_with = "enum_strings",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub can_publish_sources: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hidden: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub can_update_metadata: bool,
}

/// `livekit.TrackInfo` (the fields we use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackInfo {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sid: String,
    /// `AUDIO`, `VIDEO`, `DATA`.
    #[serde(
        default = "type_zero",
        deserialize_with = "type_de",
        skip_serializing_if = "type_is_zero"
    )]
    pub r#type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub muted: bool,
    /// `CAMERA`, `MICROPHONE`, `SCREEN_SHARE`, `SCREEN_SHARE_AUDIO`, `UNKNOWN`.
    #[serde(
        default = "source_zero",
        deserialize_with = "source_de",
        skip_serializing_if = "source_is_zero"
    )]
    pub source: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mime_type: String,
}

impl Default for TrackInfo {
    fn default() -> Self {
        Self {
            sid: String::new(),
            r#type: type_zero(),
            name: String::new(),
            muted: false,
            source: source_zero(),
            mime_type: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livekit_protocol as proto;
    use serde_json::{Value, json};

    /// Shaped like a real LiveKit body, with things this crate has never heard of.
    const BODY: &str = r#"{
      "event": "participant_teleported",
      "room": {
        "sid": "RM_hycBMAjmt6Ub", "name": "live-42", "emptyTimeout": 300,
        "departureTimeout": 20, "creationTime": "1771351800", "creationTimeMs": "1771351800123",
        "turnPassword": "x", "enabledCodecs": [{"mime": "audio/opus"}, {"mime": "video/VP8"}],
        "numParticipants": 2, "version": {"unixMicro": "1771351800123456"}
      },
      "participant": {
        "sid": "PA_8wqkFg2LbZxA", "identity": "user-1", "state": "DISCONNECTED",
        "joinedAt": "1771351850", "joinedAtMs": "1771351850456", "name": "Alice", "version": 7,
        "permission": {"canSubscribe": true, "canPublish": true, "canPublishData": true,
                       "canPublishSources": ["CAMERA", "MICROPHONE", 9]},
        "region": "eu", "isPublisher": true,
        "disconnectReason": "SOME_NEW_REASON", "someNewField": {"nested": [1, 2]},
        "tracks": [{"sid": "TR_1", "type": "VIDEO", "source": "CAMERA", "width": 1280}]
      },
      "id": "EV_ZkdFUq4ssu2U",
      "createdAt": "1771351907",
      "numDropped": 1,
      "brandNewTopLevel": true
    }"#;

    #[test]
    fn parses_a_livekit_body_with_unknowns() {
        let ev = parse_webhook(BODY.as_bytes()).unwrap();
        assert_eq!(ev.event, "participant_teleported");
        assert_eq!(ev.id, "EV_ZkdFUq4ssu2U");
        assert_eq!(ev.created_at, 1_771_351_907);
        assert_eq!(ev.num_dropped, 1);
        let room = ev.room.unwrap();
        assert_eq!(room.name, "live-42");
        assert_eq!(room.creation_time, 1_771_351_800);
        assert_eq!(room.empty_timeout, 300);
        assert_eq!(room.num_participants, 2);
        let p = ev.participant.unwrap();
        assert_eq!(p.identity, "user-1");
        assert_eq!(p.state, "DISCONNECTED");
        assert_eq!(p.disconnect_reason, "SOME_NEW_REASON");
        assert_eq!(p.kind, "STANDARD");
        assert_eq!(p.joined_at, 1_771_351_850);
        let perm = p.permission.unwrap();
        assert_eq!(perm.can_publish_sources, vec!["CAMERA", "MICROPHONE", "9"]);
        assert_eq!(p.tracks[0].r#type, "VIDEO");
        assert!(ev.track.is_none());
    }

    #[test]
    fn int64_as_number_and_nulls_are_accepted() {
        let ev = parse_webhook(br#"{"event":"room_started","createdAt":1771351907,"room":null}"#)
            .unwrap();
        assert_eq!(ev.created_at, 1_771_351_907);
        assert!(ev.room.is_none());
        let ev = parse_webhook(br#"{}"#).unwrap();
        assert_eq!(ev, WebhookEvent::default());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_webhook(b"not json").is_err());
        assert!(parse_webhook(br#"{"room":"oops"}"#).is_err());
        assert!(parse_webhook(br#"{"createdAt":"soon"}"#).is_err());
    }

    #[test]
    fn serializes_like_livekit() {
        let ev = WebhookEvent {
            event: "participant_left".into(),
            room: Some(RoomInfo {
                sid: "RM_1".into(),
                name: "r".into(),
                creation_time: 1_771_351_800,
                ..Default::default()
            }),
            participant: Some(ParticipantInfo {
                sid: "PA_1".into(),
                identity: "u".into(),
                state: "DISCONNECTED".into(),
                disconnect_reason: "DUPLICATE_IDENTITY".into(),
                ..Default::default()
            }),
            id: "EV_1".into(),
            created_at: 1_771_351_907,
            ..Default::default()
        };
        let v: Value = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            v,
            json!({
                "event": "participant_left",
                "room": {"sid": "RM_1", "name": "r", "creationTime": "1771351800"},
                "participant": {"sid": "PA_1", "identity": "u", "state": "DISCONNECTED",
                                "disconnectReason": "DUPLICATE_IDENTITY"},
                "id": "EV_1",
                "createdAt": "1771351907"
            })
        );
    }

    /// Our serialization of the fields we model equals `livekit-protocol`'s own protojson.
    #[test]
    fn round_trips_livekit_protocol_json() {
        let ev = proto::WebhookEvent {
            event: "track_published".into(),
            id: "EV_abc".into(),
            created_at: 1_771_351_907,
            room: Some(proto::Room {
                sid: "RM_x".into(),
                name: "live".into(),
                empty_timeout: 300,
                departure_timeout: 20,
                creation_time: 1_771_351_800,
                creation_time_ms: 1_771_351_800_123,
                num_participants: 1,
                ..Default::default()
            }),
            participant: Some(proto::ParticipantInfo {
                sid: "PA_x".into(),
                identity: "u".into(),
                state: proto::participant_info::State::Active as i32,
                joined_at: 1_771_351_850,
                joined_at_ms: 1_771_351_850_001,
                name: "U".into(),
                is_publisher: true,
                permission: Some(proto::ParticipantPermission {
                    can_subscribe: true,
                    can_publish: true,
                    can_publish_sources: vec![proto::TrackSource::Microphone as i32],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            track: Some(proto::TrackInfo {
                sid: "TR_x".into(),
                r#type: proto::TrackType::Audio as i32,
                source: proto::TrackSource::Microphone as i32,
                muted: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        let theirs: Value = serde_json::to_value(&ev).unwrap();
        let ours: WebhookEvent = serde_json::from_value(theirs.clone()).unwrap();
        assert_eq!(ours.track.as_ref().unwrap().r#type, "AUDIO");
        assert_eq!(serde_json::to_value(&ours).unwrap(), theirs);
    }
}
