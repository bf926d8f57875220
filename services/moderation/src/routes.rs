//! The moderation routes of API.md: kick, session bans, creator bans, message deletion,
//! reports. Hosts moderate their own sessions; operators every session.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web as aw};
use chrono::{DateTime, Utc};
use db::queries::moderation::{self as mq, CreatorBan, NewReport, Report, SessionBan};
use db::queries::sessions;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;
use web::error::success;
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
pub fn reason(r: Option<String>) -> Result<Option<String>, ApiError> {
    match r.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty()) {
        Some(r) if r.chars().count() > 500 => Err(ApiError::validation(
            "reason must be at most 500 characters",
        )),
        r => Ok(r),
    }
}

pub fn session_ban_json(b: &SessionBan) -> Value {
    json!({
        "sessionId": b.session_id,
        "userId": b.user_id,
        "bannedBy": b.banned_by,
        "reason": b.reason,
        "createdAt": ts(b.created_at),
    })
}

pub fn creator_ban_json(b: &CreatorBan) -> Value {
    json!({
        "creatorId": b.creator_id,
        "userId": b.user_id,
        "reason": b.reason,
        "createdAt": ts(b.created_at),
    })
}

pub fn report_json(r: &Report) -> Value {
    json!({
        "id": r.id,
        "reporterId": r.reporter_id,
        "reportedUserId": r.reported_user_id,
        "sessionId": r.session_id,
        "reason": r.reason,
        "details": r.details,
        "status": r.status,
        "resolvedBy": r.resolved_by,
        "resolvedAt": ts_opt(r.resolved_at),
        "createdAt": ts(r.created_at),
    })
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KickBody {
    user_id: Uuid,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BanBody {
    user_id: Uuid,
    #[serde(default)]
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
    Ok(success(
        StatusCode::OK,
        json!({ "kicked": { "sessionId": s.id, "userId": target } }),
    ))
}

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
    let body: KickBody = web::extract::from_object(body.into_inner())?;
    kick_from(&state, &actor, path.into_inner(), body.user_id).await
}

pub async fn ban(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    let actor = authz::caller(&mut conn, user).await?;
    let body: BanBody = web::extract::from_object(body.into_inner())?;
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
    Ok(success(
        StatusCode::CREATED,
        json!({ "ban": session_ban_json(&ban), "removed": removed }),
    ))
}

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
    Ok(success(
        StatusCode::OK,
        json!({ "unbanned": { "sessionId": s.id, "userId": target } }),
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

pub async fn creator_ban(
    user: AuthUser,
    state: aw::Data<State>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    let me = creator(&mut conn, user).await?;
    let body: BanBody = web::extract::from_object(body.into_inner())?;
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
    Ok(success(
        StatusCode::CREATED,
        json!({ "ban": creator_ban_json(&ban), "removed": removed }),
    ))
}

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
    Ok(success(
        StatusCode::OK,
        json!({ "unbanned": { "creatorId": me.id, "userId": target } }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

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
    Ok(success(
        StatusCode::OK,
        json!({ "bans": page.iter().map(|b| creator_ban_json(b)).collect::<Vec<_>>(), "nextCursor": next }),
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

fn message_json(m: &mq::Message) -> Value {
    json!({
        "id": m.id,
        "sessionId": m.session_id,
        "userId": m.user_id,
        "deleted": m.deleted_at.is_some(),
        "deletedAt": ts_opt(m.deleted_at),
        "deletedBy": m.deleted_by,
        "createdAt": ts(m.created_at),
    })
}

/// Soft delete: session-manager owns `live_messages`, so moderation authorises, publishes
/// `moderation.message_deleted`, and waits (bounded) for session-manager to mark the row and
/// broadcast `session.message_deleted`: 200 once it has, 202 when it has not yet.
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
        return Ok(success(
            StatusCode::OK,
            json!({ "message": message_json(&m) }),
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
    Ok(success(status, json!({ "message": message_json(&latest) })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReportBody {
    reported_user_id: Uuid,
    #[serde(default)]
    session_id: Option<Uuid>,
    reason: String,
    #[serde(default)]
    details: Option<String>,
}

pub async fn report(
    user: AuthUser,
    state: aw::Data<State>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    let me = authz::caller(&mut conn, user).await?;
    let body: ReportBody = web::extract::from_object(body.into_inner())?;
    let why = body.reason.trim();
    if why.is_empty() || why.chars().count() > 200 {
        return Err(ApiError::validation("reason must be 1 to 200 characters"));
    }
    let details = body
        .details
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty());
    if details.is_some_and(|d| d.chars().count() > 2000) {
        return Err(ApiError::validation(
            "details must be at most 2000 characters",
        ));
    }
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
    Ok(success(
        StatusCode::CREATED,
        json!({ "report": report_json(&r) }),
    ))
}
