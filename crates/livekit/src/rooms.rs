//! The part of LiveKit's RoomService the services use, behind a trait a test can replace.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use livekit_api::services::room::{CreateRoomOptions, RoomClient, UpdateParticipantOptions};
use livekit_api::services::{ServerError, ServiceError};
use livekit_protocol as proto;

use crate::Credentials;
use crate::token::normalize_source;

/// A boxed `Send` future: what [`RoomService`] methods return so the trait stays object-safe
/// (`Arc<dyn RoomService>`). Implement a method with `Box::pin(async move { ... })`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The time [`LiveKitRooms`] gives one call before answering [`RoomError::Unavailable`].
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A RoomService call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    /// The room, participant or track does not exist (Twirp `not_found`).
    #[error("not found")]
    NotFound,
    /// LiveKit could not be reached, timed out, or answered a 5xx: worth retrying later.
    #[error("LiveKit unavailable: {0}")]
    Unavailable(String),
    /// Anything else (refused credentials, invalid argument, ...): retrying will not help.
    #[error("LiveKit error: {0}")]
    Other(String),
}

/// A room as LiveKit reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Room {
    pub sid: String,
    pub name: String,
    /// Seconds.
    pub empty_timeout: u32,
    /// Seconds.
    pub departure_timeout: u32,
    pub max_participants: u32,
    /// Unix seconds.
    pub creation_time: i64,
    pub num_participants: u32,
    pub metadata: String,
}

/// What a participant may do. LiveKit's `UpdateParticipant` replaces **every** field with the
/// ones given, so change one by reading the participant, editing its `permission` and writing
/// all of it back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permission {
    pub can_publish: bool,
    pub can_subscribe: bool,
    pub can_publish_data: bool,
    /// Lower-case source names (`camera`, `microphone`, `screen_share`, `screen_share_audio`);
    /// a non-empty list restricts publishing to those.
    pub can_publish_sources: Vec<String>,
    pub hidden: bool,
    pub can_update_metadata: bool,
}

impl Permission {
    /// LiveKit's rule for publishing a track of `source`.
    pub fn allows_source(&self, source: &str) -> bool {
        let Some(source) = normalize_source(source) else {
            return false;
        };
        self.can_publish
            && (self.can_publish_sources.is_empty()
                || self.can_publish_sources.iter().any(|s| s == source))
    }
}

/// A published track.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Track {
    pub sid: String,
    /// Lower-case source name, or `unknown`.
    pub source: String,
    pub muted: bool,
}

/// A participant as LiveKit reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Participant {
    pub sid: String,
    pub identity: String,
    pub name: String,
    /// `JOINING`, `JOINED`, `ACTIVE`, `DISCONNECTED`.
    pub state: String,
    /// Unix seconds.
    pub joined_at: i64,
    pub metadata: String,
    pub permission: Permission,
    pub tracks: Vec<Track>,
}

/// LiveKit's RoomService, as much of it as the services need.
///
/// Object-safe: hold it as `Arc<dyn RoomService>` and give unit tests a fake.
pub trait RoomService: Send + Sync {
    /// Creates the room, or returns the existing one unchanged (LiveKit does not apply new
    /// timeouts to an existing room). Timeouts in seconds; 0 = LiveKit's default.
    fn create_room<'a>(
        &'a self,
        name: &'a str,
        empty_timeout_s: u32,
        departure_timeout_s: u32,
        max_participants: u32,
    ) -> BoxFuture<'a, Result<Room, RoomError>>;

    /// Deletes the room, disconnecting everyone. A room that does not exist is `Ok`.
    fn delete_room<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), RoomError>>;

    /// The rooms with these names that exist; every room when `names` is empty.
    fn list_rooms<'a>(&'a self, names: &'a [String])
    -> BoxFuture<'a, Result<Vec<Room>, RoomError>>;

    /// The participants of a room; a room that does not exist has none.
    fn list_participants<'a>(
        &'a self,
        room: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Participant>, RoomError>>;

    /// The participant with this identity, `None` when it is not in the room.
    fn get_participant<'a>(
        &'a self,
        room: &'a str,
        identity: &'a str,
    ) -> BoxFuture<'a, Result<Option<Participant>, RoomError>>;

    /// Disconnects the participant. One that is not in the room is `Ok`.
    fn remove_participant<'a>(
        &'a self,
        room: &'a str,
        identity: &'a str,
    ) -> BoxFuture<'a, Result<(), RoomError>>;

    /// Replaces **all** of the participant's permissions with `permission` (read-modify-write:
    /// fields left at their default are revoked). Revoking publishing unpublishes its tracks.
    /// Returns the updated participant.
    fn update_participant_permission<'a>(
        &'a self,
        room: &'a str,
        identity: &'a str,
        permission: Permission,
    ) -> BoxFuture<'a, Result<Participant, RoomError>>;

    /// Mutes (or, when the server allows remote unmute, unmutes) one published track.
    fn mute_published_track<'a>(
        &'a self,
        room: &'a str,
        identity: &'a str,
        track_sid: &'a str,
        muted: bool,
    ) -> BoxFuture<'a, Result<(), RoomError>>;
}

/// Changes what a participant may publish and nothing else: reads the participant, replaces
/// `can_publish` and `can_publish_sources`, and writes the whole permission back (LiveKit's
/// `UpdateParticipant` replaces every field, so writing only the publish part would revoke
/// subscribing and data). `sources` empty = may not publish at all; revoking makes LiveKit
/// unpublish the participant's tracks at once. `Ok(None)` when the participant is not in the
/// room (nothing to change).
pub async fn set_publishing(
    rooms: &dyn RoomService,
    room: &str,
    identity: &str,
    sources: &[&str],
) -> Result<Option<Participant>, RoomError> {
    let Some(current) = rooms.get_participant(room, identity).await? else {
        return Ok(None);
    };
    let permission = Permission {
        can_publish: !sources.is_empty(),
        can_publish_sources: sources.iter().map(|s| (*s).to_owned()).collect(),
        ..current.permission
    };
    match rooms
        .update_participant_permission(room, identity, permission)
        .await
    {
        Ok(p) => Ok(Some(p)),
        // Gone between the read and the write.
        Err(RoomError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`RoomService`] over `livekit-api`'s `RoomClient` (protobuf Twirp), each call bounded by a
/// timeout.
#[derive(Debug, Clone)]
pub struct LiveKitRooms {
    client: Arc<RoomClient>,
    timeout: Duration,
}

impl LiveKitRooms {
    /// `url` is the server API base (`http(s)://host:7880`; `ws(s)://` is accepted too).
    pub fn new(url: &str, creds: &Credentials) -> Self {
        Self::with_timeout(url, creds, DEFAULT_CALL_TIMEOUT)
    }

    pub fn with_timeout(url: &str, creds: &Credentials, timeout: Duration) -> Self {
        let client = RoomClient::with_api_key(url, &creds.api_key, &creds.api_secret)
            .with_request_timeout(timeout);
        Self {
            client: Arc::new(client),
            timeout,
        }
    }

    async fn call<T>(
        &self,
        fut: impl Future<Output = Result<T, ServiceError>>,
    ) -> Result<T, RoomError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(map_error),
            Err(_) => Err(RoomError::Unavailable(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}

fn map_error(e: ServiceError) -> RoomError {
    match e {
        ServiceError::Twirp(ServerError::Twirp(code)) => match code.code.as_str() {
            "not_found" => RoomError::NotFound,
            "unavailable" | "internal" | "unknown" | "deadline_exceeded" | "canceled"
            | "resource_exhausted" | "dataloss" => {
                RoomError::Unavailable(format!("{}: {}", code.code, code.msg))
            }
            _ => RoomError::Other(format!("{}: {}", code.code, code.msg)),
        },
        ServiceError::Twirp(ServerError::Request(e)) => RoomError::Unavailable(e.to_string()),
        e => RoomError::Other(e.to_string()),
    }
}

fn source_name(v: i32) -> String {
    proto::TrackSource::try_from(v)
        .map(|s| s.as_str_name().to_ascii_lowercase())
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn source_from_name(s: &str) -> Option<proto::TrackSource> {
    normalize_source(s).and_then(|n| proto::TrackSource::from_str_name(&n.to_ascii_uppercase()))
}

impl From<proto::Room> for Room {
    fn from(r: proto::Room) -> Self {
        Self {
            sid: r.sid,
            name: r.name,
            empty_timeout: r.empty_timeout,
            departure_timeout: r.departure_timeout,
            max_participants: r.max_participants,
            creation_time: r.creation_time,
            num_participants: r.num_participants,
            metadata: r.metadata,
        }
    }
}

impl From<&proto::ParticipantPermission> for Permission {
    fn from(p: &proto::ParticipantPermission) -> Self {
        Self {
            can_publish: p.can_publish,
            can_subscribe: p.can_subscribe,
            can_publish_data: p.can_publish_data,
            can_publish_sources: p
                .can_publish_sources
                .iter()
                .map(|s| source_name(*s))
                .filter(|s| s != "unknown")
                .collect(),
            hidden: p.hidden,
            can_update_metadata: p.can_update_metadata,
        }
    }
}

impl Permission {
    /// The protobuf form; an unknown source name is an error (LiveKit would drop it, and an
    /// empty list means "any source").
    pub fn to_proto(&self) -> Result<proto::ParticipantPermission, RoomError> {
        let sources = self
            .can_publish_sources
            .iter()
            .map(|s| {
                source_from_name(s)
                    .map(|s| s as i32)
                    .ok_or_else(|| RoomError::Other(format!("unknown track source {s:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(proto::ParticipantPermission {
            can_subscribe: self.can_subscribe,
            can_publish: self.can_publish,
            can_publish_data: self.can_publish_data,
            can_publish_sources: sources,
            hidden: self.hidden,
            can_update_metadata: self.can_update_metadata,
            ..Default::default()
        })
    }
}

impl From<proto::ParticipantInfo> for Participant {
    fn from(p: proto::ParticipantInfo) -> Self {
        let state = proto::participant_info::State::try_from(p.state)
            .map(|s| s.as_str_name().to_owned())
            .unwrap_or_else(|_| p.state.to_string());
        Self {
            permission: p
                .permission
                .as_ref()
                .map(Permission::from)
                .unwrap_or_default(),
            tracks: p
                .tracks
                .into_iter()
                .map(|t| Track {
                    source: source_name(t.source),
                    sid: t.sid,
                    muted: t.muted,
                })
                .collect(),
            sid: p.sid,
            identity: p.identity,
            name: p.name,
            state,
            joined_at: p.joined_at,
            metadata: p.metadata,
        }
    }
}

impl RoomService for LiveKitRooms {
    fn create_room<'a>(
        &'a self,
        name: &'a str,
        empty_timeout_s: u32,
        departure_timeout_s: u32,
        max_participants: u32,
    ) -> BoxFuture<'a, Result<Room, RoomError>> {
        Box::pin(async move {
            let opts = CreateRoomOptions {
                empty_timeout: empty_timeout_s,
                departure_timeout: departure_timeout_s,
                max_participants,
                ..Default::default()
            };
            self.call(self.client.create_room(name, opts))
                .await
                .map(Room::from)
        })
    }

    fn delete_room<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), RoomError>> {
        Box::pin(async move {
            match self.call(self.client.delete_room(name)).await {
                Err(RoomError::NotFound) => Ok(()),
                r => r,
            }
        })
    }

    fn list_rooms<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Room>, RoomError>> {
        Box::pin(async move {
            let rooms = self.call(self.client.list_rooms(names.to_vec())).await?;
            Ok(rooms.into_iter().map(Room::from).collect())
        })
    }

    fn list_participants<'a>(
        &'a self,
        room: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Participant>, RoomError>> {
        Box::pin(async move {
            match self.call(self.client.list_participants(room)).await {
                Ok(ps) => Ok(ps.into_iter().map(Participant::from).collect()),
                Err(RoomError::NotFound) => Ok(Vec::new()),
                Err(e) => Err(e),
            }
        })
    }

    fn get_participant<'a>(
        &'a self,
        room: &'a str,
        identity: &'a str,
    ) -> BoxFuture<'a, Result<Option<Participant>, RoomError>> {
        Box::pin(async move {
            match self.call(self.client.get_participant(room, identity)).await {
                Ok(p) => Ok(Some(p.into())),
                Err(RoomError::NotFound) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn remove_participant<'a>(
        &'a self,
        room: &'a str,
        identity: &'a str,
    ) -> BoxFuture<'a, Result<(), RoomError>> {
        Box::pin(async move {
            match self
                .call(self.client.remove_participant(room, identity))
                .await
            {
                Err(RoomError::NotFound) => Ok(()),
                r => r,
            }
        })
    }

    fn update_participant_permission<'a>(
        &'a self,
        room: &'a str,
        identity: &'a str,
        permission: Permission,
    ) -> BoxFuture<'a, Result<Participant, RoomError>> {
        Box::pin(async move {
            let opts = UpdateParticipantOptions {
                permission: Some(permission.to_proto()?),
                ..Default::default()
            };
            self.call(self.client.update_participant(room, identity, opts))
                .await
                .map(Participant::from)
        })
    }

    fn mute_published_track<'a>(
        &'a self,
        room: &'a str,
        identity: &'a str,
        track_sid: &'a str,
        muted: bool,
    ) -> BoxFuture<'a, Result<(), RoomError>> {
        Box::pin(async move {
            // RoomClient::mute_published_track unwraps the track of the answer and panics when
            // the server omits it; a task contains that panic.
            let client = Arc::clone(&self.client);
            let (room, identity, track_sid) =
                (room.to_owned(), identity.to_owned(), track_sid.to_owned());
            let task = tokio::spawn(async move {
                client
                    .mute_published_track(&room, &identity, &track_sid, muted)
                    .await
                    .map(|_| ())
            });
            match tokio::time::timeout(self.timeout, task).await {
                Ok(Ok(r)) => r.map_err(map_error),
                Ok(Err(join)) => Err(RoomError::Other(format!(
                    "mute_published_track failed: {join}"
                ))),
                Err(_) => Err(RoomError::Unavailable(format!(
                    "no answer within {} ms",
                    self.timeout.as_millis()
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_round_trips_through_proto() {
        let p = Permission {
            can_publish: true,
            can_subscribe: true,
            can_publish_data: false,
            can_publish_sources: vec!["camera".into(), "screen_share_audio".into()],
            hidden: false,
            can_update_metadata: true,
        };
        let proto = p.to_proto().unwrap();
        assert_eq!(
            proto.can_publish_sources,
            vec![
                proto::TrackSource::Camera as i32,
                proto::TrackSource::ScreenShareAudio as i32
            ]
        );
        assert_eq!(Permission::from(&proto), p);
        assert!(p.allows_source("camera"));
        assert!(!p.allows_source("microphone"));
        let bad = Permission {
            can_publish_sources: vec!["webcam".into()],
            ..p
        };
        assert!(bad.to_proto().is_err());
    }

    #[test]
    fn trait_is_object_safe() {
        fn takes(_: Arc<dyn RoomService>) {}
        takes(Arc::new(LiveKitRooms::new(
            "http://127.0.0.1:1",
            &Credentials::new("k", "s"),
        )));
    }

    #[tokio::test]
    async fn unreachable_server_is_unavailable() {
        let rooms = LiveKitRooms::with_timeout(
            "http://127.0.0.1:1",
            &Credentials::new("k", "s"),
            Duration::from_secs(2),
        );
        assert!(matches!(
            rooms.list_rooms(&[]).await,
            Err(RoomError::Unavailable(_))
        ));
    }
}
