//! The stage: guests (co-hosts) of a video session and speakers of an audio room.
//!
//! A viewer goes on stage in one of two ways, both recorded as a stage request: the host
//! **invites** a current viewer and the viewer answers, or the viewer **requests** the stage
//! and the host answers. Either is `pending` until it is answered, expires (a durable
//! deadline) or the session ends; [`next`] is the only way its status changes. A user has at
//! most one pending invitation or request per session, and at most [`limit`] guests are on
//! stage at once (the host not counted). Who may answer is [`may_answer`]; the event each
//! change publishes is [`event_name`].

use crate::roles::{Role, audience_role, stage_role};
use crate::session::{SessionStatus, SessionType};
use crate::transition::InvalidTransition;

wire_enum! {
    /// Who started it. Stored in `stage_requests.kind`; `kind` of the `GuestChanged` event,
    /// which also uses [`TURN`] for a guest's time on stage.
    pub enum StageKind ("stage request kind") {
        /// The host invited a viewer; the viewer answers.
        Invitation => "invitation",
        /// A viewer asked for the stage; the host answers.
        Request => "request",
    }
}

/// `kind` of the `GuestChanged` event about a guest's time on stage (its end).
pub const TURN: &str = "turn";

/// `status` of the `GuestChanged` event when a guest's turn ends.
pub const TURN_ENDED: &str = "ended";

wire_enum! {
    /// Where an invitation or request is. Stored in `stage_requests.status`.
    pub enum StageStatus ("stage request status") {
        /// Waiting for an answer.
        Pending => "pending",
        /// Accepted (invitation) or approved (request): the user went on stage.
        Accepted => "accepted",
        /// Declined (invitation) or rejected (request).
        Declined => "declined",
        /// Nobody answered in time.
        Expired => "expired",
        /// The session ended before an answer.
        Cancelled => "cancelled",
    }
}

wire_enum! {
    /// What happens to a pending invitation or request.
    pub enum StageEvent ("stage event") {
        /// The invited user accepts, or the host approves a request.
        Accept => "accept",
        /// The invited user declines, or the host rejects a request.
        Decline => "decline",
        /// The time to answer ran out.
        Expire => "expire",
        /// The session ended.
        Cancel => "cancel",
    }
}

/// Every allowed transition: only a pending one moves, once.
pub const TRANSITIONS: &[(StageStatus, StageEvent, StageStatus)] = &[
    (
        StageStatus::Pending,
        StageEvent::Accept,
        StageStatus::Accepted,
    ),
    (
        StageStatus::Pending,
        StageEvent::Decline,
        StageStatus::Declined,
    ),
    (
        StageStatus::Pending,
        StageEvent::Expire,
        StageStatus::Expired,
    ),
    (
        StageStatus::Pending,
        StageEvent::Cancel,
        StageStatus::Cancelled,
    ),
];

/// The status after `event`; answering an answered, expired or cancelled one is refused
/// (409 `INVALID_TRANSITION`).
pub fn next(status: StageStatus, event: StageEvent) -> Result<StageStatus, InvalidTransition> {
    TRANSITIONS
        .iter()
        .find(|(from, on, _)| *from == status && *on == event)
        .map(|&(_, _, to)| to)
        .ok_or(InvalidTransition {
            from: status.as_str(),
            event: event.as_str(),
        })
}

/// Who is asking, relative to one invitation or request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The session's host.
    Host,
    /// The user the invitation or request is about.
    Subject,
    /// Anyone else (another viewer, a guest, a stranger).
    Other,
}

/// Whether `actor` may answer a `kind`: an invitation is answered by the invited user only,
/// a request by the host only.
pub const fn may_answer(kind: StageKind, actor: Actor) -> bool {
    matches!(
        (kind, actor),
        (StageKind::Invitation, Actor::Subject) | (StageKind::Request, Actor::Host)
    )
}

/// Whether the stage can change in a session of this status: not before the host is there
/// (`created`), not after the end.
pub const fn stage_open(status: SessionStatus) -> bool {
    matches!(
        status,
        SessionStatus::Live | SessionStatus::Paused | SessionStatus::HostDisconnected
    )
}

/// How many guests may be on stage at once: the session's own `maxGuests` when it set one
/// (validated at create to be at most the default), else the configured default of its type.
pub fn limit(
    session_type: SessionType,
    session_max: Option<i32>,
    default_video: i32,
    default_audio: i32,
) -> i64 {
    let default = match session_type {
        SessionType::VideoLive => default_video,
        SessionType::AudioRoom => default_audio,
    };
    i64::from(session_max.unwrap_or(default).max(0))
}

/// Whether one more guest fits when `on_stage` are there already.
pub const fn has_room(on_stage: i64, limit: i64) -> bool {
    on_stage < limit
}

/// The role a user has after a status change of their invitation or request: on stage once
/// accepted, in the audience otherwise.
pub const fn role_after(session_type: SessionType, status: StageStatus) -> Role {
    match status {
        StageStatus::Accepted => stage_role(session_type),
        _ => audience_role(session_type),
    }
}

/// The `session.<name>` event of a change: what the API calls it for each kind.
pub const fn event_name(kind: StageKind, status: StageStatus) -> &'static str {
    match (kind, status) {
        (StageKind::Invitation, StageStatus::Pending) => "guest_invited",
        (StageKind::Invitation, StageStatus::Accepted) => "guest_accepted",
        (StageKind::Invitation, StageStatus::Declined) => "guest_declined",
        (StageKind::Request, StageStatus::Pending) => "guest_requested",
        (StageKind::Request, StageStatus::Accepted) => "guest_approved",
        (StageKind::Request, StageStatus::Declined) => "guest_rejected",
        // A cancellation happens only when the session ends; `session.ended` says so to
        // everyone, and the event carries `status: cancelled`.
        (_, StageStatus::Expired | StageStatus::Cancelled) => "guest_expired",
    }
}

/// The event of a guest's turn ending.
pub const GUEST_ENDED: &str = "guest_ended";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_pending_moves() {
        for &event in StageEvent::ALL {
            assert!(next(StageStatus::Pending, event).is_ok());
            for &status in StageStatus::ALL {
                if status != StageStatus::Pending {
                    let refused = next(status, event).unwrap_err();
                    assert_eq!(refused.from, status.as_str());
                    assert_eq!(refused.error_code(), crate::ErrorCode::InvalidTransition);
                }
            }
        }
        assert_eq!(
            next(StageStatus::Pending, StageEvent::Accept),
            Ok(StageStatus::Accepted)
        );
        assert_eq!(
            next(StageStatus::Pending, StageEvent::Decline),
            Ok(StageStatus::Declined)
        );
        assert_eq!(
            next(StageStatus::Pending, StageEvent::Expire),
            Ok(StageStatus::Expired)
        );
        assert_eq!(
            next(StageStatus::Pending, StageEvent::Cancel),
            Ok(StageStatus::Cancelled)
        );
    }

    #[test]
    fn who_answers() {
        assert!(may_answer(StageKind::Invitation, Actor::Subject));
        assert!(!may_answer(StageKind::Invitation, Actor::Host));
        assert!(!may_answer(StageKind::Invitation, Actor::Other));
        assert!(may_answer(StageKind::Request, Actor::Host));
        assert!(!may_answer(StageKind::Request, Actor::Subject));
        assert!(!may_answer(StageKind::Request, Actor::Other));
    }

    #[test]
    fn limits_follow_the_type_and_the_session() {
        assert_eq!(limit(SessionType::VideoLive, None, 3, 10), 3);
        assert_eq!(limit(SessionType::AudioRoom, None, 3, 10), 10);
        assert_eq!(limit(SessionType::VideoLive, Some(1), 3, 10), 1);
        assert_eq!(limit(SessionType::AudioRoom, Some(0), 3, 10), 0);
        assert!(has_room(2, 3));
        assert!(!has_room(3, 3));
        assert!(!has_room(0, 0));
    }

    #[test]
    fn roles_and_events() {
        assert_eq!(
            role_after(SessionType::VideoLive, StageStatus::Accepted),
            Role::CoHost
        );
        assert_eq!(
            role_after(SessionType::AudioRoom, StageStatus::Accepted),
            Role::Speaker
        );
        assert_eq!(
            role_after(SessionType::AudioRoom, StageStatus::Declined),
            Role::Listener
        );
        assert_eq!(
            event_name(StageKind::Request, StageStatus::Accepted),
            "guest_approved"
        );
        assert_eq!(
            event_name(StageKind::Invitation, StageStatus::Expired),
            "guest_expired"
        );
        assert!(stage_open(SessionStatus::Live));
        assert!(!stage_open(SessionStatus::Created));
        assert!(!stage_open(SessionStatus::Ended));
    }

    proptest! {
        /// Whatever happens to it, a request leaves `pending` at most once and never comes back.
        #[test]
        fn a_request_is_answered_once(events in proptest::collection::vec(0usize..4, 0..12)) {
            let mut status = StageStatus::Pending;
            let mut moves = 0;
            for i in events {
                if let Ok(to) = next(status, StageEvent::ALL[i]) {
                    moves += 1;
                    status = to;
                }
            }
            prop_assert!(moves <= 1);
            prop_assert_eq!(moves == 0, status == StageStatus::Pending);
        }
    }
}
