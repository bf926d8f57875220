//! Identifiers, one newtype per kind.
//!
//! All ids are UUIDs on the wire and in the database, which makes them easy to mix up; a
//! distinct type for each means a `CallId` cannot be passed where a `SessionId` is expected,
//! and the compiler checks what a reviewer would otherwise have to. New ids are UUIDv7 so they
//! sort by creation time (outbox rows, message cursors and index locality rely on it).

use uuid::Uuid;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            ::serde::Serialize,
            ::serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUIDv7).
            pub fn new_v7() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps a UUID that is known to identify this kind of thing (read from the
            /// database, or parsed from a path).
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The bare UUID, for the database layer and for formatting.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        /// The hyphenated lowercase form, as it appears in JSON and in room names.
        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        /// Accepts every form `uuid` does (hyphenated, simple, braced, URN; any case).
        impl ::core::str::FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// A user: `profiles.id`, the `sub` of the client JWT and the LiveKit participant identity.
    UserId
);
id_type!(
    /// A live session (video broadcast or audio room).
    SessionId
);
id_type!(
    /// A private 1-1 audio or video call.
    CallId
);
id_type!(
    /// A stage invitation or join request in a session.
    InvitationId
);
id_type!(
    /// A chat message in a session.
    MessageId
);
id_type!(
    /// A gift: a catalogue entry or one sent gift (the API uses `giftId` for the catalogue
    /// entry and `id` for the sent gift; both are gifts).
    GiftId
);
id_type!(
    /// A report about a user, in the moderation queue.
    ReportId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_from_str_round_trip() {
        let id = SessionId::new_v7();
        let text = id.to_string();
        assert_eq!(text, id.as_uuid().hyphenated().to_string());
        assert_eq!(text, text.to_lowercase());
        assert_eq!(text.parse::<SessionId>().unwrap(), id);
        assert!("not-a-uuid".parse::<SessionId>().is_err());
    }

    #[test]
    fn serde_is_the_bare_uuid_string() {
        let uuid = Uuid::now_v7();
        let id = CallId::from_uuid(uuid);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{uuid}\""));
        assert_eq!(serde_json::from_str::<CallId>(&json).unwrap(), id);
        assert_eq!(CallId::from(uuid), id);
        assert_eq!(Uuid::from(id), uuid);
    }

    #[test]
    fn v7_ids_sort_by_creation() {
        let first = MessageId::new_v7();
        let second = MessageId::new_v7();
        assert!(first < second);
    }
}
