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
use domain::roles::Role;
use domain::session::{AccessType, EndReason, SessionStatus, SessionType};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::openapi::schema::Schema;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use web::openapi::{ErrorBody, Success, nullable_wire_enum, ok, wire_enum};
use web::{ApiError, AuthUser};

use crate::State;
use crate::authz;
use crate::events::{self, Action, actions};
use crate::routes::{
    self, CreatorBanView, ReportBody, ReportView, SessionBanView, Wait, reason, ts, ts_opt,
};

pub(crate) fn session_status_schema() -> Schema {
    wire_enum(SessionStatus::WIRE_NAMES)
}

fn session_filter_schema() -> Schema {
    wire_enum(&[SessionStatus::WIRE_NAMES, &["active"]].concat())
}

fn session_type_schema() -> Schema {
    wire_enum(SessionType::WIRE_NAMES)
}

fn access_type_schema() -> Schema {
    wire_enum(AccessType::WIRE_NAMES)
}

fn end_reason_schema() -> Schema {
    nullable_wire_enum(EndReason::WIRE_NAMES)
}

fn room_role_schema() -> Schema {
    wire_enum(Role::WIRE_NAMES)
}

/// `profiles.role` (the main app's column; `admin` and `ops` are operators).
fn profile_role_schema() -> Schema {
    nullable_wire_enum(&["user", "admin", "ops"])
}

fn report_action_schema() -> Schema {
    wire_enum(ReportAction::WIRE_NAMES)
}

fn report_status_schema() -> Schema {
    wire_enum(ReportStatus::WIRE_NAMES)
}

/// A session as the operators see it (API.md's session fields plus the creator's name, the
/// participant count and the time it has been running).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpsSession {
    id: Uuid,
    creator_id: Uuid,
    /// `null` where the answer does not look it up (terminate).
    creator_username: Option<String>,
    title: String,
    #[schema(schema_with = session_type_schema)]
    session_type: String,
    #[schema(schema_with = access_type_schema)]
    access_type: String,
    /// Pay-per-view only.
    price_coins: Option<i64>,
    #[schema(schema_with = session_status_schema)]
    status: String,
    room_name: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    started_at: Option<String>,
    #[schema(format = DateTime)]
    ended_at: Option<String>,
    #[schema(schema_with = end_reason_schema)]
    end_reason: Option<String>,
    /// While `host_disconnected`.
    #[schema(format = DateTime)]
    host_left_at: Option<String>,
    #[schema(format = DateTime)]
    last_activity_at: String,
    viewer_count: i32,
    peak_viewers: i32,
    /// Active participants, the host included while connected; `null` where the answer does
    /// not count them (terminate).
    participant_count: Option<i64>,
    /// Since it started, until it ended or now.
    duration_seconds: i64,
    total_duration_seconds: i64,
    total_messages: i64,
    total_gifts_received: i64,
    total_gift_coins: i64,
}

impl OpsSession {
    fn of(s: &LiveSession, creator: Option<&str>, participants: Option<i64>) -> Self {
        let until = s.ended_at.unwrap_or_else(Utc::now);
        let duration = s
            .started_at
            .map(|st| (until - st).num_seconds().max(0))
            .unwrap_or(0);
        OpsSession {
            id: s.id,
            creator_id: s.creator_id,
            creator_username: creator.map(str::to_owned),
            title: s.title.clone(),
            session_type: s.session_type.clone(),
            access_type: s.access_type.clone(),
            price_coins: s.price_coins,
            status: s.status.clone(),
            room_name: s.room_name.clone(),
            created_at: ts(s.created_at),
            started_at: ts_opt(s.started_at),
            ended_at: ts_opt(s.ended_at),
            end_reason: s.end_reason.clone(),
            host_left_at: ts_opt(s.host_left_at),
            last_activity_at: ts(s.last_activity_at),
            viewer_count: s.viewer_count,
            peak_viewers: s.peak_viewers,
            participant_count: participants,
            duration_seconds: duration,
            total_duration_seconds: s.total_duration_seconds,
            total_messages: s.total_messages,
            total_gifts_received: s.total_gifts_received,
            total_gift_coins: s.total_gift_coins,
        }
    }
}

/// A page of sessions, newest first, and the viewers on it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpsSessionPage {
    sessions: Vec<OpsSession>,
    /// The `cursor` of the next page; `null` on the last one.
    next_cursor: Option<String>,
    /// `viewerCount` summed over this page.
    total_viewers: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionsQuery {
    /// A session status, or `active` (every non-ended one, the default).
    #[param(schema_with = session_filter_schema)]
    status: Option<String>,
    /// Page size (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /v1/ops/sessions`: sessions with their creator, type, participant count, duration.
#[utoipa::path(
    get,
    path = "/v1/ops/sessions",
    tag = "ops",
    params(SessionsQuery),
    responses(
        (status = 200, description = "A page of sessions", body = Success<OpsSessionPage>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 422, description = "Bad query: unknown parameter or status, limit out of range, a cursor not ours", body = ErrorBody),
    )
)]
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
    let sessions = page
        .iter()
        .map(|o| {
            OpsSession::of(
                &o.session,
                Some(&o.creator_username),
                Some(o.participant_count),
            )
        })
        .collect();
    let viewers: i64 = page.iter().map(|o| i64::from(o.session.viewer_count)).sum();
    Ok(ok(
        StatusCode::OK,
        OpsSessionPage {
            sessions,
            next_cursor: next,
            total_viewers: viewers,
        },
    ))
}

/// Someone who has been in the session.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpsParticipant {
    user_id: Uuid,
    username: String,
    #[schema(schema_with = room_role_schema)]
    role: String,
    is_active: bool,
    #[schema(format = DateTime)]
    first_joined_at: Option<String>,
    #[schema(format = DateTime)]
    joined_at: Option<String>,
    #[schema(format = DateTime)]
    left_at: Option<String>,
}

/// A chat message; the text of a deleted one is `null`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpsMessage {
    id: Uuid,
    user_id: Uuid,
    body: Option<String>,
    deleted: bool,
    deleted_by: Option<Uuid>,
    #[schema(format = DateTime)]
    created_at: String,
}

/// The session's counters.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpsSessionStats {
    active_participants: i64,
    unique_participants: usize,
    viewer_count: i32,
    peak_viewers: i32,
    total_messages: i64,
    total_gifts_received: i64,
    total_gift_coins: i64,
    duration_seconds: i64,
}

/// One session in detail: participants, stats, the last 50 chat messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpsSessionDetail {
    session: OpsSession,
    participants: Vec<OpsParticipant>,
    stats: OpsSessionStats,
    messages: Vec<OpsMessage>,
}

/// `GET /v1/ops/sessions/{id}`: participants, stats, recent chat.
#[utoipa::path(
    get,
    path = "/v1/ops/sessions/{id}",
    tag = "ops",
    params(("id" = Uuid, Path, description = "The session")),
    responses(
        (status = 200, description = "The session in detail", body = Success<OpsSessionDetail>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 404, description = "`SESSION_NOT_FOUND`", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    )
)]
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
    let participants = people
        .iter()
        .map(|(p, name)| OpsParticipant {
            user_id: p.user_id,
            username: name.clone(),
            role: p.role.clone(),
            is_active: p.is_active,
            first_joined_at: ts_opt(p.first_joined_at),
            joined_at: ts_opt(p.joined_at),
            left_at: ts_opt(p.left_at),
        })
        .collect();
    let chat = messages
        .iter()
        .map(|m| OpsMessage {
            id: m.id,
            user_id: m.user_id,
            body: m.deleted_at.is_none().then(|| m.body.clone()),
            deleted: m.deleted_at.is_some(),
            deleted_by: m.deleted_by,
            created_at: ts(m.created_at),
        })
        .collect();
    let detail = OpsSession::of(
        &s,
        creator.as_ref().map(|c| c.username.as_str()),
        Some(active),
    );
    let stats = OpsSessionStats {
        active_participants: active,
        unique_participants: people.len(),
        viewer_count: s.viewer_count,
        peak_viewers: s.peak_viewers,
        total_messages: s.total_messages,
        total_gifts_received: s.total_gifts_received,
        total_gift_coins: s.total_gift_coins,
        duration_seconds: detail.duration_seconds,
    };
    Ok(ok(
        StatusCode::OK,
        OpsSessionDetail {
            session: detail,
            participants,
            stats,
            messages: chat,
        },
    ))
}

/// The session after a termination request, and whether it has ended yet.
#[derive(Debug, Serialize, ToSchema)]
pub struct Terminated {
    session: OpsSession,
    terminated: bool,
}

/// Terminate: session-manager owns the session, so moderation publishes
/// `moderation.terminated` and session-manager ends it (`admin_terminated`) and deletes its
/// room. The answer waits for that, bounded: 200 with the ended session, or 202 with the
/// session as it still is when session-manager has not applied it in time (it will: the
/// event is durable).
#[utoipa::path(
    post,
    path = "/v1/ops/sessions/{id}/terminate",
    tag = "ops",
    params(("id" = Uuid, Path, description = "The session")),
    responses(
        (status = 200, description = "Ended, `admin_terminated`", body = Success<Terminated>),
        (status = 202, description = "Requested; session-manager has not applied it yet", body = Success<Terminated>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 404, description = "`SESSION_NOT_FOUND`", body = ErrorBody),
        (status = 409, description = "`INVALID_TRANSITION`: already ended", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    )
)]
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
    Ok(ok(
        status,
        Terminated {
            session: OpsSession::of(&latest, None, None),
            terminated: ended,
        },
    ))
}

/// `POST /v1/ops/participants/{sessionId}/{userId}/kick`: as the host's kick, for any session.
#[utoipa::path(
    post,
    path = "/v1/ops/participants/{sessionId}/{userId}/kick",
    tag = "ops",
    params(
        ("sessionId" = Uuid, Path, description = "The session"),
        ("userId" = Uuid, Path, description = "The participant"),
    ),
    responses(
        (status = 200, description = "Removed from the LiveKit room", body = Success<routes::Kicked>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 404, description = "`SESSION_NOT_FOUND`, or `NOT_FOUND`: the user is not in the room", body = ErrorBody),
        (status = 422, description = "An id is not a UUID, or the host themselves", body = ErrorBody),
    )
)]
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

/// How long, and why (at most 500 characters; blank = no reason).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GlobalBanRequest {
    #[schema(minimum = 1, maximum = 87600)]
    hours: i64,
    #[serde(default)]
    #[schema(max_length = 500)]
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

/// A user and their global ban.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpsUser {
    id: Uuid,
    username: String,
    #[schema(schema_with = profile_role_schema)]
    role: Option<String>,
    /// `null` or past: not banned.
    #[schema(format = DateTime)]
    banned_until: Option<String>,
}

impl From<&db::models::Profile> for OpsUser {
    fn from(p: &db::models::Profile) -> Self {
        OpsUser {
            id: p.id,
            username: p.username.clone(),
            role: p.role.clone(),
            banned_until: ts_opt(p.banned_until),
        }
    }
}

/// `{"user":{...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpsUserBody {
    user: OpsUser,
}

/// The banned user, and out of how many session rooms LiveKit confirmed their removal.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GloballyBanned {
    user: OpsUser,
    removed_from_rooms: usize,
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

/// `POST /v1/ops/users/{userId}/ban`: a global ban (`profiles.banned_until`), out of every
/// room they are in.
#[utoipa::path(
    post,
    path = "/v1/ops/users/{userId}/ban",
    tag = "ops",
    params(("userId" = Uuid, Path, description = "The user")),
    request_body = GlobalBanRequest,
    responses(
        (status = 200, description = "Banned", body = Success<GloballyBanned>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Bad path or body, hours out of range, or the caller themselves", body = ErrorBody),
    )
)]
pub async fn global_ban(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let target = path.into_inner();
    let mut conn = db::pool::conn(&state.pool).await?;
    let actor = authz::operator(&mut conn, user).await?;
    let body: GlobalBanRequest = web::extract::from_object(body.into_inner())?;
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
    Ok(ok(
        StatusCode::OK,
        GloballyBanned {
            user: (&p).into(),
            removed_from_rooms: removed,
        },
    ))
}

/// `DELETE /v1/ops/users/{userId}/ban`: lifts a global ban.
#[utoipa::path(
    delete,
    path = "/v1/ops/users/{userId}/ban",
    tag = "ops",
    params(("userId" = Uuid, Path, description = "The user")),
    responses(
        (status = 200, description = "Lifted", body = Success<OpsUserBody>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 404, description = "No such user, or not banned", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    )
)]
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
    Ok(ok(StatusCode::OK, OpsUserBody { user: (&p).into() }))
}

/// A global ban in force.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GlobalBanView {
    user_id: Uuid,
    username: String,
    #[schema(format = DateTime)]
    banned_until: String,
}

/// Every kind of ban in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct AllBans {
    global: Vec<GlobalBanView>,
    session: Vec<SessionBanView>,
    creator: Vec<CreatorBanView>,
}

/// `{"bans":{"global","session","creator"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AllBansBody {
    bans: AllBans,
}

/// `GET /v1/ops/bans`: every kind of ban in force, newest first (at most 100 of each): the
/// dashboard's Bans page.
#[utoipa::path(
    get,
    path = "/v1/ops/bans",
    tag = "ops",
    responses(
        (status = 200, description = "The bans", body = Success<AllBansBody>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
    )
)]
pub async fn bans(user: AuthUser, state: aw::Data<State>) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    authz::operator(&mut conn, user).await?;
    let global = mq::globally_banned(&mut conn, 100)
        .await?
        .into_iter()
        .map(|(user_id, username, until)| GlobalBanView {
            user_id,
            username,
            banned_until: ts(until),
        })
        .collect();
    let session = mq::recent_session_bans(&mut conn, 100)
        .await?
        .iter()
        .map(SessionBanView::from)
        .collect();
    let creator = mq::recent_creator_bans(&mut conn, 100)
        .await?
        .iter()
        .map(CreatorBanView::from)
        .collect();
    Ok(ok(
        StatusCode::OK,
        AllBansBody {
            bans: AllBans {
                global,
                session,
                creator,
            },
        },
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportsQuery {
    /// Reports in this status (default `pending`).
    #[param(schema_with = report_status_schema)]
    status: Option<ReportStatus>,
    /// Page size (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// A page of reports, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportPage {
    reports: Vec<ReportView>,
    /// The `cursor` of the next page; `null` on the last one.
    next_cursor: Option<String>,
}

/// `GET /v1/ops/reports`: the reports queue.
#[utoipa::path(
    get,
    path = "/v1/ops/reports",
    tag = "ops",
    params(ReportsQuery),
    responses(
        (status = 200, description = "A page of reports", body = Success<ReportPage>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 422, description = "Bad query: unknown parameter or status, limit out of range, a cursor not ours", body = ErrorBody),
    )
)]
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
    Ok(ok(
        StatusCode::OK,
        ReportPage {
            reports: page.into_iter().map(ReportView::from).collect(),
            next_cursor: next,
        },
    ))
}

/// The decision: `ban` takes the ban's `hours`, the others none.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    #[schema(schema_with = report_action_schema)]
    action: ReportAction,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 87600)]
    hours: Option<i64>,
}

/// `POST /v1/ops/reports/{id}/resolve`: dismiss, warn or ban.
#[utoipa::path(
    post,
    path = "/v1/ops/reports/{id}/resolve",
    tag = "ops",
    params(("id" = Uuid, Path, description = "The report")),
    request_body = ResolveRequest,
    responses(
        (status = 200, description = "The resolved report", body = Success<ReportBody>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 404, description = "No such report", body = ErrorBody),
        (status = 409, description = "`INVALID_TRANSITION`: already resolved", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Bad path or body; `hours` missing for a ban or given for anything else", body = ErrorBody),
    )
)]
pub async fn resolve(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let mut conn = db::pool::conn(&state.pool).await?;
    let actor = authz::operator(&mut conn, user).await?;
    let body: ResolveRequest = web::extract::from_object(body.into_inner())?;
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
    Ok(ok(
        StatusCode::OK,
        ReportBody {
            report: (&outcome).into(),
        },
    ))
}

/// The operators' switches.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpsConfig {
    /// The kill switch: new sessions refused with `503 LIVE_DISABLED`.
    live_sessions_disabled: bool,
}

/// `{"config":{...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpsConfigBody {
    config: OpsConfig,
}

fn config_body(disabled: bool) -> OpsConfigBody {
    OpsConfigBody {
        config: OpsConfig {
            live_sessions_disabled: disabled,
        },
    }
}

/// `GET /v1/ops/config`: the switches as they are.
#[utoipa::path(
    get,
    path = "/v1/ops/config",
    tag = "ops",
    responses(
        (status = 200, description = "The switches", body = Success<OpsConfigBody>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
    )
)]
pub async fn get_config(user: AuthUser, state: aw::Data<State>) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    authz::operator(&mut conn, user).await?;
    let disabled = config::live_sessions_disabled(&mut conn).await?;
    Ok(ok(StatusCode::OK, config_body(disabled)))
}

/// `true`: new sessions are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchRequest {
    value: bool,
}

/// `PUT /v1/ops/config/live-sessions-disabled`: the kill switch (applies to the next request).
#[utoipa::path(
    put,
    path = "/v1/ops/config/live-sessions-disabled",
    tag = "ops",
    request_body = SwitchRequest,
    responses(
        (status = 200, description = "The switches after the change", body = Success<OpsConfigBody>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Bad body", body = ErrorBody),
    )
)]
pub async fn kill_switch(
    user: AuthUser,
    state: aw::Data<State>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    let actor = authz::operator(&mut conn, user).await?;
    let body: SwitchRequest = web::extract::from_object(body.into_inner())?;
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
    Ok(ok(StatusCode::OK, config_body(body.value)))
}
