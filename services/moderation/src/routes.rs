//! The moderation routes of API.md: kick, session bans, creator bans, message deletion,
//! reports. Hosts moderate their own sessions; operators every session.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web as aw};
use chrono::{DateTime, Utc};
use db::queries::moderation::{self as mq, CreatorBan, NewReport, Report, SessionBan};
use db::queries::sessions;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use domain::moderation::ReportStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::Schema;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use web::openapi::{ErrorBody, Success, ok, wire_enum};
use web::{ApiError, AuthUser};

use crate::State;
use crate::authz;
use crate::events::{self, Action, actions};

pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn ts_opt(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(ts)
}

/// An optional free-text reason: at most 500 characters (the column's limit); blank = none.
/// The limit holds for the text as sent, as the schema's `maxLength` says (trimming comes
/// after: a reason over the limit is refused even when its excess is blank).
pub fn reason(r: Option<String>) -> Result<Option<String>, ApiError> {
    if r.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(ApiError::validation(
            "reason must be at most 500 characters",
        ));
    }
    Ok(r.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty()))
}

fn report_status_schema() -> Schema {
    wire_enum(ReportStatus::WIRE_NAMES)
}

/// A user's ban from one session.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionBanView {
    session_id: Uuid,
    user_id: Uuid,
    /// The host or operator who banned them.
    banned_by: Uuid,
    reason: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<&SessionBan> for SessionBanView {
    fn from(b: &SessionBan) -> Self {
        SessionBanView {
            session_id: b.session_id,
            user_id: b.user_id,
            banned_by: b.banned_by,
            reason: b.reason.clone(),
            created_at: ts(b.created_at),
        }
    }
}

/// A user's permanent ban from every session of one creator.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatorBanView {
    creator_id: Uuid,
    user_id: Uuid,
    reason: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<&CreatorBan> for CreatorBanView {
    fn from(b: &CreatorBan) -> Self {
        CreatorBanView {
            creator_id: b.creator_id,
            user_id: b.user_id,
            reason: b.reason.clone(),
            created_at: ts(b.created_at),
        }
    }
}

/// A report about a user, in the operators' queue until resolved.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportView {
    id: Uuid,
    reporter_id: Uuid,
    reported_user_id: Uuid,
    session_id: Option<Uuid>,
    reason: String,
    details: Option<String>,
    #[schema(schema_with = report_status_schema)]
    status: String,
    resolved_by: Option<Uuid>,
    #[schema(format = DateTime)]
    resolved_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<&Report> for ReportView {
    fn from(r: &Report) -> Self {
        ReportView {
            id: r.id,
            reporter_id: r.reporter_id,
            reported_user_id: r.reported_user_id,
            session_id: r.session_id,
            reason: r.reason.clone(),
            details: r.details.clone(),
            status: r.status.clone(),
            resolved_by: r.resolved_by,
            resolved_at: ts_opt(r.resolved_at),
            created_at: ts(r.created_at),
        }
    }
}

/// `{"report":{...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportBody {
    pub report: ReportView,
}

/// A user of a session (who was kicked, or unbanned).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionUser {
    session_id: Uuid,
    user_id: Uuid,
}

/// `{"kicked":{"sessionId","userId"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Kicked {
    kicked: SessionUser,
}

/// A session ban and whether LiveKit confirmed the user's removal from the room (a removal
/// that failed is retried by the ban enforcer at their next join).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionBanned {
    ban: SessionBanView,
    removed: bool,
}

/// `{"unbanned":{"sessionId","userId"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionUnbanned {
    unbanned: SessionUser,
}

/// A creator ban and whether the user was removed from the creator's running session.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatorBanned {
    ban: CreatorBanView,
    removed: bool,
}

/// A creator and a user they banned.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatorUser {
    creator_id: Uuid,
    user_id: Uuid,
}

/// `{"unbanned":{"creatorId","userId"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatorUnbanned {
    unbanned: CreatorUser,
}

/// A page of the caller's creator bans, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatorBanPage {
    bans: Vec<CreatorBanView>,
    /// The `cursor` of the next page; `null` on the last one.
    next_cursor: Option<String>,
}

/// Writes one `moderation.<name>` event in a transaction of its own (actions whose effect
/// is a LiveKit call, not a row).
pub async fn publish_alone(
    c: &mut AsyncPgConnection,
    state: &State,
    name: &str,
    a: Action<'_>,
) -> Result<(), ApiError> {
    c.transaction::<(), diesel::result::Error, _>(async |c| {
        events::publish(c, &state.subjects, name, a).await
    })
    .await?;
    Ok(())
}

/// Disconnects `user` from `room`; whether LiveKit confirmed it. A failure is logged and
/// counted, not answered: the ban is stored, and the ban enforcer removes the user again at
/// their next join.
pub async fn remove(state: &State, room: &str, user: Uuid) -> bool {
    match state
        .rooms
        .remove_participant(room, &user.to_string())
        .await
    {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(room.name = %room, user.id = %user, error = %e, "could not remove the participant");
            metrics::counter!("moderation_removals_failed_total").increment(1);
            false
        }
    }
}

/// Whom to kick.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KickRequest {
    user_id: Uuid,
}

/// Whom to ban, and why (at most 500 characters; blank = no reason).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BanRequest {
    user_id: Uuid,
    #[serde(default)]
    #[schema(max_length = 500)]
    reason: Option<String>,
}

/// Removes `target` from the session's room (they may come back): 404 when LiveKit does not
/// have them in the room.
pub async fn kick_from(
    state: &State,
    actor: &db::models::Profile,
    session: Uuid,
    target: Uuid,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    let s = authz::moderated_session(&mut conn, actor, session).await?;
    if target == s.creator_id {
        return Err(ApiError::validation(
            "the host cannot be kicked from their own session (terminate it instead)",
        ));
    }
    let identity = target.to_string();
    let present = state
        .rooms
        .get_participant(&s.room_name, &identity)
        .await
        .map_err(|e| ApiError::internal(format!("LiveKit GetParticipant failed: {e}")))?;
    if present.is_none() {
        return Err(ApiError::not_found("the user is not in the session's room"));
    }
    state
        .rooms
        .remove_participant(&s.room_name, &identity)
        .await
        .map_err(|e| ApiError::internal(format!("LiveKit RemoveParticipant failed: {e}")))?;
    publish_alone(
        &mut conn,
        state,
        actions::KICK,
        Action {
            session: Some(s.id),
            user: Some(target),
            actor: Some(actor.id),
            ..Default::default()
        },
    )
    .await?;
    tracing::info!(session.id = %s.id, user.id = %target, actor.id = %actor.id, "participant kicked");
    metrics::counter!("moderation_actions_total", "action" => actions::KICK).increment(1);
    Ok(ok(
        StatusCode::OK,
        Kicked {
            kicked: SessionUser {
                session_id: s.id,
                user_id: target,
            },
        },
    ))
}

/// `POST /v1/moderation/sessions/{id}/kick`: out of the room; they may come back.
#[utoipa::path(
    post,
    path = "/v1/moderation/sessions/{id}/kick",
    tag = "moderation",
    params(("id" = Uuid, Path, description = "The session")),
    request_body = KickRequest,
    responses(
        (status = 200, description = "Removed from the LiveKit room", body = Success<Kicked>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Neither the session's host nor an operator", body = ErrorBody),
        (status = 404, description = "`SESSION_NOT_FOUND`, or `NOT_FOUND`: the user is not in the room", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Bad path or body, or the host themselves", body = ErrorBody),
    )
)]
pub async fn kick(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let actor = {
        let mut conn = db::pool::conn(&state.pool).await?;
        authz::caller(&mut conn, user).await?
    };
    let body: KickRequest = web::extract::from_object(body.into_inner())?;
    kick_from(&state, &actor, path.into_inner(), body.user_id).await
}

/// `POST /v1/moderation/sessions/{id}/bans`: banned from the session and out of its room.
#[utoipa::path(
    post,
    path = "/v1/moderation/sessions/{id}/bans",
    tag = "moderation",
    params(("id" = Uuid, Path, description = "The session")),
    request_body = BanRequest,
    responses(
        (status = 201, description = "The ban (a repeat keeps its time, takes the new reason)", body = Success<SessionBanned>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Neither the session's host nor an operator", body = ErrorBody),
        (status = 404, description = "`SESSION_NOT_FOUND`, or `NOT_FOUND`: no such user", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Bad path or body, a reason over 500 characters, or the host themselves", body = ErrorBody),
    )
)]
pub async fn ban(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    let actor = authz::caller(&mut conn, user).await?;
    let body: BanRequest = web::extract::from_object(body.into_inner())?;
    let why = reason(body.reason)?;
    let s = authz::moderated_session(&mut conn, &actor, path.into_inner()).await?;
    if body.user_id == s.creator_id {
        return Err(ApiError::validation(
            "the host cannot be banned from their own session",
        ));
    }
    authz::target(&mut conn, body.user_id).await?;
    let ban = conn
        .transaction::<SessionBan, db::DbError, _>(async |c| {
            let ban = mq::ban_from_session(c, s.id, body.user_id, actor.id, why.as_deref()).await?;
            events::publish(
                c,
                &state.subjects,
                actions::SESSION_BAN,
                Action {
                    session: Some(s.id),
                    user: Some(body.user_id),
                    actor: Some(actor.id),
                    reason: why.as_deref(),
                    ..Default::default()
                },
            )
            .await?;
            Ok(ban)
        })
        .await?;
    let removed = remove(&state, &s.room_name, body.user_id).await;
    tracing::info!(session.id = %s.id, user.id = %body.user_id, actor.id = %actor.id, "user banned from the session");
    metrics::counter!("moderation_actions_total", "action" => actions::SESSION_BAN).increment(1);
    Ok(ok(
        StatusCode::CREATED,
        SessionBanned {
            ban: (&ban).into(),
            removed,
        },
    ))
}

/// `DELETE /v1/moderation/sessions/{id}/bans/{userId}`: lifts a session ban.
#[utoipa::path(
    delete,
    path = "/v1/moderation/sessions/{id}/bans/{userId}",
    tag = "moderation",
    params(
        ("id" = Uuid, Path, description = "The session"),
        ("userId" = Uuid, Path, description = "The banned user"),
    ),
    responses(
        (status = 200, description = "Lifted", body = Success<SessionUnbanned>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Neither the session's host nor an operator", body = ErrorBody),
        (status = 404, description = "`SESSION_NOT_FOUND`, or `NOT_FOUND`: no such ban", body = ErrorBody),
        (status = 422, description = "An id is not a UUID", body = ErrorBody),
    )
)]
pub async fn unban(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (session, target) = path.into_inner();
    let mut conn = db::pool::conn(&state.pool).await?;
    let actor = authz::caller(&mut conn, user).await?;
    let s = authz::moderated_session(&mut conn, &actor, session).await?;
    let lifted = conn
        .transaction::<bool, db::DbError, _>(async |c| {
            if !mq::unban_from_session(c, s.id, target).await? {
                return Ok(false);
            }
            events::publish(
                c,
                &state.subjects,
                actions::SESSION_UNBAN,
                Action {
                    session: Some(s.id),
                    user: Some(target),
                    actor: Some(actor.id),
                    ..Default::default()
                },
            )
            .await?;
            Ok(true)
        })
        .await?;
    if !lifted {
        return Err(ApiError::not_found("no such ban"));
    }
    Ok(ok(
        StatusCode::OK,
        SessionUnbanned {
            unbanned: SessionUser {
                session_id: s.id,
                user_id: target,
            },
        },
    ))
}

/// The caller, who must be a creator (creator bans are theirs).
async fn creator(
    c: &mut AsyncPgConnection,
    user: AuthUser,
) -> Result<db::models::Profile, ApiError> {
    let p = authz::caller(c, user).await?;
    if !p.is_creator {
        return Err(ApiError::forbidden("only creators have creator bans"));
    }
    Ok(p)
}

/// `POST /v1/moderation/creator-bans`: the caller (a creator) bans a user from all their
/// sessions, for good.
#[utoipa::path(
    post,
    path = "/v1/moderation/creator-bans",
    tag = "moderation",
    request_body = BanRequest,
    responses(
        (status = 201, description = "The ban (a repeat keeps its time, takes the new reason)", body = Success<CreatorBanned>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "The caller is not a creator", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Bad body, a reason over 500 characters, or the caller themselves", body = ErrorBody),
    )
)]
pub async fn creator_ban(
    user: AuthUser,
    state: aw::Data<State>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    let me = creator(&mut conn, user).await?;
    let body: BanRequest = web::extract::from_object(body.into_inner())?;
    let why = reason(body.reason)?;
    if body.user_id == me.id {
        return Err(ApiError::validation("you cannot ban yourself"));
    }
    authz::target(&mut conn, body.user_id).await?;
    let ban = conn
        .transaction::<CreatorBan, db::DbError, _>(async |c| {
            let ban = mq::ban_from_creator(c, me.id, body.user_id, why.as_deref()).await?;
            events::publish(
                c,
                &state.subjects,
                actions::CREATOR_BAN,
                Action {
                    user: Some(body.user_id),
                    actor: Some(me.id),
                    reason: why.as_deref(),
                    ..Default::default()
                },
            )
            .await?;
            Ok(ban)
        })
        .await?;
    // Out of the creator's running session too, if they are in it.
    let mut removed = false;
    if let Some(s) = sessions::active_of_creator(&mut conn, me.id).await? {
        removed = remove(&state, &s.room_name, body.user_id).await;
    }
    metrics::counter!("moderation_actions_total", "action" => actions::CREATOR_BAN).increment(1);
    Ok(ok(
        StatusCode::CREATED,
        CreatorBanned {
            ban: (&ban).into(),
            removed,
        },
    ))
}

/// `DELETE /v1/moderation/creator-bans/{userId}`: lifts one of the caller's creator bans.
#[utoipa::path(
    delete,
    path = "/v1/moderation/creator-bans/{userId}",
    tag = "moderation",
    params(("userId" = Uuid, Path, description = "The banned user")),
    responses(
        (status = 200, description = "Lifted", body = Success<CreatorUnbanned>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "The caller is not a creator", body = ErrorBody),
        (status = 404, description = "No such ban", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    )
)]
pub async fn creator_unban(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let target = path.into_inner();
    let mut conn = db::pool::conn(&state.pool).await?;
    let me = creator(&mut conn, user).await?;
    let lifted = conn
        .transaction::<bool, db::DbError, _>(async |c| {
            if !mq::unban_from_creator(c, me.id, target).await? {
                return Ok(false);
            }
            events::publish(
                c,
                &state.subjects,
                actions::CREATOR_UNBAN,
                Action {
                    user: Some(target),
                    actor: Some(me.id),
                    ..Default::default()
                },
            )
            .await?;
            Ok(true)
        })
        .await?;
    if !lifted {
        return Err(ApiError::not_found("no such ban"));
    }
    Ok(ok(
        StatusCode::OK,
        CreatorUnbanned {
            unbanned: CreatorUser {
                creator_id: me.id,
                user_id: target,
            },
        },
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /v1/moderation/creator-bans`: the caller's creator bans, newest first.
#[utoipa::path(
    get,
    path = "/v1/moderation/creator-bans",
    tag = "moderation",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of the caller's bans", body = Success<CreatorBanPage>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "The caller is not a creator", body = ErrorBody),
        (status = 422, description = "Bad query: unknown parameter, limit out of range, a cursor not ours", body = ErrorBody),
    )
)]
pub async fn creator_bans(
    user: AuthUser,
    state: aw::Data<State>,
    query: aw::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = web::cursor::limit(q.limit)?;
    let after = q.cursor.as_deref().map(web::cursor::decode).transpose()?;
    let mut conn = db::pool::conn(&state.pool).await?;
    let me = creator(&mut conn, user).await?;
    let rows = mq::creator_bans_of(&mut conn, me.id, after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    let page: Vec<&CreatorBan> = rows.iter().take(limit as usize).collect();
    let next = more
        .then(|| {
            page.last()
                .map(|b| web::cursor::encode(b.created_at, b.user_id))
        })
        .flatten();
    Ok(ok(
        StatusCode::OK,
        CreatorBanPage {
            bans: page.into_iter().map(CreatorBanView::from).collect(),
            next_cursor: next,
        },
    ))
}

/// A bounded wait for a change another service applies (session-manager owns the rows):
/// poll, then `pause` until the time is up.
pub struct Wait {
    deadline: tokio::time::Instant,
}

impl Wait {
    pub fn new(wait: Duration) -> Self {
        Wait {
            deadline: tokio::time::Instant::now() + wait,
        }
    }

    /// Sleeps a moment; `false` once the wait is over.
    pub async fn pause(&self) -> bool {
        if tokio::time::Instant::now() >= self.deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        true
    }
}

/// A chat message as moderation sees it (without its text).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    id: Uuid,
    session_id: Uuid,
    user_id: Uuid,
    deleted: bool,
    #[schema(format = DateTime)]
    deleted_at: Option<String>,
    deleted_by: Option<Uuid>,
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<&mq::Message> for MessageView {
    fn from(m: &mq::Message) -> Self {
        MessageView {
            id: m.id,
            session_id: m.session_id,
            user_id: m.user_id,
            deleted: m.deleted_at.is_some(),
            deleted_at: ts_opt(m.deleted_at),
            deleted_by: m.deleted_by,
            created_at: ts(m.created_at),
        }
    }
}

/// `{"message":{...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageBody {
    message: MessageView,
}

/// Soft delete: session-manager owns `live_messages`, so moderation authorises, publishes
/// `moderation.message_deleted`, and waits (bounded) for session-manager to mark the row and
/// broadcast `session.message_deleted`: 200 once it has, 202 when it has not yet.
#[utoipa::path(
    delete,
    path = "/v1/moderation/messages/{messageId}",
    tag = "moderation",
    params(("messageId" = Uuid, Path, description = "The chat message")),
    responses(
        (status = 200, description = "Deleted (or already was)", body = Success<MessageBody>),
        (status = 202, description = "Requested; session-manager has not applied it yet", body = Success<MessageBody>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Neither the session's host nor an operator", body = ErrorBody),
        (status = 404, description = "No such message (or session)", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    )
)]
pub async fn delete_message(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let mut conn = db::pool::conn(&state.pool).await?;
    let actor = authz::caller(&mut conn, user).await?;
    let m = mq::message(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("message not found"))?;
    authz::moderated_session(&mut conn, &actor, m.session_id).await?;
    if m.deleted_at.is_some() {
        return Ok(ok(
            StatusCode::OK,
            MessageBody {
                message: (&m).into(),
            },
        ));
    }
    publish_alone(
        &mut conn,
        &state,
        actions::MESSAGE_DELETED,
        Action {
            session: Some(m.session_id),
            user: Some(m.user_id),
            actor: Some(actor.id),
            message: Some(m.id),
            ..Default::default()
        },
    )
    .await?;
    metrics::counter!("moderation_actions_total", "action" => actions::MESSAGE_DELETED)
        .increment(1);
    let wait = Wait::new(state.apply_wait);
    let (latest, applied) = loop {
        let now = mq::message(&mut conn, id)
            .await?
            .ok_or_else(|| ApiError::not_found("message not found"))?;
        if now.deleted_at.is_some() {
            break (now, true);
        }
        if !wait.pause().await {
            break (now, false);
        }
    };
    let status = if applied {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(ok(
        status,
        MessageBody {
            message: (&latest).into(),
        },
    ))
}

/// A report about a user (and the session it happened in).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportRequest {
    reported_user_id: Uuid,
    #[serde(default)]
    session_id: Option<Uuid>,
    /// 1 to 200 characters (trimmed).
    #[schema(min_length = 1, max_length = 200)]
    reason: String,
    /// At most 2000 characters (trimmed; blank = none).
    #[serde(default)]
    #[schema(max_length = 2000)]
    details: Option<String>,
}

/// `POST /v1/reports`: any user reports another; the report waits as `pending`.
#[utoipa::path(
    post,
    path = "/v1/reports",
    tag = "moderation",
    request_body = ReportRequest,
    responses(
        (status = 201, description = "The report, `pending`", body = Success<ReportBody>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such user; `SESSION_NOT_FOUND`: no such session", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Bad body, reason or details out of bounds, or the caller themselves", body = ErrorBody),
    )
)]
pub async fn report(
    user: AuthUser,
    state: aw::Data<State>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    let me = authz::caller(&mut conn, user).await?;
    let body: ReportRequest = web::extract::from_object(body.into_inner())?;
    // The limits hold for the text as sent (the schema's `maxLength`), then it is trimmed.
    let why = body.reason.trim();
    if why.is_empty() || body.reason.chars().count() > 200 {
        return Err(ApiError::validation("reason must be 1 to 200 characters"));
    }
    if body
        .details
        .as_ref()
        .is_some_and(|d| d.chars().count() > 2000)
    {
        return Err(ApiError::validation(
            "details must be at most 2000 characters",
        ));
    }
    let details = body
        .details
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty());
    if body.reported_user_id == me.id {
        return Err(ApiError::validation("you cannot report yourself"));
    }
    authz::target(&mut conn, body.reported_user_id).await?;
    if let Some(s) = body.session_id {
        sessions::find(&mut conn, s)
            .await?
            .ok_or_else(authz::session_not_found)?;
    }
    let r = conn
        .transaction::<Report, db::DbError, _>(async |c| {
            let r = mq::insert_report(
                c,
                &NewReport {
                    id: Uuid::now_v7(),
                    reporter_id: me.id,
                    reported_user_id: body.reported_user_id,
                    session_id: body.session_id,
                    reason: why,
                    details,
                },
            )
            .await?;
            events::publish(
                c,
                &state.subjects,
                actions::REPORTED,
                Action {
                    session: body.session_id,
                    user: Some(body.reported_user_id),
                    actor: Some(me.id),
                    reason: Some(why),
                    ..Default::default()
                },
            )
            .await?;
            Ok(r)
        })
        .await?;
    metrics::counter!("reports_created_total").increment(1);
    Ok(ok(
        StatusCode::CREATED,
        ReportBody {
            report: (&r).into(),
        },
    ))
}
