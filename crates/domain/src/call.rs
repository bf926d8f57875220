//! Private 1-1 calls: their kinds, who may ask for what, and the status state machine.
//!
//! As for sessions, the status changes only through [`next`], driven by [`TRANSITIONS`]:
//! requests from the two parties, push results from the notifier, LiveKit's reports and the
//! call deadlines (5 s to ringing, 30 s of ringing, maximum duration) all meet there.

use crate::roles::{Media, Role};
use crate::transition::InvalidTransition;

wire_enum! {
    /// Where a call is in its life. Stored in `calls.status`.
    pub enum CallStatus ("call status") {
        /// Created by the caller; the callee's push is on its way.
        Initiated => "initiated",
        /// The callee's device confirmed the push: it is ringing.
        Ringing => "ringing",
        /// The callee accepted; the parties are connecting to the room.
        Accepted => "accepted",
        /// Both parties are in the room.
        Live => "live",
        /// Ended by a party or by the maximum duration.
        Ended => "ended",
        /// The callee declined.
        Rejected => "rejected",
        /// Nobody answered within the ringing timeout.
        Missed => "missed",
        /// The caller hung up before the callee answered.
        Cancelled => "cancelled",
        /// The callee (or caller) was already in a call. Kept in both histories.
        Busy => "busy",
        /// The push never arrived, or a party was lost before the call ended properly.
        Failed => "failed",
    }
}

impl CallStatus {
    /// Whether the call is over: no event is accepted any more.
    pub const fn is_terminal(self) -> bool {
        !self.is_active()
    }

    /// Whether the call occupies its parties: a user with an active call is `BUSY` for any
    /// other call. These are exactly the non-terminal states.
    pub const fn is_active(self) -> bool {
        matches!(
            self,
            Self::Initiated | Self::Ringing | Self::Accepted | Self::Live
        )
    }
}

wire_enum! {
    /// Audio or video.
    pub enum CallType ("call type") {
        /// Microphone only.
        AudioCall => "audio_call",
        /// Camera and microphone.
        VideoCall => "video_call",
    }
}

impl CallType {
    /// The media the call carries, which bounds what the parties may publish.
    pub const fn media(self) -> Media {
        match self {
            Self::AudioCall => Media::AudioOnly,
            Self::VideoCall => Media::Video,
        }
    }
}

wire_enum! {
    /// Something that happens to a call.
    ///
    /// Only [`Accept`](Self::Accept), [`Reject`](Self::Reject), [`Cancel`](Self::Cancel) and
    /// [`End`](Self::End) can be requested over HTTP (see [`may_request`]); the others come
    /// from the notifier, LiveKit or a deadline.
    pub enum CallEvent ("call event") {
        /// The notifier delivered the callee's VoIP push.
        PushDelivered => "push_delivered",
        /// The push could not be delivered (no device, provider refused).
        PushFailed => "push_failed",
        /// No delivery within the push timeout (5 s).
        PushTimeout => "push_timeout",
        /// The callee turned out to be in another call.
        CalleeBusy => "callee_busy",
        /// The callee answers.
        Accept => "accept",
        /// The callee declines.
        Reject => "reject",
        /// The caller hangs up before an answer.
        Cancel => "cancel",
        /// Nobody answered within the ringing timeout (30 s).
        RingTimeout => "ring_timeout",
        /// LiveKit reported both parties in the room.
        BothJoined => "both_joined",
        /// A party hangs up after the answer.
        End => "end",
        /// LiveKit reported a party gone (or the room finished) before an orderly end.
        PartyLost => "party_lost",
        /// The call reached the maximum duration.
        MaxDuration => "max_duration",
    }
}

use CallEvent as E;
use CallStatus as S;

/// Every allowed transition of a call: `(from, on, to)`. Anything not listed is refused; in
/// particular, nothing leaves a terminal state.
///
/// Read in groups: before ringing (push result, busy, caller cancels); while ringing (the
/// callee answers or declines, the caller cancels, time runs out); after the answer (both
/// join, someone hangs up, someone is lost, time runs out).
pub const TRANSITIONS: &[(CallStatus, CallEvent, CallStatus)] = &[
    (S::Initiated, E::PushDelivered, S::Ringing),
    (S::Initiated, E::PushFailed, S::Failed),
    (S::Initiated, E::PushTimeout, S::Failed),
    (S::Initiated, E::CalleeBusy, S::Busy),
    (S::Initiated, E::Cancel, S::Cancelled),
    (S::Ringing, E::Accept, S::Accepted),
    (S::Ringing, E::Reject, S::Rejected),
    (S::Ringing, E::Cancel, S::Cancelled),
    (S::Ringing, E::RingTimeout, S::Missed),
    (S::Accepted, E::BothJoined, S::Live),
    (S::Accepted, E::End, S::Ended),
    (S::Accepted, E::PartyLost, S::Failed),
    (S::Accepted, E::MaxDuration, S::Ended),
    (S::Live, E::End, S::Ended),
    (S::Live, E::PartyLost, S::Failed),
    (S::Live, E::MaxDuration, S::Ended),
];

/// The status after `event`, or [`InvalidTransition`] when the table has no such move.
///
/// Background events refused here (a late push result, a ring timeout after the answer) are
/// moot and change nothing; refused requests are 409 `INVALID_TRANSITION`.
pub fn next(status: CallStatus, event: CallEvent) -> Result<CallStatus, InvalidTransition> {
    TRANSITIONS
        .iter()
        .find(|(from, on, _)| *from == status && *on == event)
        .map(|&(_, _, to)| to)
        .ok_or(InvalidTransition {
            from: status.as_str(),
            event: event.as_str(),
        })
}

wire_enum! {
    /// Why a call is over (`calls.ended_reason`): apps show a declined, a missed, a busy and
    /// a cancelled call differently, and operators tell a hang-up from a network loss.
    pub enum CallEndReason ("call end reason") {
        /// The caller hung up after the answer (`POST .../end`).
        CallerEnded => "caller_ended",
        /// The callee hung up after the answer.
        CalleeEnded => "callee_ended",
        /// The caller left the room on purpose (LiveKit: `CLIENT_INITIATED`).
        CallerLeft => "caller_left",
        /// The callee left the room on purpose.
        CalleeLeft => "callee_left",
        /// Neither party is in the room any more.
        BothLeft => "both_left",
        /// LiveKit finished the room.
        RoomFinished => "room_finished",
        /// The call reached `CALL_MAX_SECONDS`.
        MaxDuration => "max_duration",
        /// The callee declined.
        Rejected => "rejected",
        /// Nobody answered within the ringing timeout.
        NoAnswer => "no_answer",
        /// The caller hung up before an answer.
        Cancelled => "cancelled",
        /// The callee was in another call.
        CalleeBusy => "callee_busy",
        /// The caller was in another call.
        CallerBusy => "caller_busy",
        /// The callee has no registered device.
        NoDevice => "no_device",
        /// Every push to the callee failed.
        PushFailed => "push_failed",
        /// No push result within `CALL_PUSH_TIMEOUT_SECONDS`.
        PushTimeout => "push_timeout",
        /// Accepted, but the parties were not both in the room in time.
        JoinTimeout => "join_timeout",
        /// A party dropped and did not come back within the grace.
        Network => "network",
    }
}

wire_enum! {
    /// The two sides of a call.
    pub enum CallParty ("call party") {
        /// Who started the call.
        Caller => "caller",
        /// Who is being called.
        Callee => "callee",
    }
}

impl CallParty {
    /// The LiveKit role this party gets in the call's room.
    pub const fn role(self) -> Role {
        match self {
            Self::Caller => Role::Caller,
            Self::Callee => Role::Callee,
        }
    }
}

/// Whether `party` may ask for `event` over HTTP.
///
/// Only the callee answers; only the caller cancels (a callee who does not want the call
/// rejects it); either may hang up. The remaining events are facts reported by the notifier,
/// LiveKit or a deadline, so no client may claim them. Failing this check is 403 `FORBIDDEN`;
/// it is checked before the state machine, which then decides 409 `INVALID_TRANSITION`.
pub const fn may_request(event: CallEvent, party: CallParty) -> bool {
    match event {
        E::Accept | E::Reject => matches!(party, CallParty::Callee),
        E::Cancel => matches!(party, CallParty::Caller),
        E::End => true,
        E::PushDelivered
        | E::PushFailed
        | E::PushTimeout
        | E::CalleeBusy
        | E::RingTimeout
        | E::BothJoined
        | E::PartyLost
        | E::MaxDuration => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// The rules as the design states them, written independently of [`TRANSITIONS`].
    fn expected(status: CallStatus, event: CallEvent) -> Option<CallStatus> {
        match (status, event) {
            (S::Initiated, E::PushDelivered) => Some(S::Ringing),
            (S::Initiated, E::PushFailed | E::PushTimeout) => Some(S::Failed),
            (S::Initiated, E::CalleeBusy) => Some(S::Busy),
            (S::Initiated | S::Ringing, E::Cancel) => Some(S::Cancelled),
            (S::Ringing, E::Accept) => Some(S::Accepted),
            (S::Ringing, E::Reject) => Some(S::Rejected),
            (S::Ringing, E::RingTimeout) => Some(S::Missed),
            (S::Accepted, E::BothJoined) => Some(S::Live),
            (S::Accepted | S::Live, E::End | E::MaxDuration) => Some(S::Ended),
            (S::Accepted | S::Live, E::PartyLost) => Some(S::Failed),
            _ => None,
        }
    }

    #[test]
    fn every_pair_follows_the_rules() {
        for &status in CallStatus::ALL {
            for &event in CallEvent::ALL {
                match expected(status, event) {
                    Some(to) => assert_eq!(next(status, event), Ok(to), "{status} + {event}"),
                    None => assert_eq!(
                        next(status, event),
                        Err(InvalidTransition {
                            from: status.as_str(),
                            event: event.as_str(),
                        }),
                        "{status} + {event} must be refused"
                    ),
                }
            }
        }
    }

    #[test]
    fn table_is_deterministic_and_terminal_states_are_sinks() {
        let mut keys = HashSet::new();
        for &(from, on, _) in TRANSITIONS {
            assert!(keys.insert((from, on)), "duplicate row for {from} + {on}");
            assert!(from.is_active(), "{from} is terminal but has a way out");
        }
    }

    #[test]
    fn status_predicates() {
        let active = [S::Initiated, S::Ringing, S::Accepted, S::Live];
        for &s in CallStatus::ALL {
            assert_eq!(s.is_active(), active.contains(&s), "{s}");
            assert_eq!(s.is_terminal(), !s.is_active(), "{s}");
        }
    }

    #[test]
    fn who_may_request_what() {
        use CallParty::{Callee, Caller};
        for &event in CallEvent::ALL {
            let allowed: Vec<CallParty> = CallParty::ALL
                .iter()
                .copied()
                .filter(|&p| may_request(event, p))
                .collect();
            let want: &[CallParty] = match event {
                E::Accept | E::Reject => &[Callee],
                E::Cancel => &[Caller],
                E::End => &[Caller, Callee],
                _ => &[],
            };
            assert_eq!(allowed, want, "{event}");
        }
    }

    #[test]
    fn media_and_roles() {
        assert_eq!(CallType::AudioCall.media(), Media::AudioOnly);
        assert_eq!(CallType::VideoCall.media(), Media::Video);
        assert_eq!(CallParty::Caller.role(), Role::Caller);
        assert_eq!(CallParty::Callee.role(), Role::Callee);
    }

    proptest! {
        #[test]
        fn terminal_calls_refuse_everything(
            events in prop::collection::vec(prop::sample::select(CallEvent::ALL), 0..32)
        ) {
            let mut status = S::Initiated;
            for event in events {
                let result = next(status, event);
                if status.is_terminal() {
                    prop_assert!(result.is_err(), "{} accepted {}", status, event);
                }
                if let Ok(to) = result {
                    prop_assert!(TRANSITIONS.contains(&(status, event, to)));
                    status = to;
                }
            }
        }

    }
}
