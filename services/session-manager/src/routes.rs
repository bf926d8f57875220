//! The session routes of API.md.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web as aw};
use chrono::{DateTime, Utc};
use db::models::{LiveSession, NewLiveSession};
use db::queries::{config, profiles, sessions};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use domain::ErrorCode;
use domain::rooms::session_room;
use domain::session::{AccessType, EndReason, SessionEvent, SessionStatus, SessionType};
use domain::validate::{PriceCoins, SessionTitle};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use web::openapi::ErrorBody;
use web::{ApiError, AuthUser};

use crate::State;
use crate::api::{self, Empty, Success};
use crate::lifecycle::{self, kinds, session_event, status_of};

/// A session as API.md describes it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Session)]
pub struct SessionView {
    id: Uuid,
    creator_id: Uuid,
    /// 1 to 120 characters.
    title: String,
    #[schema(schema_with = api::session_type_schema)]
    session_type: String,
    #[schema(schema_with = api::access_type_schema)]
    access_type: String,
    /// Pay-per-view only.
    #[schema(required = true)]
    price_coins: Option<i64>,
    #[schema(schema_with = api::session_status_schema)]
    status: String,
    room_name: String,
    /// The session's own stage limit, if it lowered the configured one.
    #[schema(required = true)]
    max_guests: Option<i32>,
    #[serde(serialize_with = "api::millis")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "api::millis_opt")]
    #[schema(required = true)]
    started_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "api::millis_opt")]
    #[schema(required = true)]
    ended_at: Option<DateTime<Utc>>,
    #[schema(schema_with = api::end_reason_schema, required = true)]
    end_reason: Option<String>,
    /// Set while the session is `host_disconnected`.
    #[serde(serialize_with = "api::millis_opt")]
    #[schema(required = true)]
    host_left_at: Option<DateTime<Utc>>,
    viewer_count: i32,
    peak_viewers: i32,
    total_duration_seconds: i64,
    total_messages: i64,
    /// How many gifts.
    total_gifts_received: i64,
    /// How many coins the gifts were worth.
    total_gift_coins: i64,
}

impl From<&LiveSession> for SessionView {
    fn from(s: &LiveSession) -> Self {
        SessionView {
            id: s.id,
            creator_id: s.creator_id,
            title: s.title.clone(),
            session_type: s.session_type.clone(),
            access_type: s.access_type.clone(),
            price_coins: s.price_coins,
            status: s.status.clone(),
            room_name: s.room_name.clone(),
            max_guests: s.max_guests,
            created_at: s.created_at,
            started_at: s.started_at,
            ended_at: s.ended_at,
            end_reason: s.end_reason.clone(),
            host_left_at: s.host_left_at,
            viewer_count: s.viewer_count,
            peak_viewers: s.peak_viewers,
            total_duration_seconds: s.total_duration_seconds,
            total_messages: s.total_messages,
            total_gifts_received: s.total_gifts_received,
            total_gift_coins: s.total_gift_coins,
        }
    }
}

/// `{"session":{...}}`.
#[derive(Serialize, ToSchema)]
pub struct OneSession {
    session: SessionView,
}

impl OneSession {
    fn answer(status: StatusCode, s: &LiveSession) -> HttpResponse {
        web::openapi::ok(status, OneSession { session: s.into() })
    }
}

/// A page of sessions, newest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionPage {
    sessions: Vec<SessionView>,
    /// The `cursor` of the next page; `null` on the last one.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// The caller's profile, or 401 (a valid token naming no profile).
pub(crate) async fn require_profile(
    c: &mut AsyncPgConnection,
    user: Uuid,
) -> Result<db::models::Profile, ApiError> {
    profiles::find(c, user)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown user"))
}

pub(crate) fn not_found() -> ApiError {
    ApiError::new(ErrorCode::SessionNotFound, "session not found")
}

/// `POST /v1/sessions`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSession {
    #[schema(schema_with = api::session_type_schema)]
    session_type: SessionType,
    /// Trimmed; 1 to 120 characters, no NUL.
    #[schema(value_type = String, min_length = 1, max_length = 120, pattern = "^[^\\x00]*$")]
    title: SessionTitle,
    #[schema(schema_with = api::access_type_schema)]
    access_type: AccessType,
    /// Required for `pay_per_view`, refused for the others.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100000)]
    price_coins: Option<PriceCoins>,
    /// Lowers the stage limit (`STAGE_MAX_GUESTS_VIDEO` / `STAGE_MAX_SPEAKERS_AUDIO`).
    #[serde(default)]
    #[schema(minimum = 0)]
    max_guests: Option<i32>,
}

/// Creates a session (a creator only) and its LiveKit room.
#[utoipa::path(
    post,
    path = "/v1/sessions",
    operation_id = "createSession",
    tag = "sessions",
    request_body = CreateSession,
    responses(
        (status = 201, description = "the session, status `created`", body = Success<OneSession>),
        (status = 401, description = api::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the caller is not a creator", body = ErrorBody),
        (status = 409, description = "CONFLICT: the creator already has a session that has not ended", body = ErrorBody),
        (status = 413, description = api::TOO_LARGE, body = ErrorBody),
        (status = 422, description = api::INVALID_INPUT, body = ErrorBody),
        (status = 503, description = "LIVE_DISABLED: operators switched new sessions off", body = ErrorBody),
    ),
)]
pub async fn create(
    user: AuthUser,
    state: aw::Data<State>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.ctx.pool).await?;
    let profile = require_profile(&mut conn, user.0).await?;
    let body: CreateSession = web::extract::from_object(body.into_inner())?;
    api::no_nul("title", body.title.as_str())?;
    if !profile.is_creator {
        return Err(ApiError::forbidden("only creators can go live"));
    }
    let price = match (body.access_type, body.price_coins) {
        (AccessType::PayPerView, Some(p)) => Some(p.get()),
        (AccessType::PayPerView, None) => {
            return Err(ApiError::validation(
                "priceCoins is required for pay_per_view",
            ));
        }
        (_, Some(_)) => return Err(ApiError::validation("priceCoins is only for pay_per_view")),
        (_, None) => None,
    };
    if let Some(g) = body.max_guests {
        let cap = if body.session_type == SessionType::VideoLive {
            state.max_guests_video
        } else {
            state.max_speakers_audio
        };
        if !(0..=cap).contains(&g) {
            return Err(ApiError::validation(format!(
                "maxGuests must be between 0 and {cap}"
            )));
        }
    }
    if config::live_sessions_disabled(&mut conn).await? {
        return Err(ApiError::new(
            ErrorCode::LiveDisabled,
            "new live sessions are switched off for now",
        ));
    }
    if sessions::active_of_creator(&mut conn, user.0)
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(
            "you already have a session that has not ended",
        ));
    }
    let id = Uuid::now_v7();
    let room = session_room(body.session_type, id.into());
    // The room is created explicitly with our timeouts (a room auto-created by the first
    // join would get LiveKit's defaults): nobody joining within the no-show time closes it,
    // and it outlives the host's grace once everyone left, so the grace decides.
    let t = &state.ctx.timings;
    state
        .ctx
        .rooms
        .create_room(
            &room,
            t.no_show.as_secs() as u32,
            (t.host_grace.as_secs() + 30) as u32,
            0,
        )
        .await
        .map_err(|e| ApiError::internal(format!("LiveKit CreateRoom failed: {e}")))?;
    let ctx = &state.ctx;
    let created = conn
        .transaction::<LiveSession, db::DbError, _>(async |c| {
            let s = sessions::insert(
                c,
                &NewLiveSession {
                    id,
                    creator_id: user.0,
                    session_type: body.session_type.as_str(),
                    title: body.title.as_str(),
                    access_type: body.access_type.as_str(),
                    price_coins: price,
                    status: SessionStatus::Created.as_str(),
                    room_name: &room,
                    max_guests: body.max_guests,
                },
            )
            .await?;
            let due = Utc::now() + chrono::Duration::from_std(t.no_show).unwrap_or_default();
            bus::deadlines::schedule(c, kinds::NO_SHOW, id, due, json!({})).await?;
            bus::outbox::enqueue(c, &ctx.subjects, &session_event(&s, "created", "")).await?;
            Ok(s)
        })
        .await;
    let s = match created {
        Ok(s) => s,
        Err(e) => {
            // The room was created for nothing: remove it rather than wait for its timeout.
            lifecycle::delete_room(ctx, &room).await;
            if e.is_unique_violation() {
                return Err(ApiError::conflict(
                    "you already have a session that has not ended",
                ));
            }
            return Err(e.into());
        }
    };
    tracing::info!(session.id = %s.id, room.name = %s.room_name, "session created");
    Ok(OneSession::answer(StatusCode::CREATED, &s))
}

/// One session.
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}",
    operation_id = "getSession",
    tag = "sessions",
    params(("id" = Uuid, Path, description = "the session")),
    responses(
        (status = 200, description = "the session", body = Success<OneSession>),
        (status = 401, description = api::UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = api::SESSION_NOT_FOUND, body = ErrorBody),
        (status = 422, description = api::INVALID_INPUT, body = ErrorBody),
    ),
)]
pub async fn get(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.ctx.pool).await?;
    require_profile(&mut conn, user.0).await?;
    let s = sessions::find(&mut conn, path.into_inner())
        .await?
        .ok_or_else(not_found)?;
    Ok(OneSession::answer(StatusCode::OK, &s))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only sessions of this type.
    #[serde(rename = "type")]
    #[param(schema_with = api::session_type_schema)]
    session_type: Option<SessionType>,
    /// Sessions in this status (default `live`).
    #[param(schema_with = api::session_status_schema)]
    status: Option<SessionStatus>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// Sessions in a status (default `live`), newest first.
#[utoipa::path(
    get,
    path = "/v1/sessions",
    operation_id = "listSessions",
    tag = "sessions",
    params(ListQuery),
    responses(
        (status = 200, description = "a page of sessions", body = Success<SessionPage>),
        (status = 401, description = api::UNAUTHORIZED, body = ErrorBody),
        (status = 422, description = api::INVALID_INPUT, body = ErrorBody),
    ),
)]
pub async fn list(
    user: AuthUser,
    state: aw::Data<State>,
    query: aw::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = web::cursor::limit(q.limit)?;
    let after = q.cursor.as_deref().map(web::cursor::decode).transpose()?;
    let mut conn = db::pool::conn(&state.ctx.pool).await?;
    require_profile(&mut conn, user.0).await?;
    let status = q.status.unwrap_or(SessionStatus::Live);
    let rows = sessions::list(
        &mut conn,
        status.as_str(),
        q.session_type.map(|t| t.as_str()),
        after,
        limit + 1,
    )
    .await?;
    let more = rows.len() as i64 > limit;
    let page: Vec<&LiveSession> = rows.iter().take(limit as usize).collect();
    let next = if more {
        page.last().map(|s| web::cursor::encode(s.created_at, s.id))
    } else {
        None
    };
    Ok(web::openapi::ok(
        StatusCode::OK,
        SessionPage {
            sessions: page.into_iter().map(SessionView::from).collect(),
            next_cursor: next,
        },
    ))
}

/// The caller leaves the session: their participation is marked inactive.
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/leave",
    operation_id = "leaveSession",
    tag = "sessions",
    params(("id" = Uuid, Path, description = "the session")),
    responses(
        (status = 200, description = "left (or was not active)", body = Success<Empty>),
        (status = 401, description = api::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the caller is not a participant", body = ErrorBody),
        (status = 404, description = api::SESSION_NOT_FOUND, body = ErrorBody),
        (status = 422, description = api::INVALID_INPUT, body = ErrorBody),
    ),
)]
pub async fn leave(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let ctx = &state.ctx;
    let mut conn = db::pool::conn(&ctx.pool).await?;
    require_profile(&mut conn, user.0).await?;
    conn.transaction::<Result<(), ApiError>, db::DbError, _>(async |c| {
        let Some(mut s) = sessions::lock(c, id).await? else {
            return Ok(Err(not_found()));
        };
        let Some(p) = sessions::participant(c, id, user.0).await? else {
            return Ok(Err(ApiError::forbidden(
                "you are not a participant of this session",
            )));
        };
        if sessions::deactivate(c, id, user.0).await? && p.is_active {
            s.viewer_count = sessions::active_viewers(c, id).await? as i32;
            sessions::save(c, &s).await?;
            let payload = bus::proto::SessionParticipantChanged {
                session_id: id.to_string(),
                user_id: user.0.to_string(),
                role: p.role.clone(),
                active: false,
                viewer_count: s.viewer_count,
            };
            bus::outbox::enqueue(
                c,
                &ctx.subjects,
                &bus::Event::new(bus::Family::Session, "participant_left", id, &payload),
            )
            .await?;
        }
        Ok(Ok(()))
    })
    .await??;
    Ok(web::openapi::ok(StatusCode::OK, Empty {}))
}

/// Host actions: end, pause, resume.
async fn host_action(
    user: AuthUser,
    state: &State,
    id: Uuid,
    event: SessionEvent,
) -> Result<HttpResponse, ApiError> {
    let ctx = &state.ctx;
    let mut conn = db::pool::conn(&ctx.pool).await?;
    require_profile(&mut conn, user.0).await?;
    let outcome = conn
        .transaction::<Result<(LiveSession, bool), ApiError>, db::DbError, _>(async |c| {
            let Some(mut s) = sessions::lock(c, id).await? else {
                return Ok(Err(not_found()));
            };
            if s.creator_id != user.0 {
                return Ok(Err(ApiError::forbidden("only the host can do this")));
            }
            match lifecycle::apply(c, ctx, &mut s, event, Utc::now()).await {
                Ok(result) => {
                    let ended = result?;
                    Ok(Ok((s, ended)))
                }
                Err(refused) => Ok(Err(ApiError::new(
                    ErrorCode::InvalidTransition,
                    format!(
                        "cannot {} a session that is {}",
                        refused.event,
                        status_of(&s).as_str()
                    ),
                ))),
            }
        })
        .await??;
    let (s, ended) = outcome;
    if ended {
        lifecycle::delete_room(ctx, &s.room_name).await;
    }
    Ok(OneSession::answer(StatusCode::OK, &s))
}

/// Ends the session (`host_ended`) and deletes its LiveKit room.
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/end",
    operation_id = "endSession",
    tag = "sessions",
    params(("id" = Uuid, Path, description = "the session")),
    responses(
        (status = 200, description = "the session, `ended`", body = Success<OneSession>),
        (status = 401, description = api::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = api::NOT_HOST, body = ErrorBody),
        (status = 404, description = api::SESSION_NOT_FOUND, body = ErrorBody),
        (status = 409, description = api::TRANSITION, body = ErrorBody),
        (status = 422, description = api::INVALID_INPUT, body = ErrorBody),
    ),
)]
pub async fn end(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    host_action(
        user,
        &state,
        path.into_inner(),
        SessionEvent::End(EndReason::HostEnded),
    )
    .await
}

/// `live` → `paused`.
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/pause",
    operation_id = "pauseSession",
    tag = "sessions",
    params(("id" = Uuid, Path, description = "the session")),
    responses(
        (status = 200, description = "the session, `paused`", body = Success<OneSession>),
        (status = 401, description = api::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = api::NOT_HOST, body = ErrorBody),
        (status = 404, description = api::SESSION_NOT_FOUND, body = ErrorBody),
        (status = 409, description = api::TRANSITION, body = ErrorBody),
        (status = 422, description = api::INVALID_INPUT, body = ErrorBody),
    ),
)]
pub async fn pause(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    host_action(user, &state, path.into_inner(), SessionEvent::Pause).await
}

/// `paused` → `live`.
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/resume",
    operation_id = "resumeSession",
    tag = "sessions",
    params(("id" = Uuid, Path, description = "the session")),
    responses(
        (status = 200, description = "the session, `live`", body = Success<OneSession>),
        (status = 401, description = api::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = api::NOT_HOST, body = ErrorBody),
        (status = 404, description = api::SESSION_NOT_FOUND, body = ErrorBody),
        (status = 409, description = api::TRANSITION, body = ErrorBody),
        (status = 422, description = api::INVALID_INPUT, body = ErrorBody),
    ),
)]
pub async fn resume(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    host_action(user, &state, path.into_inner(), SessionEvent::Resume).await
}
