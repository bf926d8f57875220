//! The operators' API (`/v1/ops/*`): every route checks the caller's role in the database.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web as aw};
use chrono::Utc;
use db::models::LiveSession;
use db::queries::moderation::{self as mq, Report};
use db::queries::{config, profiles, sessions};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use domain::ErrorCode;
use domain::moderation::{MAX_BAN_HOURS, ReportAction, ReportStatus};
use domain::session::SessionStatus;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;
use web::error::success;
use web::{ApiError, AuthUser};

use crate::State;
use crate::authz;
use crate::events::{self, Action, actions};
use crate::routes::{self, Wait, reason, report_json, ts, ts_opt};

/// A session as the operators see it (API.md's session fields plus the creator's name, the
/// participant count and the time it has been running).
fn session_json(s: &LiveSession, creator: Option<&str>, participants: Option<i64>) -> Value {
    let until = s.ended_at.unwrap_or_else(Utc::now);
    let duration = s
        .started_at
        .map(|st| (until - st).num_seconds().max(0))
        .unwrap_or(0);
    json!({
        "id": s.id,
        "creatorId": s.creator_id,
        "creatorUsername": creator,
        "title": s.title,
        "sessionType": s.session_type,
        "accessType": s.access_type,
        "priceCoins": s.price_coins,
        "status": s.status,
        "roomName": s.room_name,
        "createdAt": ts(s.created_at),
        "startedAt": ts_opt(s.started_at),
        "endedAt": ts_opt(s.ended_at),
        "endReason": s.end_reason,
        "hostLeftAt": ts_opt(s.host_left_at),
        "lastActivityAt": ts(s.last_activity_at),
        "viewerCount": s.viewer_count,
        "peakViewers": s.peak_viewers,
        "participantCount": participants,
        "durationSeconds": duration,
        "totalDurationSeconds": s.total_duration_seconds,
        "totalMessages": s.total_messages,
        "totalGiftsReceived": s.total_gifts_received,
        "totalGiftCoins": s.total_gift_coins,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsQuery {
    /// A session status, or `active` (every non-ended one, the default).
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn sessions(
    user: AuthUser,
    state: aw::Data<State>,
    query: aw::Query<SessionsQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let status = match q.status.as_deref() {
        None | Some("active") => None,
        Some(s) => Some(
            s.parse::<SessionStatus>()
                .map_err(|e| ApiError::validation(e.to_string()))?,
        ),
    };
    let limit = web::cursor::limit(q.limit)?;
    let after = q.cursor.as_deref().map(web::cursor::decode).transpose()?;
    let mut conn = db::pool::conn(&state.pool).await?;
    authz::operator(&mut conn, user).await?;
    let rows =
        mq::sessions_overview(&mut conn, status.map(|s| s.as_str()), after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    let page = &rows[..rows.len().min(limit as usize)];
    let next = more
        .then(|| {
            page.last()
                .map(|o| web::cursor::encode(o.session.created_at, o.session.id))
        })
        .flatten();
    let items: Vec<Value> = page
        .iter()
        .map(|o| {
            session_json(
                &o.session,
                Some(&o.creator_username),
                Some(o.participant_count),
            )
        })
        .collect();
    let viewers: i64 = page.iter().map(|o| i64::from(o.session.viewer_count)).sum();
    Ok(success(
        StatusCode::OK,
        json!({ "sessions": items, "nextCursor": next, "totalViewers": viewers }),
    ))
}

pub async fn session(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    authz::operator(&mut conn, user).await?;
    let s = sessions::find(&mut conn, path.into_inner())
        .await?
        .ok_or_else(authz::session_not_found)?;
    let creator = profiles::find(&mut conn, s.creator_id).await?;
    let people = mq::participants_named(&mut conn, s.id).await?;
    let messages = mq::recent_messages(&mut conn, s.id, 50).await?;
    let active = people.iter().filter(|(p, _)| p.is_active).count() as i64;
    let participants: Vec<Value> = people
        .iter()
        .map(|(p, name)| {
            json!({
                "userId": p.user_id,
                "username": name,
                "role": p.role,
                "isActive": p.is_active,
                "firstJoinedAt": ts_opt(p.first_joined_at),
                "joinedAt": ts_opt(p.joined_at),
                "leftAt": ts_opt(p.left_at),
            })
        })
        .collect();
    let chat: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "userId": m.user_id,
                "body": if m.deleted_at.is_some() { Value::Null } else { json!(m.body) },
                "deleted": m.deleted_at.is_some(),
                "deletedBy": m.deleted_by,
                "createdAt": ts(m.created_at),
            })
        })
        .collect();
    let detail = session_json(
        &s,
        creator.as_ref().map(|c| c.username.as_str()),
        Some(active),
    );
    Ok(success(
        StatusCode::OK,
        json!({
            "session": detail,
            "participants": participants,
            "stats": {
                "activeParticipants": active,
                "uniqueParticipants": people.len(),
                "viewerCount": s.viewer_count,
                "peakViewers": s.peak_viewers,
                "totalMessages": s.total_messages,
                "totalGiftsReceived": s.total_gifts_received,
                "totalGiftCoins": s.total_gift_coins,
                "durationSeconds": detail["durationSeconds"],
            },
            "messages": chat,
        }),
    ))
}

/// Terminate: session-manager owns the session, so moderation publishes
/// `moderation.terminated` and session-manager ends it (`admin_terminated`) and deletes its
/// room. The answer waits for that, bounded: 200 with the ended session, or 202 with the
/// session as it still is when session-manager has not applied it in time (it will: the
/// event is durable).
pub async fn terminate(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let mut conn = db::pool::conn(&state.pool).await?;
    let actor = authz::operator(&mut conn, user).await?;
    let s = sessions::find(&mut conn, id)
        .await?
        .ok_or_else(authz::session_not_found)?;
    if s.status == SessionStatus::Ended.as_str() {
        return Err(ApiError::new(
            ErrorCode::InvalidTransition,
            "the session has already ended",
        ));
    }
    routes::publish_alone(
        &mut conn,
        &state,
        actions::TERMINATED,
        Action {
            session: Some(s.id),
            user: Some(s.creator_id),
            actor: Some(actor.id),
            ..Default::default()
        },
    )
    .await?;
    tracing::info!(session.id = %s.id, actor.id = %actor.id, "session termination requested");
    metrics::counter!("moderation_actions_total", "action" => actions::TERMINATED).increment(1);
    let wait = Wait::new(state.apply_wait);
    let (latest, ended) = loop {
        let now = sessions::find(&mut conn, id)
            .await?
            .ok_or_else(authz::session_not_found)?;
        if now.status == SessionStatus::Ended.as_str() {
            break (now, true);
        }
        if !wait.pause().await {
            break (now, false);
        }
    };
    let status = if ended {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(success(
        status,
        json!({ "session": session_json(&latest, None, None), "terminated": ended }),
    ))
}

pub async fn kick(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (session, target) = path.into_inner();
    let actor = {
        let mut conn = db::pool::conn(&state.pool).await?;
        authz::operator(&mut conn, user).await?
    };
    routes::kick_from(&state, &actor, session, target).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GlobalBanBody {
    hours: i64,
    #[serde(default)]
    reason: Option<String>,
}

fn ban_hours(hours: i64) -> Result<i64, ApiError> {
    if !(1..=MAX_BAN_HOURS).contains(&hours) {
        return Err(ApiError::validation(format!(
            "hours must be between 1 and {MAX_BAN_HOURS}"
        )));
    }
    Ok(hours)
}

fn user_json(p: &db::models::Profile) -> Value {
    json!({
        "id": p.id,
        "username": p.username,
        "role": p.role,
        "bannedUntil": ts_opt(p.banned_until),
    })
}

/// Sets `banned_until` and writes `moderation.global_ban`, in the caller's transaction.
async fn global_ban_in(
    c: &mut AsyncPgConnection,
    state: &State,
    target: Uuid,
    hours: i64,
    actor: Uuid,
    why: Option<&str>,
) -> Result<(), db::DbError> {
    let until = Utc::now() + chrono::Duration::hours(hours);
    profiles::set_banned_until(c, target, Some(until)).await?;
    events::publish(
        c,
        &state.subjects,
        actions::GLOBAL_BAN,
        Action {
            user: Some(target),
            actor: Some(actor),
            reason: why,
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}

/// Out of every session room the user is active in (after a global ban committed).
async fn remove_everywhere(state: &State, c: &mut AsyncPgConnection, user: Uuid) -> usize {
    let rooms = match mq::active_session_rooms(c, user).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(user.id = %user, error = %e, "could not list the rooms of a banned user");
            return 0;
        }
    };
    let mut removed = 0;
    for room in rooms {
        if routes::remove(state, &room, user).await {
            removed += 1;
        }
    }
    removed
}

pub async fn global_ban(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let target = path.into_inner();
    let mut conn = db::pool::conn(&state.pool).await?;
    let actor = authz::operator(&mut conn, user).await?;
    let body: GlobalBanBody = web::extract::from_object(body.into_inner())?;
    let hours = ban_hours(body.hours)?;
    let why = reason(body.reason)?;
    authz::target(&mut conn, target).await?;
    if target == actor.id {
        return Err(ApiError::validation("you cannot ban yourself"));
    }
    conn.transaction::<(), db::DbError, _>(async |c| {
        global_ban_in(c, &state, target, hours, actor.id, why.as_deref()).await
    })
    .await?;
    let removed = remove_everywhere(&state, &mut conn, target).await;
    let p = authz::target(&mut conn, target).await?;
    tracing::info!(user.id = %target, actor.id = %actor.id, hours, "user banned globally");
    metrics::counter!("moderation_actions_total", "action" => actions::GLOBAL_BAN).increment(1);
    Ok(success(
        StatusCode::OK,
        json!({ "user": user_json(&p), "removedFromRooms": removed }),
    ))
}

pub async fn global_unban(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let target = path.into_inner();
    let mut conn = db::pool::conn(&state.pool).await?;
    let actor = authz::operator(&mut conn, user).await?;
    let p = authz::target(&mut conn, target).await?;
    if p.banned_until.is_none_or(|u| u <= Utc::now()) {
        return Err(ApiError::not_found("the user is not banned"));
    }
    conn.transaction::<(), db::DbError, _>(async |c| {
        profiles::set_banned_until(c, target, None).await?;
        events::publish(
            c,
            &state.subjects,
            actions::UNBAN,
            Action {
                user: Some(target),
                actor: Some(actor.id),
                ..Default::default()
            },
        )
        .await?;
        Ok(())
    })
    .await?;
    let p = authz::target(&mut conn, target).await?;
    Ok(success(StatusCode::OK, json!({ "user": user_json(&p) })))
}

/// Every kind of ban in force, newest first (at most 100 of each): the dashboard's Bans page.
pub async fn bans(user: AuthUser, state: aw::Data<State>) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    authz::operator(&mut conn, user).await?;
    let global: Vec<Value> = mq::globally_banned(&mut conn, 100)
        .await?
        .into_iter()
        .map(|(id, name, until)| json!({"userId": id, "username": name, "bannedUntil": ts(until)}))
        .collect();
    let session: Vec<Value> = mq::recent_session_bans(&mut conn, 100)
        .await?
        .iter()
        .map(routes::session_ban_json)
        .collect();
    let creator: Vec<Value> = mq::recent_creator_bans(&mut conn, 100)
        .await?
        .iter()
        .map(routes::creator_ban_json)
        .collect();
    Ok(success(
        StatusCode::OK,
        json!({ "bans": { "global": global, "session": session, "creator": creator } }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsQuery {
    status: Option<ReportStatus>,
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn reports(
    user: AuthUser,
    state: aw::Data<State>,
    query: aw::Query<ReportsQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = web::cursor::limit(q.limit)?;
    let after = q.cursor.as_deref().map(web::cursor::decode).transpose()?;
    let status = q.status.unwrap_or(ReportStatus::Pending);
    let mut conn = db::pool::conn(&state.pool).await?;
    authz::operator(&mut conn, user).await?;
    let rows = mq::reports(&mut conn, status.as_str(), after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    let page: Vec<&Report> = rows.iter().take(limit as usize).collect();
    let next = more
        .then(|| page.last().map(|r| web::cursor::encode(r.created_at, r.id)))
        .flatten();
    Ok(success(
        StatusCode::OK,
        json!({ "reports": page.iter().map(|r| report_json(r)).collect::<Vec<_>>(), "nextCursor": next }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    action: ReportAction,
    #[serde(default)]
    hours: Option<i64>,
}

pub async fn resolve(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let mut conn = db::pool::conn(&state.pool).await?;
    let actor = authz::operator(&mut conn, user).await?;
    let body: ResolveBody = web::extract::from_object(body.into_inner())?;
    let hours = match (body.action, body.hours) {
        (ReportAction::Ban, Some(h)) => Some(ban_hours(h)?),
        (ReportAction::Ban, None) => {
            return Err(ApiError::validation("hours is required to ban"));
        }
        (_, Some(_)) => return Err(ApiError::validation("hours is only for ban")),
        (_, None) => None,
    };
    let outcome = conn
        .transaction::<Result<Report, ApiError>, db::DbError, _>(async |c| {
            let Some(r) = mq::lock_report(c, id).await? else {
                return Ok(Err(ApiError::not_found("report not found")));
            };
            if r.status != ReportStatus::Pending.as_str() {
                return Ok(Err(ApiError::new(
                    ErrorCode::InvalidTransition,
                    format!("the report is already {}", r.status),
                )));
            }
            let to = body.action.resolves_to();
            let resolved = mq::resolve_report(c, id, to.as_str(), actor.id).await?;
            let about = Action {
                session: r.session_id,
                user: Some(r.reported_user_id),
                actor: Some(actor.id),
                reason: Some(&r.reason),
                ..Default::default()
            };
            events::publish(c, &state.subjects, actions::REPORT_RESOLVED, about.clone()).await?;
            match (body.action, hours) {
                (ReportAction::Warn, _) => {
                    events::publish(c, &state.subjects, actions::WARN, about).await?;
                }
                (ReportAction::Ban, Some(h)) => {
                    global_ban_in(c, &state, r.reported_user_id, h, actor.id, Some(&r.reason))
                        .await?;
                }
                _ => {}
            }
            Ok(Ok(resolved))
        })
        .await??;
    if body.action == ReportAction::Ban {
        remove_everywhere(&state, &mut conn, outcome.reported_user_id).await;
    }
    metrics::counter!("reports_resolved_total", "action" => body.action.as_str()).increment(1);
    Ok(success(
        StatusCode::OK,
        json!({ "report": report_json(&outcome) }),
    ))
}

fn config_json(disabled: bool) -> Value {
    json!({ "config": { "liveSessionsDisabled": disabled } })
}

pub async fn get_config(user: AuthUser, state: aw::Data<State>) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    authz::operator(&mut conn, user).await?;
    let disabled = config::live_sessions_disabled(&mut conn).await?;
    Ok(success(StatusCode::OK, config_json(disabled)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchBody {
    value: bool,
}

pub async fn kill_switch(
    user: AuthUser,
    state: aw::Data<State>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    let actor = authz::operator(&mut conn, user).await?;
    let body: SwitchBody = web::extract::from_object(body.into_inner())?;
    let text = if body.value { "on" } else { "off" };
    conn.transaction::<(), db::DbError, _>(async |c| {
        config::set(
            c,
            config::LIVE_SESSIONS_DISABLED,
            json!(body.value),
            Some(actor.id),
        )
        .await?;
        events::publish(
            c,
            &state.subjects,
            actions::KILL_SWITCH,
            Action {
                actor: Some(actor.id),
                reason: Some(text),
                ..Default::default()
            },
        )
        .await?;
        Ok(())
    })
    .await?;
    tracing::warn!(actor.id = %actor.id, disabled = body.value, "kill switch for new sessions set");
    Ok(success(StatusCode::OK, config_json(body.value)))
}
