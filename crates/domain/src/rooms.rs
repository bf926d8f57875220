//! LiveKit room names, both ways.
//!
//! A room name is all LiveKit's webhooks tell us about where something happened, so the name
//! carries the kind of room and the id of its session or call, and [`parse_room`] reads them
//! back. The forms are fixed by the design (`live_video_{uuid}`, `audio_room_{uuid}`,
//! `call_video_{uuid}_{unix_ts}`, `call_audio_{uuid}_{unix_ts}`), with the UUID hyphenated and
//! lowercase. Calls add the creation time so that a room name is never reused, even by a
//! retried call with the same id (room names are unique in the database).

use crate::call::CallType;
use crate::ids::{CallId, SessionId};
use crate::session::SessionType;

const LIVE_VIDEO: &str = "live_video_";
const AUDIO_ROOM: &str = "audio_room_";
const CALL_VIDEO: &str = "call_video_";
const CALL_AUDIO: &str = "call_audio_";

/// Length of a hyphenated UUID.
const UUID_LEN: usize = 36;

/// The room of a session: `live_video_{uuid}` or `audio_room_{uuid}`.
pub fn session_room(session_type: SessionType, id: SessionId) -> String {
    let prefix = match session_type {
        SessionType::VideoLive => LIVE_VIDEO,
        SessionType::AudioRoom => AUDIO_ROOM,
    };
    format!("{prefix}{}", id.as_uuid().hyphenated())
}

/// The room of a call created at `unix_ts` (seconds): `call_video_{uuid}_{ts}` or
/// `call_audio_{uuid}_{ts}`.
pub fn call_room(call_type: CallType, id: CallId, unix_ts: i64) -> String {
    let prefix = match call_type {
        CallType::VideoCall => CALL_VIDEO,
        CallType::AudioCall => CALL_AUDIO,
    };
    format!("{prefix}{}_{unix_ts}", id.as_uuid().hyphenated())
}

/// What a room name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomRef {
    /// The room of a live session.
    Session {
        /// The session.
        id: SessionId,
        /// Read from the prefix of the name.
        session_type: SessionType,
    },
    /// The room of a call.
    Call {
        /// The call.
        id: CallId,
        /// Read from the prefix of the name.
        call_type: CallType,
    },
}

/// Reads a room name made by [`session_room`] or [`call_room`].
///
/// `None` for anything else, including near misses (an uppercase or unhyphenated UUID, a
/// timestamp with a `+` sign or leading zeros): only names this crate could have produced are
/// recognised, so a webhook about some other room is ignored rather than misattributed.
pub fn parse_room(name: &str) -> Option<RoomRef> {
    if let Some(rest) = name.strip_prefix(LIVE_VIDEO) {
        return parse_session(name, rest, SessionType::VideoLive);
    }
    if let Some(rest) = name.strip_prefix(AUDIO_ROOM) {
        return parse_session(name, rest, SessionType::AudioRoom);
    }
    if let Some(rest) = name.strip_prefix(CALL_VIDEO) {
        return parse_call(name, rest, CallType::VideoCall);
    }
    if let Some(rest) = name.strip_prefix(CALL_AUDIO) {
        return parse_call(name, rest, CallType::AudioCall);
    }
    None
}

fn parse_session(name: &str, rest: &str, session_type: SessionType) -> Option<RoomRef> {
    let id: SessionId = rest.parse().ok()?;
    // Re-formatting and comparing refuses every non-canonical spelling `uuid` would accept.
    (session_room(session_type, id) == name).then_some(RoomRef::Session { id, session_type })
}

fn parse_call(name: &str, rest: &str, call_type: CallType) -> Option<RoomRef> {
    let id: CallId = rest.get(..UUID_LEN)?.parse().ok()?;
    let unix_ts: i64 = rest.get(UUID_LEN..)?.strip_prefix('_')?.parse().ok()?;
    (call_room(call_type, id, unix_ts) == name).then_some(RoomRef::Call { id, call_type })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use uuid::Uuid;

    const UUID: &str = "0190f5c2-6a1b-7c3d-8e4f-a1b2c3d4e5f6";

    fn session_id() -> SessionId {
        UUID.parse().unwrap()
    }

    fn call_id() -> CallId {
        UUID.parse().unwrap()
    }

    #[test]
    fn names_are_as_designed() {
        assert_eq!(
            session_room(SessionType::VideoLive, session_id()),
            format!("live_video_{UUID}")
        );
        assert_eq!(
            session_room(SessionType::AudioRoom, session_id()),
            format!("audio_room_{UUID}")
        );
        assert_eq!(
            call_room(CallType::VideoCall, call_id(), 1_700_000_000),
            format!("call_video_{UUID}_1700000000")
        );
        assert_eq!(
            call_room(CallType::AudioCall, call_id(), 1_700_000_000),
            format!("call_audio_{UUID}_1700000000")
        );
    }

    #[test]
    fn every_kind_round_trips() {
        for &session_type in SessionType::ALL {
            let id = SessionId::new_v7();
            assert_eq!(
                parse_room(&session_room(session_type, id)),
                Some(RoomRef::Session { id, session_type })
            );
        }
        for &call_type in CallType::ALL {
            let id = CallId::new_v7();
            assert_eq!(
                parse_room(&call_room(call_type, id, 1_700_000_000)),
                Some(RoomRef::Call { id, call_type })
            );
        }
    }

    #[test]
    fn foreign_and_malformed_names_are_refused() {
        let upper = UUID.to_uppercase();
        let simple = UUID.replace('-', "");
        for name in [
            String::new(),
            "lobby".to_owned(),
            "live_video_".to_owned(),
            format!("video_live_{UUID}"),
            format!("live_video_{upper}"),
            format!("live_video_{simple}"),
            format!("live_video_{UUID}_1"),
            format!("live_video_{{{UUID}}}"),
            format!("call_video_{UUID}"),
            format!("call_video_{UUID}_"),
            format!("call_video_{UUID}_+5"),
            format!("call_video_{UUID}_007"),
            format!("call_video_{UUID}_12x"),
            format!("call_audio_{simple}_1700000000"),
            format!("call_audio_{UUID}-1700000000"),
            "call_audio_é".to_owned(),
        ] {
            assert_eq!(parse_room(&name), None, "{name}");
        }
    }

    proptest! {
        #[test]
        fn call_rooms_round_trip(bits: u128, ts: i64, video: bool) {
            let id = CallId::from_uuid(Uuid::from_u128(bits));
            let call_type = if video { CallType::VideoCall } else { CallType::AudioCall };
            prop_assert_eq!(
                parse_room(&call_room(call_type, id, ts)),
                Some(RoomRef::Call { id, call_type })
            );
        }

        #[test]
        fn parse_never_panics(name in "\\PC{0,80}") {
            let _ = parse_room(&name);
        }
    }
}
