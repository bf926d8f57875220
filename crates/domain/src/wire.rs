//! Closed sets of values that travel as strings: in JSON bodies, in database `text` columns, in
//! event payloads.
//!
//! Each such enum is declared with `wire_enum!`, which writes the wire string next to each
//! variant. The strings are spelled out rather than derived from the variant names because
//! they are a contract with the mobile app and the database: renaming a variant must not change
//! them silently. From that one list the macro derives `as_str`, `FromStr`, `Display`, serde
//! (as the same strings) and `ALL`, so the four can never disagree.

/// A string that names no value of a closed set (an unknown status, role, error code...).
///
/// Carries the bad string so the caller can say what was wrong; at the HTTP edge it becomes a
/// 422 `VALIDATION_ERROR`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`")]
pub struct UnknownValue {
    /// What was being parsed, in words ("session status").
    pub kind: &'static str,
    /// The string that was refused.
    pub value: String,
}

impl UnknownValue {
    /// The error for `value`, which is not a valid `kind`.
    pub fn new(kind: &'static str, value: &str) -> Self {
        Self {
            kind,
            value: value.to_owned(),
        }
    }
}

/// Declares a fieldless enum whose values travel as fixed strings. See the module docs.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident => $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order: for exhaustive tests and for listing choices.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The wire strings of [`Self::ALL`], in the same order (for OpenAPI enums and
            /// error messages).
            pub const WIRE_NAMES: &'static [&'static str] = &[$($wire),+];

            /// The string used on the wire (JSON), in the database and in events.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)+
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::core::str::FromStr for $name {
            type Err = $crate::wire::UnknownValue;

            /// Parses the exact wire string (case-sensitive, as the database stores it).
            fn from_str(s: &str) -> ::core::result::Result<Self, Self::Err> {
                match s {
                    $($wire => Ok(Self::$variant),)+
                    _ => Err($crate::wire::UnknownValue::new($what, s)),
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::core::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::core::result::Result<Self, D::Error> {
                struct Visitor;

                impl ::serde::de::Visitor<'_> for Visitor {
                    type Value = $name;

                    fn expecting(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                        write!(f, "a {}", $what)
                    }

                    fn visit_str<E: ::serde::de::Error>(
                        self,
                        v: &str,
                    ) -> ::core::result::Result<$name, E> {
                        v.parse()
                            .map_err(|_| E::unknown_variant(v, $name::WIRE_NAMES))
                    }
                }

                deserializer.deserialize_str(Visitor)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::UnknownValue;
    use crate::call::{CallEvent, CallParty, CallStatus, CallType};
    use crate::errors::ErrorCode;
    use crate::roles::{Role, TrackSource};
    use crate::session::{AccessType, EndReason, SessionEventKind, SessionStatus, SessionType};
    use std::collections::HashSet;

    /// For every value of each enum: `as_str`, `Display`, `FromStr` and serde agree and round
    /// trip; names are unique; unknown strings are refused the same way by both parsers.
    macro_rules! round_trip {
        ($($ty:ty),+ $(,)?) => {$({
            let names: HashSet<&str> = <$ty>::ALL.iter().map(|v| v.as_str()).collect();
            assert_eq!(names.len(), <$ty>::ALL.len(), "duplicate wire name");
            assert_eq!(<$ty>::WIRE_NAMES.len(), <$ty>::ALL.len());
            for (&value, &name) in <$ty>::ALL.iter().zip(<$ty>::WIRE_NAMES) {
                assert_eq!(value.as_str(), name);
                assert_eq!(value.to_string(), name);
                assert_eq!(name.parse::<$ty>(), Ok(value));
                let json = serde_json::to_string(&value).unwrap();
                assert_eq!(json, format!("\"{name}\""));
                assert_eq!(serde_json::from_str::<$ty>(&json).unwrap(), value);
                // Case matters: the database stores exactly `as_str`.
                let other_case = if name.chars().any(|c| c.is_lowercase()) {
                    name.to_uppercase()
                } else {
                    name.to_lowercase()
                };
                assert!(other_case.parse::<$ty>().is_err(), "{other_case}");
            }
            let err = "nonsense".parse::<$ty>().unwrap_err();
            assert_eq!(err.value, "nonsense");
            assert!(serde_json::from_str::<$ty>("\"nonsense\"").is_err());
            assert!(serde_json::from_str::<$ty>("3").is_err());
        })+};
    }

    #[test]
    fn every_wire_enum_round_trips() {
        round_trip!(
            SessionStatus,
            SessionType,
            AccessType,
            EndReason,
            SessionEventKind,
            CallStatus,
            CallType,
            CallEvent,
            CallParty,
            Role,
            TrackSource,
            ErrorCode,
        );
    }

    #[test]
    fn wire_names_the_api_fixes() {
        assert_eq!(
            SessionStatus::HostDisconnected.as_str(),
            "host_disconnected"
        );
        assert_eq!(SessionType::VideoLive.as_str(), "video_live");
        assert_eq!(AccessType::PayPerView.as_str(), "pay_per_view");
        assert_eq!(AccessType::SubscribersOnly.as_str(), "subscribers_only");
        assert_eq!(EndReason::OrphanedCleanup.as_str(), "orphaned_cleanup");
        assert_eq!(CallType::VideoCall.as_str(), "video_call");
        assert_eq!(Role::CoHost.as_str(), "co_host");
    }

    #[test]
    fn errors_read_well() {
        let err = "flying".parse::<SessionStatus>().unwrap_err();
        assert_eq!(err, UnknownValue::new("session status", "flying"));
        assert_eq!(err.to_string(), "unknown session status `flying`");
        let err = serde_json::from_str::<SessionType>("\"tv\"").unwrap_err();
        assert!(err.to_string().contains("video_live"), "{err}");
    }
}
