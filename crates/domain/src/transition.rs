//! What both state machines ([`crate::session`], [`crate::call`]) answer when a transition is
//! not in their table.

/// An event the state machine does not allow from the current state (pause a session that is
/// not live, accept a call that is not ringing, anything after the end).
///
/// Handlers answer it with 409 `INVALID_TRANSITION`; a deadline worker that meets it marks the
/// deadline fired with no effect (the deadline became moot, e.g. the host came back). The
/// fields are the wire names of the state and the event so the message and logs read the same
/// as the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("`{event}` is not allowed when the status is `{from}`")]
pub struct InvalidTransition {
    /// The status the machine was in (its wire name, e.g. `ended`).
    pub from: &'static str,
    /// The event that was refused (its wire name, e.g. `pause`).
    pub event: &'static str,
}

impl InvalidTransition {
    /// The API error code this becomes: always `INVALID_TRANSITION`.
    pub const fn error_code(&self) -> crate::ErrorCode {
        crate::ErrorCode::InvalidTransition
    }
}
