//! Live sessions: their kinds, access rules and the status state machine.
//!
//! The status of a session changes only through [`next`], which reads [`TRANSITIONS`]. Handlers
//! (host pauses), webhook consumers (LiveKit says the host left) and deadline workers (grace
//! period over) all go through it, so a transition that is not in the table cannot happen,
//! whatever order LiveKit's webhooks arrive in.

use crate::roles::Media;
use crate::transition::InvalidTransition;

wire_enum! {
    /// Where a session is in its life. Stored in `live_sessions.status`.
    pub enum SessionStatus ("session status") {
        /// Created by the creator; the host has not connected to the room yet.
        Created => "created",
        /// The host is in the room and publishing.
        Live => "live",
        /// The host paused the broadcast; viewers stay in the room.
        Paused => "paused",
        /// LiveKit reported the host gone; the host has a grace period to come back before the
        /// session ends with [`EndReason::HostDisconnected`].
        HostDisconnected => "host_disconnected",
        /// Over for good. Nothing leaves this state.
        Ended => "ended",
    }
}

impl SessionStatus {
    /// Whether the session is over: no event is accepted any more, nobody may join.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Ended)
    }

    /// Whether the session still counts as the creator's current one (a creator has at most one
    /// non-ended session).
    pub const fn is_active(self) -> bool {
        !self.is_terminal()
    }
}

wire_enum! {
    /// What kind of room a session is.
    pub enum SessionType ("session type") {
        /// A video broadcast: one host, optional co-hosts, many viewers.
        VideoLive => "video_live",
        /// An audio room: a host and speakers on stage, many listeners.
        AudioRoom => "audio_room",
    }
}

impl SessionType {
    /// The media the room carries, which bounds what anyone in it may publish.
    pub const fn media(self) -> Media {
        match self {
            Self::VideoLive => Media::Video,
            Self::AudioRoom => Media::AudioOnly,
        }
    }
}

wire_enum! {
    /// Who may join a session, checked by token-issuer on every join.
    pub enum AccessType ("access type") {
        /// Anyone not banned.
        Public => "public",
        /// Only users with an active subscription to the creator.
        SubscribersOnly => "subscribers_only",
        /// Anyone who pays the session's `priceCoins`, once per viewer per session.
        PayPerView => "pay_per_view",
    }
}

wire_enum! {
    /// Why a session ended. Stored in `live_sessions.end_reason`.
    pub enum EndReason ("end reason") {
        /// The host ended it (`POST /v1/sessions/{id}/end`).
        HostEnded => "host_ended",
        /// The host was disconnected longer than the grace period.
        HostDisconnected => "host_disconnected",
        /// An operator terminated it.
        AdminTerminated => "admin_terminated",
        /// The orphan sweep found it live in the database but gone from LiveKit.
        OrphanedCleanup => "orphaned_cleanup",
        /// It reached the maximum duration.
        MaxDuration => "max_duration",
        /// LiveKit reported the room finished.
        RoomFinished => "room_finished",
        /// The host never connected in time.
        NoShow => "no_show",
    }
}

/// Something that happens to a session. Reported by LiveKit (host joined or left), requested by
/// the host (pause, resume, end), or fired by a deadline (end after grace, max duration...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEvent {
    /// LiveKit reported the host's participant joined the room.
    HostJoined,
    /// LiveKit reported the host's participant left or dropped.
    HostLeft,
    /// The host pauses the broadcast.
    Pause,
    /// The host resumes a paused broadcast.
    Resume,
    /// The session ends, for the given reason.
    End(EndReason),
}

impl SessionEvent {
    /// The event without its payload: what the transition table is keyed on.
    pub const fn kind(self) -> SessionEventKind {
        match self {
            Self::HostJoined => SessionEventKind::HostJoined,
            Self::HostLeft => SessionEventKind::HostLeft,
            Self::Pause => SessionEventKind::Pause,
            Self::Resume => SessionEventKind::Resume,
            Self::End(_) => SessionEventKind::End,
        }
    }
}

wire_enum! {
    /// [`SessionEvent`] without the end reason: the reason does not change where the machine
    /// goes, only what is recorded, so the table is keyed on this.
    pub enum SessionEventKind ("session event") {
        /// See [`SessionEvent::HostJoined`].
        HostJoined => "host_joined",
        /// See [`SessionEvent::HostLeft`].
        HostLeft => "host_left",
        /// See [`SessionEvent::Pause`].
        Pause => "pause",
        /// See [`SessionEvent::Resume`].
        Resume => "resume",
        /// See [`SessionEvent::End`].
        End => "end",
    }
}

use SessionEventKind as E;
use SessionStatus as S;

/// Every allowed transition of a session: `(from, on, to)`. Anything not listed is refused.
///
/// Read top to bottom it is the life of a session:
/// the host connects; drops and comes back; pauses and resumes; and from any non-ended state
/// the session can end (host ended, grace over, no-show, operator, orphan sweep, max duration,
/// room finished — the reason is recorded, it does not change the move).
///
/// `Paused + HostLeft → HostDisconnected`: the host dropped while paused. The grace period
/// applies as for a live host; when the host returns the session is `live` again, not
/// `paused` (the host is back and can pause again), so no "paused and disconnected" state is
/// needed.
pub const TRANSITIONS: &[(SessionStatus, SessionEventKind, SessionStatus)] = &[
    (S::Created, E::HostJoined, S::Live),
    (S::Live, E::HostLeft, S::HostDisconnected),
    (S::Paused, E::HostLeft, S::HostDisconnected),
    (S::HostDisconnected, E::HostJoined, S::Live),
    (S::Live, E::Pause, S::Paused),
    (S::Paused, E::Resume, S::Live),
    (S::Created, E::End, S::Ended),
    (S::Live, E::End, S::Ended),
    (S::Paused, E::End, S::Ended),
    (S::HostDisconnected, E::End, S::Ended),
];

/// The status after `event`, or [`InvalidTransition`] when the table has no such move.
///
/// A refused event is normal under at-least-once, out-of-order delivery (a duplicate
/// `participant_joined`, an end after the end): callers treat it as "nothing to do" for
/// background events and as 409 `INVALID_TRANSITION` for requests.
pub fn next(
    status: SessionStatus,
    event: SessionEvent,
) -> Result<SessionStatus, InvalidTransition> {
    let kind = event.kind();
    TRANSITIONS
        .iter()
        .find(|(from, on, _)| *from == status && *on == kind)
        .map(|&(_, _, to)| to)
        .ok_or(InvalidTransition {
            from: status.as_str(),
            event: kind.as_str(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// Every event, with every end reason.
    fn all_events() -> Vec<SessionEvent> {
        let mut events = vec![
            SessionEvent::HostJoined,
            SessionEvent::HostLeft,
            SessionEvent::Pause,
            SessionEvent::Resume,
        ];
        events.extend(EndReason::ALL.iter().map(|&r| SessionEvent::End(r)));
        events
    }

    /// The rules as the design states them, written independently of [`TRANSITIONS`] so the
    /// table is checked against something.
    fn expected(status: SessionStatus, event: SessionEvent) -> Option<SessionStatus> {
        use SessionEvent as Ev;
        match (status, event) {
            (S::Created, Ev::HostJoined) => Some(S::Live),
            (S::Live | S::Paused, Ev::HostLeft) => Some(S::HostDisconnected),
            (S::HostDisconnected, Ev::HostJoined) => Some(S::Live),
            (S::Live, Ev::Pause) => Some(S::Paused),
            (S::Paused, Ev::Resume) => Some(S::Live),
            (s, Ev::End(_)) if s != S::Ended => Some(S::Ended),
            _ => None,
        }
    }

    #[test]
    fn every_pair_follows_the_rules() {
        for &status in SessionStatus::ALL {
            for event in all_events() {
                match expected(status, event) {
                    Some(to) => assert_eq!(next(status, event), Ok(to), "{status} + {event:?}"),
                    None => assert_eq!(
                        next(status, event),
                        Err(InvalidTransition {
                            from: status.as_str(),
                            event: event.kind().as_str(),
                        }),
                        "{status} + {event:?} must be refused"
                    ),
                }
            }
        }
    }

    #[test]
    fn the_named_refusals() {
        assert!(next(S::Live, SessionEvent::HostJoined).is_err());
        assert!(next(S::Live, SessionEvent::Resume).is_err());
        assert!(next(S::Created, SessionEvent::Pause).is_err());
        let err = next(S::Ended, SessionEvent::End(EndReason::HostEnded)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`end` is not allowed when the status is `ended`"
        );
    }

    #[test]
    fn table_is_deterministic() {
        let mut keys = HashSet::new();
        for (from, on, _) in TRANSITIONS {
            assert!(keys.insert((from, on)), "duplicate row for {from} + {on}");
        }
    }

    #[test]
    fn status_predicates() {
        for &s in SessionStatus::ALL {
            assert_eq!(s.is_terminal(), s == S::Ended);
            assert_eq!(s.is_active(), !s.is_terminal());
        }
    }

    #[test]
    fn media_follows_type() {
        assert_eq!(SessionType::VideoLive.media(), Media::Video);
        assert_eq!(SessionType::AudioRoom.media(), Media::AudioOnly);
    }

    /// States reachable from `created` by following the table.
    fn reachable() -> HashSet<SessionStatus> {
        let mut seen = HashSet::from([S::Created]);
        let mut frontier = vec![S::Created];
        while let Some(s) = frontier.pop() {
            for &(from, _, to) in TRANSITIONS {
                if from == s && seen.insert(to) {
                    frontier.push(to);
                }
            }
        }
        seen
    }

    /// Any event; ends are rarer so that histories get somewhere before they stop.
    fn any_event() -> impl Strategy<Value = SessionEvent> {
        prop_oneof![
            8 => prop::sample::select(vec![
                SessionEvent::HostJoined,
                SessionEvent::HostLeft,
                SessionEvent::Pause,
                SessionEvent::Resume,
            ]),
            1 => prop::sample::select(EndReason::ALL).prop_map(SessionEvent::End),
        ]
    }

    proptest! {
        #[test]
        fn random_histories_stay_in_the_table(events in prop::collection::vec(any_event(), 0..48)) {
            let reachable = reachable();
            let mut status = S::Created;
            for event in events {
                let result = next(status, event);
                if status == S::Ended {
                    prop_assert!(result.is_err(), "an ended session accepted {:?}", event);
                }
                if let Ok(to) = result {
                    prop_assert!(TRANSITIONS.contains(&(status, event.kind(), to)));
                    status = to;
                }
                prop_assert!(reachable.contains(&status), "visited {}", status);
            }
        }
    }
}
