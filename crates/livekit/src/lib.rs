#![doc = include_str!("../README.md")]

mod credentials;
mod events;
mod rooms;
mod serde_util;
mod token;
mod webhook;

pub use credentials::Credentials;
pub use events::{
    ParticipantInfo, ParticipantPermission, RoomInfo, TrackInfo, WebhookEvent, parse_webhook,
};
pub use rooms::{
    BoxFuture, DEFAULT_CALL_TIMEOUT, LiveKitRooms, Participant, Permission, Room, RoomError,
    RoomService, Track, set_publishing,
};
pub use token::{
    AccessClaims, Error, RoomGrant, TRACK_SOURCES, TokenError, VideoClaims, mint_token,
    normalize_source, verify_access_token,
};
pub use webhook::{WEBHOOK_TOKEN_TTL, WebhookAuthError, sign_webhook, verify_webhook};
