//! Roles in a room and the LiveKit grants each one gets.
//!
//! token-issuer turns [`grants`] into the `video` grant of a LiveKit access token, and
//! session-manager uses the same function when a guest goes on or off stage (LiveKit's
//! `UpdateParticipant`), so what a role may do is decided here and nowhere else.

use crate::session::SessionType;

wire_enum! {
    /// What a user is in a room. Returned to the client as `role` with its token.
    pub enum Role ("role") {
        /// The creator of a session; admin of its own room.
        Host => "host",
        /// A guest on stage in a video session.
        CoHost => "co_host",
        /// A guest on stage in an audio room.
        Speaker => "speaker",
        /// The audience of a video session.
        Viewer => "viewer",
        /// The audience of an audio room.
        Listener => "listener",
        /// The party who started a call.
        Caller => "caller",
        /// The party being called.
        Callee => "callee",
    }
}

wire_enum! {
    /// A kind of track a participant may publish, named as LiveKit names them in
    /// `canPublishSources`.
    pub enum TrackSource ("track source") {
        /// The camera.
        Camera => "camera",
        /// The microphone.
        Microphone => "microphone",
        /// A screen share (its video).
        ScreenShare => "screen_share",
        /// The audio of a screen share.
        ScreenShareAudio => "screen_share_audio",
    }
}

/// What a room carries: it caps what anyone in it may publish, whatever the role.
///
/// Comes from [`SessionType::media`] or [`crate::call::CallType::media`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Media {
    /// Video and audio.
    Video,
    /// Audio only: the microphone is the only source anyone may publish.
    AudioOnly,
}

impl Media {
    /// Whether a track from `source` belongs in a room with this media.
    ///
    /// Audio-only rooms refuse the screen share's audio too: it is not the participant's voice
    /// and would let anyone on stage play arbitrary audio into the room.
    pub const fn allows(self, source: TrackSource) -> bool {
        match self {
            Self::Video => true,
            Self::AudioOnly => matches!(source, TrackSource::Microphone),
        }
    }
}

/// The room permissions of one participant, as LiveKit's video grant expresses them.
///
/// Serialised in LiveKit's camelCase (`canPublish`, `canPublishSources`...) so it can be
/// logged or compared with a token's claims as is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grants {
    /// May publish tracks at all.
    pub can_publish: bool,
    /// May receive the others' tracks.
    pub can_subscribe: bool,
    /// May send data messages (chat, reactions).
    pub can_publish_data: bool,
    /// Which sources may be published. **Empty means any source**, as in LiveKit, so a
    /// publisher must never end up with an empty list by accident ([`grants`] guarantees it).
    pub can_publish_sources: Vec<TrackSource>,
    /// May administer the room (mute or remove participants).
    pub room_admin: bool,
}

/// The grants of `role` in a room carrying `media`.
///
/// Each role has the sources it may publish at most; the room's media then removes what it
/// cannot carry (a co-host in an audio-only room keeps the microphone only). Everyone
/// subscribes and sends data (chat is data). Only the host administers its own room.
pub fn grants(role: Role, media: Media) -> Grants {
    use TrackSource::{Camera, Microphone, ScreenShare, ScreenShareAudio};

    let at_most: &[TrackSource] = match role {
        Role::Host => &[Camera, Microphone, ScreenShare, ScreenShareAudio],
        Role::CoHost | Role::Caller | Role::Callee => &[Camera, Microphone],
        Role::Speaker => &[Microphone],
        Role::Viewer | Role::Listener => &[],
    };
    let sources: Vec<TrackSource> = at_most
        .iter()
        .copied()
        .filter(|&source| media.allows(source))
        .collect();
    // Every publisher may use the microphone, which every medium allows, so filtering never
    // turns a publisher's list into the empty "any source" list.
    debug_assert_eq!(at_most.is_empty(), sources.is_empty());

    Grants {
        can_publish: !sources.is_empty(),
        can_subscribe: true,
        can_publish_data: true,
        can_publish_sources: sources,
        room_admin: matches!(role, Role::Host),
    }
}

/// The role of a guest on stage: co-host on video, speaker in an audio room.
pub const fn stage_role(session_type: SessionType) -> Role {
    match session_type {
        SessionType::VideoLive => Role::CoHost,
        SessionType::AudioRoom => Role::Speaker,
    }
}

/// The role of everyone else in a session: viewer on video, listener in an audio room.
pub const fn audience_role(session_type: SessionType) -> Role {
    match session_type {
        SessionType::VideoLive => Role::Viewer,
        SessionType::AudioRoom => Role::Listener,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TrackSource::{Camera, Microphone, ScreenShare, ScreenShareAudio};

    /// Asserts the grants of `role` in `media`: publishing `sources` (none: no publishing).
    fn expect(role: Role, media: Media, sources: &[TrackSource], room_admin: bool) {
        let want = Grants {
            can_publish: !sources.is_empty(),
            can_subscribe: true,
            can_publish_data: true,
            can_publish_sources: sources.to_vec(),
            room_admin,
        };
        assert_eq!(grants(role, media), want, "{role} in {media:?}");
    }

    #[test]
    fn the_role_table() {
        use Media::{AudioOnly, Video};
        let all = [Camera, Microphone, ScreenShare, ScreenShareAudio];
        expect(Role::Host, Video, &all, true);
        expect(Role::Host, AudioOnly, &[Microphone], true);
        expect(Role::CoHost, Video, &[Camera, Microphone], false);
        expect(Role::CoHost, AudioOnly, &[Microphone], false);
        expect(Role::Speaker, Video, &[Microphone], false);
        expect(Role::Speaker, AudioOnly, &[Microphone], false);
        for party in [Role::Caller, Role::Callee] {
            expect(party, Video, &[Camera, Microphone], false);
            expect(party, AudioOnly, &[Microphone], false);
        }
        for audience in [Role::Viewer, Role::Listener] {
            expect(audience, Video, &[], false);
            expect(audience, AudioOnly, &[], false);
        }
    }

    #[test]
    fn publishers_never_get_the_any_source_list() {
        for &role in Role::ALL {
            for media in [Media::Video, Media::AudioOnly] {
                let g = grants(role, media);
                assert_eq!(g.can_publish, !g.can_publish_sources.is_empty(), "{role}");
                assert!(g.can_subscribe && g.can_publish_data, "{role}");
                assert!(g.can_publish_sources.iter().all(|&s| media.allows(s)));
            }
        }
    }

    #[test]
    fn stage_and_audience() {
        assert_eq!(stage_role(SessionType::VideoLive), Role::CoHost);
        assert_eq!(stage_role(SessionType::AudioRoom), Role::Speaker);
        assert_eq!(audience_role(SessionType::VideoLive), Role::Viewer);
        assert_eq!(audience_role(SessionType::AudioRoom), Role::Listener);
    }

    #[test]
    fn livekit_names() {
        let names: Vec<&str> = TrackSource::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            ["camera", "microphone", "screen_share", "screen_share_audio"]
        );
        assert_eq!(Role::CoHost.as_str(), "co_host");
        let json = serde_json::to_value(grants(Role::Speaker, Media::AudioOnly)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "canPublish": true,
                "canSubscribe": true,
                "canPublishData": true,
                "canPublishSources": ["microphone"],
                "roomAdmin": false,
            })
        );
    }
}
