//! Who the caller is and what they may do. The role is read from `profiles` on every request
//! (API.md: checked in the database, not trusted from the token), so demoting an operator
//! takes effect at their next request.

use db::models::{LiveSession, Profile};
use db::queries::{profiles, sessions};
use diesel_async::AsyncPgConnection;
use domain::ErrorCode;
use domain::moderation::{is_operator, may_moderate};
use uuid::Uuid;
use web::{ApiError, AuthUser};

/// The caller's profile, or 401 (a valid token naming no profile).
pub async fn caller(c: &mut AsyncPgConnection, user: AuthUser) -> Result<Profile, ApiError> {
    profiles::find(c, user.0)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown user"))
}

/// The caller, who must be an operator (`profiles.role` `admin` or `ops`): else 403.
pub async fn operator(c: &mut AsyncPgConnection, user: AuthUser) -> Result<Profile, ApiError> {
    let p = caller(c, user).await?;
    if !is_operator(p.role.as_deref()) {
        return Err(ApiError::forbidden("operators only"));
    }
    Ok(p)
}

pub fn session_not_found() -> ApiError {
    ApiError::new(ErrorCode::SessionNotFound, "session not found")
}

/// The session `actor` wants to moderate: 404 when unknown, 403 unless `actor` is its host
/// or an operator.
pub async fn moderated_session(
    c: &mut AsyncPgConnection,
    actor: &Profile,
    session: Uuid,
) -> Result<LiveSession, ApiError> {
    let s = sessions::find(c, session)
        .await?
        .ok_or_else(session_not_found)?;
    if !may_moderate(actor.id, actor.role.as_deref(), s.creator_id) {
        return Err(ApiError::forbidden(
            "only the host of this session or an operator can moderate it",
        ));
    }
    Ok(s)
}

/// The profile a moderation action is aimed at: 404 `NOT_FOUND` when there is none.
pub async fn target(c: &mut AsyncPgConnection, user: Uuid) -> Result<Profile, ApiError> {
    profiles::find(c, user)
        .await?
        .ok_or_else(|| ApiError::not_found("user not found"))
}
