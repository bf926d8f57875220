//! Who may join a session, with which role, and whether the join costs coins: the check
//! chain of `POST /v1/tokens` as one pure function over the facts the database returns.
//!
//! The order is API.md's: global ban; session exists and is not ended; session ban and
//! creator ban; access type; role. The host passes every access check of its own session.

use crate::errors::ErrorCode;
use crate::roles::{Role, audience_role, stage_role};
use crate::session::{AccessType, SessionStatus, SessionType};

/// What the database knows about one user and one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFacts {
    /// `profiles.banned_until` is in the future.
    pub globally_banned: bool,
    /// `None` when the session does not exist.
    pub session: Option<SessionSnapshot>,
    /// A `live_session_bans` row for this user and session.
    pub session_banned: bool,
    /// A `creator_bans` row for this user and the session's creator.
    pub creator_banned: bool,
    /// An active `creator_subscriptions` row for the session's creator.
    pub subscribed: bool,
    /// A `live_payments` row for this viewer and session.
    pub paid: bool,
    /// The user's role on stage, when the host promoted them (co_host / speaker).
    pub stage_role: Option<Role>,
}

/// The parts of a session that decide access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSnapshot {
    /// Where the session is in its life.
    pub status: SessionStatus,
    /// Video broadcast or audio room.
    pub session_type: SessionType,
    /// Who may watch.
    pub access_type: AccessType,
    /// The pay-per-view price.
    pub price_coins: Option<i64>,
    /// The caller is the session's creator (its host).
    pub is_creator: bool,
}

/// An admission: the role, and the price to charge when the viewer has not paid yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The role the token grants.
    pub role: Role,
    /// Coins to charge before the token is given (pay-per-view, first join).
    pub charge: Option<i64>,
}

/// A refusal, with its error code and a message for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The error code answered.
    pub code: ErrorCode,
    /// A message for the client.
    pub message: &'static str,
}

const fn refuse(code: ErrorCode, message: &'static str) -> Refusal {
    Refusal { code, message }
}

/// Decides a join. `Ok` may still ask for a charge (pay-per-view, not yet paid); the caller
/// then charges atomically and answers `PAYMENT_REQUIRED` when the balance is short.
pub fn admit(facts: &SessionFacts) -> Result<Admission, Refusal> {
    if facts.globally_banned {
        return Err(refuse(ErrorCode::Banned, "you are banned"));
    }
    let Some(session) = &facts.session else {
        return Err(refuse(ErrorCode::SessionNotFound, "session not found"));
    };
    if session.status == SessionStatus::Ended {
        return Err(refuse(ErrorCode::SessionNotFound, "session has ended"));
    }
    if session.is_creator {
        return Ok(Admission {
            role: Role::Host,
            charge: None,
        });
    }
    if facts.session_banned {
        return Err(refuse(
            ErrorCode::Banned,
            "you are banned from this session",
        ));
    }
    if facts.creator_banned {
        return Err(refuse(ErrorCode::Banned, "you are banned by this creator"));
    }
    let charge = match session.access_type {
        AccessType::Public => None,
        AccessType::SubscribersOnly if facts.subscribed => None,
        AccessType::SubscribersOnly => {
            return Err(refuse(
                ErrorCode::SubscriptionRequired,
                "this session is for subscribers only",
            ));
        }
        AccessType::PayPerView if facts.paid => None,
        AccessType::PayPerView => match session.price_coins {
            Some(price) if price > 0 => Some(price),
            _ => {
                return Err(refuse(
                    ErrorCode::InternalError,
                    "pay-per-view session without a price",
                ));
            }
        },
    };
    let role = match facts.stage_role {
        Some(role) if role == stage_role(session.session_type) => role,
        _ => audience_role(session.session_type),
    };
    Ok(Admission { role, charge })
}

/// The host's share of an amount: `floor(amount × percent / 100)`.
pub const fn host_share(amount: i64, percent: u8) -> i64 {
    amount * percent as i64 / 100
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(access_type: AccessType) -> SessionFacts {
        SessionFacts {
            globally_banned: false,
            session: Some(SessionSnapshot {
                status: SessionStatus::Live,
                session_type: SessionType::VideoLive,
                access_type,
                price_coins: (access_type == AccessType::PayPerView).then_some(50),
                is_creator: false,
            }),
            session_banned: false,
            creator_banned: false,
            subscribed: false,
            paid: false,
            stage_role: None,
        }
    }

    fn code(f: &SessionFacts) -> ErrorCode {
        admit(f).unwrap_err().code
    }

    #[test]
    fn public_viewer_is_a_viewer() {
        assert_eq!(
            admit(&facts(AccessType::Public)),
            Ok(Admission {
                role: Role::Viewer,
                charge: None
            })
        );
    }

    #[test]
    fn checks_run_in_the_documented_order() {
        let mut f = facts(AccessType::SubscribersOnly);
        f.globally_banned = true;
        f.session_banned = true;
        assert_eq!(code(&f), ErrorCode::Banned);
        f.globally_banned = false;
        f.session = None;
        assert_eq!(code(&f), ErrorCode::SessionNotFound);
        let mut f = facts(AccessType::SubscribersOnly);
        f.creator_banned = true;
        assert_eq!(code(&f), ErrorCode::Banned);
        f.creator_banned = false;
        assert_eq!(code(&f), ErrorCode::SubscriptionRequired);
        f.subscribed = true;
        assert!(admit(&f).is_ok());
    }

    #[test]
    fn ended_sessions_are_not_found() {
        let mut f = facts(AccessType::Public);
        f.session.as_mut().unwrap().status = SessionStatus::Ended;
        assert_eq!(code(&f), ErrorCode::SessionNotFound);
        f.session.as_mut().unwrap().is_creator = true;
        assert_eq!(code(&f), ErrorCode::SessionNotFound);
    }

    #[test]
    fn pay_per_view_charges_once() {
        let mut f = facts(AccessType::PayPerView);
        assert_eq!(admit(&f).unwrap().charge, Some(50));
        f.paid = true;
        assert_eq!(admit(&f).unwrap().charge, None);
    }

    #[test]
    fn the_host_is_host_and_never_pays() {
        let mut f = facts(AccessType::PayPerView);
        f.session.as_mut().unwrap().is_creator = true;
        assert_eq!(
            admit(&f),
            Ok(Admission {
                role: Role::Host,
                charge: None
            })
        );
    }

    #[test]
    fn stage_roles_follow_the_session_type() {
        let mut f = facts(AccessType::Public);
        f.stage_role = Some(Role::CoHost);
        assert_eq!(admit(&f).unwrap().role, Role::CoHost);
        f.stage_role = Some(Role::Speaker); // a speaker row in a video session is not honoured
        assert_eq!(admit(&f).unwrap().role, Role::Viewer);
        let s = f.session.as_mut().unwrap();
        s.session_type = SessionType::AudioRoom;
        assert_eq!(admit(&f).unwrap().role, Role::Speaker);
        f.stage_role = None;
        assert_eq!(admit(&f).unwrap().role, Role::Listener);
    }

    #[test]
    fn host_share_rounds_down() {
        assert_eq!(host_share(10, 70), 7);
        assert_eq!(host_share(1, 70), 0);
        assert_eq!(host_share(99, 70), 69);
    }
}
