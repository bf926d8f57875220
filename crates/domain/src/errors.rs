//! The `errorCode` table of API.md: the one place error codes meet HTTP statuses.
//!
//! Services map their own error enums to an [`ErrorCode`]; the shared HTTP crate turns the code
//! into the status and the `{"success":false,"error","errorCode"}` envelope. Keeping the
//! status here means two services can never answer the same code with different statuses.

wire_enum! {
    /// A machine-readable error, as the mobile app reads it in `errorCode`.
    pub enum ErrorCode ("error code") {
        /// Missing, malformed, badly signed or expired token.
        Unauthorized => "UNAUTHORIZED",
        /// Authenticated but not allowed (not host, not a party of the call, not ops).
        Forbidden => "FORBIDDEN",
        /// Banned from this session, by this creator, or globally.
        Banned => "BANNED",
        /// Subscribers-only session and no active subscription.
        SubscriptionRequired => "SUBSCRIPTION_REQUIRED",
        /// Pay-per-view and not enough coins.
        PaymentRequired => "PAYMENT_REQUIRED",
        /// Unknown session, or ended when joining.
        SessionNotFound => "SESSION_NOT_FOUND",
        /// Unknown call.
        CallNotFound => "CALL_NOT_FOUND",
        /// Any other unknown id.
        NotFound => "NOT_FOUND",
        /// Callee (or caller) already in an active call.
        Busy => "BUSY",
        /// The state machine does not allow it from the current state.
        InvalidTransition => "INVALID_TRANSITION",
        /// A conflict with existing state, e.g. the creator already has a live session.
        Conflict => "CONFLICT",
        /// A bad body: malformed JSON, wrong types, unknown enum, a field too long, missing.
        ValidationError => "VALIDATION_ERROR",
        /// The body is over the size limit.
        PayloadTooLarge => "PAYLOAD_TOO_LARGE",
        /// Too many requests; `Retry-After` says when to come back.
        RateLimited => "RATE_LIMITED",
        /// Operators switched new sessions off (the kill switch).
        LiveDisabled => "LIVE_DISABLED",
        /// Anything unexpected; the body says nothing more, the log has the trace id.
        InternalError => "INTERNAL_ERROR",
    }
}

impl ErrorCode {
    /// The HTTP status this code is always answered with.
    pub const fn http_status(self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::Forbidden | Self::Banned | Self::SubscriptionRequired => 403,
            Self::PaymentRequired => 402,
            Self::SessionNotFound | Self::CallNotFound | Self::NotFound => 404,
            Self::Busy | Self::InvalidTransition | Self::Conflict => 409,
            Self::ValidationError => 422,
            Self::PayloadTooLarge => 413,
            Self::RateLimited => 429,
            Self::LiveDisabled => 503,
            Self::InternalError => 500,
        }
    }

    /// Whether a client may usefully repeat the same request later: after `Retry-After`
    /// (rate limited), later (kill switch), or a few times (internal error). Every other code
    /// will give the same answer until something else changes.
    pub const fn retryable(self) -> bool {
        matches!(
            self,
            Self::RateLimited | Self::LiveDisabled | Self::InternalError
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// API.md's table, copied by hand: code, status, retry.
    const TABLE: &[(&str, u16, bool)] = &[
        ("UNAUTHORIZED", 401, false),
        ("FORBIDDEN", 403, false),
        ("BANNED", 403, false),
        ("SUBSCRIPTION_REQUIRED", 403, false),
        ("PAYMENT_REQUIRED", 402, false),
        ("SESSION_NOT_FOUND", 404, false),
        ("CALL_NOT_FOUND", 404, false),
        ("NOT_FOUND", 404, false),
        ("BUSY", 409, false),
        ("INVALID_TRANSITION", 409, false),
        ("CONFLICT", 409, false),
        ("VALIDATION_ERROR", 422, false),
        ("PAYLOAD_TOO_LARGE", 413, false),
        ("RATE_LIMITED", 429, true),
        ("LIVE_DISABLED", 503, true),
        ("INTERNAL_ERROR", 500, true),
    ];

    #[test]
    fn matches_the_api_table() {
        assert_eq!(ErrorCode::ALL.len(), TABLE.len());
        for &(name, status, retry) in TABLE {
            let code: ErrorCode = name.parse().unwrap();
            assert_eq!(code.as_str(), name);
            assert_eq!(code.http_status(), status, "{name}");
            assert_eq!(code.retryable(), retry, "{name}");
        }
    }

    #[test]
    fn invalid_transition_maps_to_its_code() {
        let err = crate::session::next(
            crate::session::SessionStatus::Ended,
            crate::session::SessionEvent::Pause,
        )
        .unwrap_err();
        assert_eq!(err.error_code(), ErrorCode::InvalidTransition);
        assert_eq!(err.error_code().http_status(), 409);
    }
}
