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
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;
use web::error::success;
use web::{ApiError, AuthUser};

use crate::State;
use crate::lifecycle::{self, kinds, session_event, status_of};

/// The session as API.md describes it.
pub fn session_json(s: &LiveSession) -> Value {
    let ts = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    json!({
        "id": s.id,
        "creatorId": s.creator_id,
        "title": s.title,
        "sessionType": s.session_type,
        "accessType": s.access_type,
        "priceCoins": s.price_coins,
        "status": s.status,
        "roomName": s.room_name,
        "maxGuests": s.max_guests,
        "createdAt": ts(Some(s.created_at)),
        "startedAt": ts(s.started_at),
        "endedAt": ts(s.ended_at),
        "endReason": s.end_reason,
        "hostLeftAt": ts(s.host_left_at),
        "viewerCount": s.viewer_count,
        "peakViewers": s.peak_viewers,
        "totalDurationSeconds": s.total_duration_seconds,
        "totalMessages": s.total_messages,
        "totalGiftsReceived": s.total_gifts_received,
        "totalGiftCoins": s.total_gift_coins,
    })
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSession {
    session_type: SessionType,
    title: SessionTitle,
    access_type: AccessType,
    #[serde(default)]
    price_coins: Option<PriceCoins>,
    #[serde(default)]
    max_guests: Option<i32>,
}

pub async fn create(
    user: AuthUser,
    state: aw::Data<State>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.ctx.pool).await?;
    let profile = require_profile(&mut conn, user.0).await?;
    let body: CreateSession = web::extract::from_object(body.into_inner())?;
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
    Ok(success(
        StatusCode::CREATED,
        json!({ "session": session_json(&s) }),
    ))
}

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
    Ok(success(
        StatusCode::OK,
        json!({ "session": session_json(&s) }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(rename = "type")]
    session_type: Option<SessionType>,
    status: Option<SessionStatus>,
    limit: Option<i64>,
    cursor: Option<String>,
}

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
    Ok(success(
        StatusCode::OK,
        json!({ "sessions": page.iter().map(|s| session_json(s)).collect::<Vec<_>>(), "nextCursor": next }),
    ))
}

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
    Ok(success(StatusCode::OK, json!({})))
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
    Ok(success(
        StatusCode::OK,
        json!({ "session": session_json(&s) }),
    ))
}

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

pub async fn pause(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    host_action(user, &state, path.into_inner(), SessionEvent::Pause).await
}

pub async fn resume(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    host_action(user, &state, path.into_inner(), SessionEvent::Resume).await
}
