//! The stage: the host invites a current viewer or answers a viewer's request; a guest goes
//! on stage as co-host (video) or speaker (audio room) with LiveKit permissions changed live,
//! and comes off it when the host or the guest ends the turn, or the guest leaves the room.
//!
//! Rules come from `domain::stage`. Every change happens under the session's row lock, so
//! the guest count read before a promotion cannot change before it commits, however many
//! approvals arrive at once. The order of a promotion is: decide (state, limit) in the
//! transaction, ask LiveKit to grant publishing (read-modify-write, retried briefly), and
//! write the role only once LiveKit accepted; so the database never claims a role the room
//! does not give. A demotion revokes in LiveKit first for the same reason. Each change writes
//! its `session.guest_*` event (`GuestChanged`) through the outbox in its transaction.
//!
//! Simplifications, on purpose: a guest who leaves the room (a real departure, not a
//! `DUPLICATE_IDENTITY` replacement) loses the stage at once; when the session ends its pending
//! invitations and requests are cancelled (`guest_expired` with status `cancelled`) and the
//! guests' roles stay as the record of who was on stage (the room is gone).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web as aw};
use bus::{Event, Family, proto};
use chrono::{DateTime, Utc};
use db::models::{DeadlineRow, LiveSession, NewStageRequest, StageRequest};
use db::queries::{sessions, stage};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use domain::ErrorCode;
use domain::roles::{Role, audience_role, grants, stage_role};
use domain::session::SessionType;
use domain::stage::{Actor, StageEvent, StageKind, StageStatus};
use livekit::RoomError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;
use web::openapi::ErrorBody;
use web::{ApiError, AuthUser};

use crate::State;
use crate::api::{self, Success};
use crate::lifecycle::{Ctx, TxResult, kinds, status_of};
use crate::routes::{not_found as session_not_found, require_profile};

/// LiveKit gets this many tries for one permission change...
const LIVEKIT_ATTEMPTS: u32 = 3;
/// ...waiting this long after the first and the second failure...
const LIVEKIT_BACKOFF: [Duration; 2] = [Duration::from_millis(150), Duration::from_millis(450)];
/// ...and all of it within this budget, so the host hears back in under 3 s.
const LIVEKIT_BUDGET: Duration = Duration::from_millis(2500);
/// What muting one track of a guest being demoted may take.
const MUTE_TIMEOUT: Duration = Duration::from_millis(500);

/// An invitation or request as API.md describes it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StageRequest)]
pub struct RequestView {
    id: Uuid,
    session_id: Uuid,
    /// The invited user, or the one asking.
    user_id: Uuid,
    #[schema(schema_with = api::stage_status_schema)]
    status: String,
    #[serde(serialize_with = "api::millis")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "api::millis")]
    expires_at: DateTime<Utc>,
}

impl From<&StageRequest> for RequestView {
    fn from(r: &StageRequest) -> Self {
        RequestView {
            id: r.id,
            session_id: r.session_id,
            user_id: r.user_id,
            status: r.status.clone(),
            created_at: r.created_at,
            expires_at: r.expires_at,
        }
    }
}

/// `{"invitation":{...}}`.
#[derive(Serialize, ToSchema)]
pub struct OneInvitation {
    invitation: RequestView,
}

/// `{"request":{...}}`.
#[derive(Serialize, ToSchema)]
pub struct OneRequest {
    request: RequestView,
}

/// Where a guest whose turn ended stands now.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Guest)]
pub struct GuestView {
    session_id: Uuid,
    user_id: Uuid,
    /// Back in the audience: `viewer` or `listener`.
    #[schema(schema_with = api::audience_role_schema)]
    role: &'static str,
}

/// `{"guest":{...}}`.
#[derive(Serialize, ToSchema)]
pub struct OneGuest {
    guest: GuestView,
}

fn session_type(s: &LiveSession) -> SessionType {
    s.session_type.parse().unwrap_or(SessionType::VideoLive)
}

fn kind_of(r: &StageRequest) -> StageKind {
    r.kind.parse().unwrap_or(StageKind::Request)
}

fn status_of_request(r: &StageRequest) -> StageStatus {
    r.status.parse().unwrap_or(StageStatus::Cancelled)
}

fn guest_event(
    session: Uuid,
    request: Option<Uuid>,
    user: Uuid,
    kind: &str,
    status: &str,
    role: Role,
    name: &str,
) -> Event {
    let payload = proto::GuestChanged {
        session_id: session.to_string(),
        request_id: request.map(|r| r.to_string()).unwrap_or_default(),
        user_id: user.to_string(),
        kind: kind.to_owned(),
        status: status.to_owned(),
        role: role.as_str().to_owned(),
    };
    metrics::counter!("stage_changes_total", "event" => name.to_owned()).increment(1);
    Event::new(Family::Session, name, session, &payload)
}

/// Writes the event of `r`'s current status.
async fn publish_request(
    c: &mut AsyncPgConnection,
    ctx: &Ctx,
    r: &StageRequest,
    session_type: SessionType,
) -> TxResult<()> {
    let (kind, status) = (kind_of(r), status_of_request(r));
    let name = domain::stage::event_name(kind, status);
    let role = domain::stage::role_after(session_type, status);
    let event = guest_event(
        r.session_id,
        Some(r.id),
        r.user_id,
        kind.as_str(),
        status.as_str(),
        role,
        name,
    );
    bus::outbox::enqueue(c, &ctx.subjects, &event).await?;
    tracing::info!(session.id = %r.session_id, stage.request_id = %r.id, user.id = %r.user_id, "stage {name}");
    Ok(())
}

/// Moves `r` (locked) to `to`, cancels its deadline and writes its event.
async fn settle(
    c: &mut AsyncPgConnection,
    ctx: &Ctx,
    r: &StageRequest,
    to: StageStatus,
    session_type: SessionType,
) -> TxResult<StageRequest> {
    let r = stage::set_status(c, r.id, to.as_str(), Utc::now()).await?;
    bus::deadlines::cancel(c, kinds::STAGE_EXPIRE, r.id).await?;
    publish_request(c, ctx, &r, session_type).await?;
    Ok(r)
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidTransition, message)
}

/// LiveKit did not apply a permission change after the retries: nothing was changed, the
/// host (or guest) may try again. 503 with `INTERNAL_ERROR` (API.md has no code for an
/// unavailable media server; this one is the retryable "try again" code) and `Retry-After`.
fn livekit_failed(e: &RoomError) -> ApiError {
    tracing::warn!(error = %e, "LiveKit refused or missed a permission change");
    metrics::counter!("stage_livekit_failures_total").increment(1);
    let mut err = ApiError::new(
        ErrorCode::InternalError,
        "LiveKit did not apply the permission change; nothing was changed, try again",
    )
    .with_status(503);
    err.retry_after = Some(1);
    err
}

/// Runs one LiveKit operation, retrying what is worth retrying (unreachable, 5xx) with a
/// short backoff, all within [`LIVEKIT_BUDGET`].
async fn with_retries<T, F>(mut op: impl FnMut() -> F) -> Result<T, RoomError>
where
    F: std::future::Future<Output = Result<T, RoomError>>,
{
    let deadline = tokio::time::Instant::now() + LIVEKIT_BUDGET;
    let mut attempt = 0;
    loop {
        let result = match tokio::time::timeout_at(deadline, op()).await {
            Ok(r) => r,
            Err(_) => Err(RoomError::Unavailable("no answer within the budget".into())),
        };
        match result {
            Err(RoomError::Unavailable(why)) if attempt + 1 < LIVEKIT_ATTEMPTS => {
                let pause = LIVEKIT_BACKOFF[attempt as usize];
                if tokio::time::Instant::now() + pause >= deadline {
                    return Err(RoomError::Unavailable(why));
                }
                tracing::debug!(attempt, error = %why, "LiveKit unavailable; retrying");
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// Gives `user` the publish rights of `role` in the room (the role's grants, bounded by the
/// room's media). `Ok(false)` when the user is not in the room.
async fn grant_in_livekit(
    ctx: &Ctx,
    s: &LiveSession,
    user: Uuid,
    role: Role,
) -> Result<bool, RoomError> {
    let g = grants(role, session_type(s).media());
    let sources: Vec<&str> = g.can_publish_sources.iter().map(|s| s.as_str()).collect();
    let identity = user.to_string();
    let p = with_retries(|| {
        livekit::set_publishing(ctx.rooms.as_ref(), &s.room_name, &identity, &sources)
    })
    .await?;
    Ok(p.is_some())
}

/// Takes publishing away from `user`: mutes their published tracks first (a client that
/// misses the unpublish stops sending anyway), then revokes, which unpublishes them. A user
/// not in the room has nothing to revoke.
async fn revoke_in_livekit(ctx: &Ctx, s: &LiveSession, user: Uuid) -> Result<(), RoomError> {
    let identity = user.to_string();
    let current = with_retries(|| ctx.rooms.get_participant(&s.room_name, &identity)).await?;
    let Some(current) = current.filter(|p| p.permission.can_publish || !p.tracks.is_empty()) else {
        return Ok(()); // not in the room, or nothing to take away
    };
    for t in current.tracks.iter().filter(|t| !t.muted) {
        // Best effort and brief (the session stays locked meanwhile): the revocation below
        // unpublishes the track anyway.
        let mute = ctx
            .rooms
            .mute_published_track(&s.room_name, &identity, &t.sid, true);
        match tokio::time::timeout(MUTE_TIMEOUT, mute).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(track.sid = %t.sid, error = %e, "could not mute a guest's track")
            }
            Err(_) => tracing::debug!(track.sid = %t.sid, "muting a guest's track timed out"),
        }
    }
    with_retries(|| livekit::set_publishing(ctx.rooms.as_ref(), &s.room_name, &identity, &[]))
        .await?;
    Ok(())
}

/// How many more guests fit on the (locked) session's stage.
async fn has_room(c: &mut AsyncPgConnection, state: &State, s: &LiveSession) -> TxResult<bool> {
    let t = session_type(s);
    let limit = domain::stage::limit(
        t,
        s.max_guests,
        state.max_guests_video,
        state.max_speakers_audio,
    );
    let on_stage = stage::count_with_role(c, s.id, stage_role(t).as_str()).await?;
    Ok(domain::stage::has_room(on_stage, limit))
}

fn stage_full() -> ApiError {
    ApiError::conflict("the stage is full")
}

fn stage_closed(s: &LiveSession) -> ApiError {
    invalid(format!(
        "the stage is closed while the session is {}",
        status_of(s).as_str()
    ))
}

/// Creates a pending invitation or request (the session locked and every rule checked).
async fn open_request(
    c: &mut AsyncPgConnection,
    ctx: &Ctx,
    state: &State,
    s: &LiveSession,
    user: Uuid,
    kind: StageKind,
    by: Uuid,
) -> TxResult<Result<StageRequest, ApiError>> {
    if stage::pending_of(c, s.id, user).await?.is_some() {
        return Ok(Err(ApiError::conflict(
            "there is already a pending invitation or request for this user",
        )));
    }
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(state.stage_ttl).unwrap_or(chrono::Duration::seconds(60));
    let r = stage::insert(
        c,
        &NewStageRequest {
            id: Uuid::now_v7(),
            session_id: s.id,
            user_id: user,
            kind: kind.as_str(),
            created_by: by,
            created_at: now,
            expires_at: now + ttl,
        },
    )
    .await?;
    bus::deadlines::schedule(c, kinds::STAGE_EXPIRE, r.id, r.expires_at, json!({})).await?;
    publish_request(c, ctx, &r, session_type(s)).await?;
    Ok(Ok(r))
}

/// A unique violation of `stage_requests_one_pending` (two at once) is the same 409.
fn map_db(e: db::DbError) -> ApiError {
    if e.is_unique_violation() {
        ApiError::conflict("there is already a pending invitation or request for this user")
    } else {
        e.into()
    }
}

/// Whom the host invites.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InviteBody {
    /// A current viewer of the session.
    user_id: Uuid,
}

/// `POST /v1/sessions/{id}/guests/invite` — the host invites a current viewer.
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/guests/invite",
    operation_id = "inviteGuest",
    tag = "stage",
    params(("id" = Uuid, Path, description = "the session")),
    request_body = InviteBody,
    responses(
        (status = 201, description = "the invitation, `pending`", body = Success<OneInvitation>),
        (status = 401, description = api::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = api::NOT_HOST, body = ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND: no such session; NOT_FOUND: the user is not a current viewer", body = ErrorBody),
        (status = 409, description = "CONFLICT: the stage is full, the user is on it or has a pending invitation or request; INVALID_TRANSITION: the stage is closed", body = ErrorBody),
        (status = 413, description = api::TOO_LARGE, body = ErrorBody),
        (status = 422, description = api::INVALID_INPUT, body = ErrorBody),
    ),
)]
pub async fn invite(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let ctx = &state.ctx;
    let mut conn = db::pool::conn(&ctx.pool).await?;
    require_profile(&mut conn, user.0).await?;
    let body: InviteBody = web::extract::from_object(body.into_inner())?;
    let target = body.user_id;
    let r = conn
        .transaction::<Result<StageRequest, ApiError>, db::DbError, _>(async |c| {
            let Some(s) = sessions::lock(c, id).await? else {
                return Ok(Err(session_not_found()));
            };
            if s.creator_id != user.0 {
                return Ok(Err(ApiError::forbidden("only the host can invite guests")));
            }
            if !domain::stage::stage_open(status_of(&s)) {
                return Ok(Err(stage_closed(&s)));
            }
            if target == s.creator_id {
                return Ok(Err(ApiError::conflict("the host is on stage already")));
            }
            let Some(p) = sessions::participant(c, id, target)
                .await?
                .filter(|p| p.is_active)
            else {
                return Ok(Err(ApiError::not_found(
                    "this user is not a current viewer of the session",
                )));
            };
            if p.role == stage_role(session_type(&s)).as_str() {
                return Ok(Err(ApiError::conflict("this user is on stage already")));
            }
            if !has_room(c, &state, &s).await? {
                return Ok(Err(stage_full()));
            }
            open_request(c, ctx, &state, &s, target, StageKind::Invitation, user.0).await
        })
        .await
        .map_err(map_db)??;
    Ok(web::openapi::ok(
        StatusCode::CREATED,
        OneInvitation {
            invitation: (&r).into(),
        },
    ))
}

/// `POST /v1/sessions/{id}/guests/requests` — a current viewer asks for the stage.
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/guests/requests",
    operation_id = "requestStage",
    tag = "stage",
    params(("id" = Uuid, Path, description = "the session")),
    responses(
        (status = 201, description = "the request, `pending`", body = Success<OneRequest>),
        (status = 401, description = api::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the caller is not a current viewer", body = ErrorBody),
        (status = 404, description = api::SESSION_NOT_FOUND, body = ErrorBody),
        (status = 409, description = "CONFLICT: the caller is the host, on stage, or has a pending invitation or request; INVALID_TRANSITION: the stage is closed", body = ErrorBody),
        (status = 422, description = api::INVALID_INPUT, body = ErrorBody),
    ),
)]
pub async fn request(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let ctx = &state.ctx;
    let mut conn = db::pool::conn(&ctx.pool).await?;
    require_profile(&mut conn, user.0).await?;
    let r = conn
        .transaction::<Result<StageRequest, ApiError>, db::DbError, _>(async |c| {
            let Some(s) = sessions::lock(c, id).await? else {
                return Ok(Err(session_not_found()));
            };
            if s.creator_id == user.0 {
                return Ok(Err(ApiError::conflict("the host is on stage already")));
            }
            if !domain::stage::stage_open(status_of(&s)) {
                return Ok(Err(stage_closed(&s)));
            }
            let Some(p) = sessions::participant(c, id, user.0)
                .await?
                .filter(|p| p.is_active)
            else {
                return Ok(Err(ApiError::forbidden(
                    "only a current viewer can ask for the stage",
                )));
            };
            if p.role == stage_role(session_type(&s)).as_str() {
                return Ok(Err(ApiError::conflict("you are on stage already")));
            }
            open_request(c, ctx, &state, &s, user.0, StageKind::Request, user.0).await
        })
        .await
        .map_err(map_db)??;
    Ok(web::openapi::ok(
        StatusCode::CREATED,
        OneRequest {
            request: (&r).into(),
        },
    ))
}

/// The invitee's answer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    accept: bool,
}

/// The host's answer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    approve: bool,
}

/// `POST /v1/sessions/{id}/guests/invitations/{invitationId}/respond` — the invited user.
/// Anyone else gets 404: an invitation is visible to its invitee only.
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/guests/invitations/{invitationId}/respond",
    operation_id = "respondInvitation",
    tag = "stage",
    params(
        ("id" = Uuid, Path, description = "the session"),
        ("invitationId" = Uuid, Path, description = "the invitation"),
    ),
    request_body = AcceptBody,
    responses(
        (status = 200, description = "the invitation, `accepted` (the caller is on stage) or `declined`", body = Success<OneInvitation>),
        (status = 401, description = api::UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND: no such session; NOT_FOUND: no such invitation for the caller", body = ErrorBody),
        (status = 409, description = "INVALID_TRANSITION: answered, expired or cancelled already, or the stage is closed; CONFLICT: the stage is full or the caller left the room", body = ErrorBody),
        (status = 413, description = api::TOO_LARGE, body = ErrorBody),
        (status = 422, description = api::INVALID_INPUT, body = ErrorBody),
        (status = 503, description = api::LIVEKIT_UNAVAILABLE, body = ErrorBody),
    ),
)]
pub async fn respond_invitation(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<(Uuid, Uuid)>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    answer(
        user,
        &state,
        path.into_inner(),
        StageKind::Invitation,
        body.into_inner(),
    )
    .await
}

/// `POST /v1/sessions/{id}/guests/requests/{requestId}/respond` — the host only (403 for
/// anyone else: the session, and that it takes requests, are no secret).
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/guests/requests/{requestId}/respond",
    operation_id = "respondRequest",
    tag = "stage",
    params(
        ("id" = Uuid, Path, description = "the session"),
        ("requestId" = Uuid, Path, description = "the request"),
    ),
    request_body = ApproveBody,
    responses(
        (status = 200, description = "the request, `accepted` (the user is on stage) or `declined`", body = Success<OneRequest>),
        (status = 401, description = api::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = api::NOT_HOST, body = ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND: no such session; NOT_FOUND: no such request", body = ErrorBody),
        (status = 409, description = "INVALID_TRANSITION: answered, expired or cancelled already, or the stage is closed; CONFLICT: the stage is full or the user left the room", body = ErrorBody),
        (status = 413, description = api::TOO_LARGE, body = ErrorBody),
        (status = 422, description = api::INVALID_INPUT, body = ErrorBody),
        (status = 503, description = api::LIVEKIT_UNAVAILABLE, body = ErrorBody),
    ),
)]
pub async fn respond_request(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<(Uuid, Uuid)>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    answer(
        user,
        &state,
        path.into_inner(),
        StageKind::Request,
        body.into_inner(),
    )
    .await
}

/// Both answer routes: `{"accept"}` for an invitation, `{"approve"}` for a request.
async fn answer(
    user: AuthUser,
    state: &State,
    (id, rid): (Uuid, Uuid),
    kind: StageKind,
    body: Value,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.ctx.pool).await?;
    require_profile(&mut conn, user.0).await?;
    let yes = match kind {
        StageKind::Invitation => web::extract::from_object::<AcceptBody>(body)?.accept,
        StageKind::Request => web::extract::from_object::<ApproveBody>(body)?.approve,
    };
    let r = respond(&mut conn, state, id, rid, user.0, kind, yes).await?;
    let r = RequestView::from(&r);
    Ok(match kind {
        StageKind::Invitation => web::openapi::ok(StatusCode::OK, OneInvitation { invitation: r }),
        StageKind::Request => web::openapi::ok(StatusCode::OK, OneRequest { request: r }),
    })
}

/// Answers an invitation or a request: the one path of both, so accept and approve promote
/// the same way.
async fn respond(
    conn: &mut AsyncPgConnection,
    state: &State,
    id: Uuid,
    rid: Uuid,
    actor: Uuid,
    kind: StageKind,
    yes: bool,
) -> Result<StageRequest, ApiError> {
    let ctx = &state.ctx;
    // Set once LiveKit granted publishing, so a failed commit can take it back.
    let granted = AtomicBool::new(false);
    let mut room = String::new();
    let mut guest = Uuid::nil();
    let outcome = conn
        .transaction::<Result<StageRequest, ApiError>, db::DbError, _>(async |c| {
            let Some(s) = sessions::lock(c, id).await? else {
                return Ok(Err(session_not_found()));
            };
            let missing = || ApiError::not_found(format!("no such {kind}"));
            let Some(r) = stage::lock(c, rid)
                .await?
                .filter(|r| r.session_id == id && r.kind == kind.as_str())
            else {
                return Ok(Err(missing()));
            };
            let who = if actor == s.creator_id {
                Actor::Host
            } else if actor == r.user_id {
                Actor::Subject
            } else {
                Actor::Other
            };
            if !domain::stage::may_answer(kind, who) {
                return Ok(Err(match kind {
                    StageKind::Invitation => missing(),
                    StageKind::Request => {
                        ApiError::forbidden("only the host can answer requests to the stage")
                    }
                }));
            }
            let t = session_type(&s);
            let status = status_of_request(&r);
            if status == StageStatus::Pending && r.expires_at <= Utc::now() {
                // Its deadline has not fired yet: expire it now, as it would have.
                settle(c, ctx, &r, StageStatus::Expired, t).await?;
                return Ok(Err(invalid(format!("this {kind} has expired"))));
            }
            let event = if yes {
                StageEvent::Accept
            } else {
                StageEvent::Decline
            };
            let to = match domain::stage::next(status, event) {
                Ok(to) => to,
                Err(_) => return Ok(Err(invalid(format!("this {kind} is {status} already")))),
            };
            if !yes {
                return Ok(Ok(settle(c, ctx, &r, to, t).await?));
            }
            if !domain::stage::stage_open(status_of(&s)) {
                return Ok(Err(stage_closed(&s)));
            }
            let Some(p) = sessions::participant(c, id, r.user_id)
                .await?
                .filter(|p| p.is_active)
            else {
                return Ok(Err(ApiError::conflict(
                    "the user is not in the room any more",
                )));
            };
            let role = stage_role(t);
            if p.role != role.as_str() && !has_room(c, state, &s).await? {
                return Ok(Err(stage_full()));
            }
            // LiveKit first, under the session lock: the role is written only if the room
            // gives it, and no other approval can take the seat meanwhile.
            match grant_in_livekit(ctx, &s, r.user_id, role).await {
                Ok(true) => {}
                Ok(false) => {
                    return Ok(Err(ApiError::conflict(
                        "the user is not in the room any more",
                    )));
                }
                Err(e) => return Ok(Err(livekit_failed(&e))),
            }
            granted.store(true, Ordering::SeqCst);
            room = s.room_name.clone();
            guest = r.user_id;
            stage::set_role(c, id, r.user_id, role.as_str()).await?;
            Ok(Ok(settle(c, ctx, &r, to, t).await?))
        })
        .await;
    match outcome {
        Ok(answer) => answer,
        Err(e) => {
            if granted.load(Ordering::SeqCst) {
                // Granted in LiveKit but not recorded: take it back rather than let the room
                // give a role the database does not claim.
                let identity = guest.to_string();
                let revoke = livekit::set_publishing(ctx.rooms.as_ref(), &room, &identity, &[]);
                if let Err(le) = revoke.await {
                    tracing::error!(room.name = %room, user.id = %guest, error = %le, "could not revoke a grant whose promotion was not recorded");
                }
            }
            Err(map_db(e))
        }
    }
}

/// `POST /v1/sessions/{id}/guests/{userId}/end` — the host, or the guest itself: back to the
/// audience, publishing revoked live.
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/guests/{userId}/end",
    operation_id = "endGuestTurn",
    tag = "stage",
    params(
        ("id" = Uuid, Path, description = "the session"),
        ("userId" = Uuid, Path, description = "the guest"),
    ),
    responses(
        (status = 200, description = "the guest, back in the audience", body = Success<OneGuest>),
        (status = 401, description = api::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the caller is neither the host nor the guest", body = ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND: no such session; NOT_FOUND: no such participant", body = ErrorBody),
        (status = 409, description = "INVALID_TRANSITION: the user is not on stage", body = ErrorBody),
        (status = 422, description = api::INVALID_INPUT, body = ErrorBody),
        (status = 503, description = api::LIVEKIT_UNAVAILABLE, body = ErrorBody),
    ),
)]
pub async fn end_turn(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (id, guest) = path.into_inner();
    let ctx = &state.ctx;
    let mut conn = db::pool::conn(&ctx.pool).await?;
    require_profile(&mut conn, user.0).await?;
    let role = conn
        .transaction::<Result<Role, ApiError>, db::DbError, _>(async |c| {
            let Some(s) = sessions::lock(c, id).await? else {
                return Ok(Err(session_not_found()));
            };
            if user.0 != s.creator_id && user.0 != guest {
                return Ok(Err(ApiError::forbidden(
                    "only the host or the guest can end a guest's turn",
                )));
            }
            let Some(p) = sessions::participant(c, id, guest).await? else {
                return Ok(Err(ApiError::not_found("no such participant")));
            };
            let t = session_type(&s);
            if p.role != stage_role(t).as_str() {
                return Ok(Err(invalid("this user is not on stage")));
            }
            if let Err(e) = revoke_in_livekit(ctx, &s, guest).await {
                return Ok(Err(livekit_failed(&e)));
            }
            leave_stage(c, ctx, &s, guest).await?;
            Ok(Ok(audience_role(t)))
        })
        .await??;
    Ok(web::openapi::ok(
        StatusCode::OK,
        OneGuest {
            guest: GuestView {
                session_id: id,
                user_id: guest,
                role: role.as_str(),
            },
        },
    ))
}

/// Takes `user` off the (locked) session's stage in the database and writes `guest_ended`.
async fn leave_stage(
    c: &mut AsyncPgConnection,
    ctx: &Ctx,
    s: &LiveSession,
    user: Uuid,
) -> TxResult<()> {
    let role = audience_role(session_type(s));
    stage::set_role(c, s.id, user, role.as_str()).await?;
    let request = stage::latest_accepted(c, s.id, user).await?;
    let event = guest_event(
        s.id,
        request,
        user,
        domain::stage::TURN,
        domain::stage::TURN_ENDED,
        role,
        domain::stage::GUEST_ENDED,
    );
    bus::outbox::enqueue(c, &ctx.subjects, &event).await?;
    tracing::info!(session.id = %s.id, user.id = %user, "guest turn ended");
    Ok(())
}

/// A user left the room (LiveKit reported it, or the reconciliation found them gone): a
/// guest loses the stage. Nothing to revoke in LiveKit: they are not there.
pub async fn on_departure(
    c: &mut AsyncPgConnection,
    ctx: &Ctx,
    s: &LiveSession,
    user: Uuid,
) -> TxResult<()> {
    let on_stage = sessions::participant(c, s.id, user)
        .await?
        .is_some_and(|p| p.role == stage_role(session_type(s)).as_str());
    if on_stage {
        leave_stage(c, ctx, s, user).await?;
    }
    Ok(())
}

/// A user (re)joined the room. LiveKit gives what the token says, and a token fetched while
/// the user was on stage still says co-host or speaker: an ex-guest back in the audience gets
/// their publish rights taken away again, so the room gives no more than the role. Only users
/// who were ever on stage in this session are looked at (one indexed read per join).
pub async fn on_join(
    c: &mut AsyncPgConnection,
    ctx: &Ctx,
    s: &LiveSession,
    user: Uuid,
) -> TxResult<()> {
    let in_audience = sessions::participant(c, s.id, user)
        .await?
        .is_some_and(|p| p.role != stage_role(session_type(s)).as_str());
    if !in_audience || stage::latest_accepted(c, s.id, user).await?.is_none() {
        return Ok(());
    }
    if let Err(e) = revoke_in_livekit(ctx, s, user).await {
        tracing::warn!(session.id = %s.id, user.id = %user, error = %e, "could not revoke the stale publish rights of an ex-guest");
    }
    Ok(())
}

/// The session ended: its pending invitations and requests are cancelled.
pub async fn on_session_end(c: &mut AsyncPgConnection, ctx: &Ctx, s: &LiveSession) -> TxResult<()> {
    for r in stage::cancel_pending(c, s.id, Utc::now()).await? {
        bus::deadlines::cancel(c, kinds::STAGE_EXPIRE, r.id).await?;
        publish_request(c, ctx, &r, session_type(s)).await?;
    }
    Ok(())
}

/// The expiry deadline of an invitation or request: pending → expired, once.
pub async fn expire(
    c: &mut AsyncPgConnection,
    ctx: &Ctx,
    d: &DeadlineRow,
) -> anyhow::Result<String> {
    let Some(r) = stage::lock(c, d.subject_id).await? else {
        return Ok("gone".into());
    };
    if domain::stage::next(status_of_request(&r), StageEvent::Expire).is_err() {
        return Ok("moot".into());
    }
    let t = sessions::find(c, r.session_id)
        .await?
        .map(|s| session_type(&s))
        .unwrap_or(SessionType::VideoLive);
    // Not `settle`: this deadline is the one firing, the worker marks it.
    let r = stage::set_status(c, r.id, StageStatus::Expired.as_str(), Utc::now()).await?;
    publish_request(c, ctx, &r, t).await?;
    Ok("expired".into())
}
