//! The call routes of API.md. Every answer is a typed struct (`CallBody`, `CallPage`) that
//! both the handler serializes and the OpenAPI document describes.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web as aw};
use chrono::{DateTime, Utc};
use db::models::{Call, NewCall};
use db::queries::{calls, profiles};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use domain::ErrorCode;
use domain::call::{CallEndReason, CallEvent, CallParty, CallStatus, CallType};
use domain::rooms::call_room;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::openapi::schema::Schema;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use web::openapi::{ErrorBody, Success, nullable_wire_enum, ok, wire_enum};
use web::{ApiError, AuthUser};

use crate::State;
use crate::lifecycle::{self, Applied, call_event, kinds, status_of};

fn call_type_schema() -> Schema {
    wire_enum(CallType::WIRE_NAMES)
}

fn call_status_schema() -> Schema {
    wire_enum(CallStatus::WIRE_NAMES)
}

fn end_reason_schema() -> Schema {
    nullable_wire_enum(CallEndReason::WIRE_NAMES)
}

/// RFC 3339 UTC with milliseconds, as every time of API.md.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The call as API.md describes it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallView {
    id: Uuid,
    caller_id: Uuid,
    callee_id: Uuid,
    #[schema(schema_with = call_type_schema)]
    call_type: String,
    #[schema(schema_with = call_status_schema)]
    status: String,
    /// The LiveKit room of the call.
    room_name: String,
    /// Why the call is over; `null` while it is not.
    #[schema(schema_with = end_reason_schema)]
    ended_reason: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    /// When the callee's device confirmed the push.
    #[schema(format = DateTime)]
    ringing_at: Option<String>,
    #[schema(format = DateTime)]
    answered_at: Option<String>,
    /// When both parties were in the room.
    #[schema(format = DateTime)]
    live_at: Option<String>,
    #[schema(format = DateTime)]
    ended_at: Option<String>,
}

impl From<&Call> for CallView {
    fn from(c: &Call) -> Self {
        CallView {
            id: c.id,
            caller_id: c.caller_id,
            callee_id: c.callee_id,
            call_type: c.call_type.clone(),
            status: c.status.clone(),
            room_name: c.room_name.clone(),
            ended_reason: c.ended_reason.clone(),
            created_at: ts(c.created_at),
            ringing_at: c.ringing_at.map(ts),
            answered_at: c.answered_at.map(ts),
            live_at: c.live_at.map(ts),
            ended_at: c.ended_at.map(ts),
        }
    }
}

/// `{"call":{...}}`: the answer of every route about one call.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallBody {
    call: CallView,
}

/// A page of the history, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallPage {
    calls: Vec<CallView>,
    /// The `cursor` of the next page; `null` on the last one.
    next_cursor: Option<String>,
}

fn call_body(status: StatusCode, c: &Call) -> HttpResponse {
    ok(status, CallBody { call: c.into() })
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::CallNotFound, "call not found")
}

/// The caller's profile, or 401 (a valid token naming no profile). A globally banned user
/// cannot call anyone.
async fn require_profile(
    c: &mut AsyncPgConnection,
    user: Uuid,
) -> Result<db::models::Profile, ApiError> {
    profiles::find(c, user)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown user"))
}

/// Which side of `c` the user is on; `None` for a stranger (who is told the call does not
/// exist, so its existence is not revealed).
fn party_of(c: &Call, user: Uuid) -> Option<CallParty> {
    if user == c.caller_id {
        Some(CallParty::Caller)
    } else if user == c.callee_id {
        Some(CallParty::Callee)
    } else {
        None
    }
}

/// The body of `POST /v1/calls`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitiateCall {
    callee_id: Uuid,
    #[schema(schema_with = call_type_schema)]
    call_type: CallType,
}

/// `POST /v1/calls`.
#[utoipa::path(
    post,
    path = "/v1/calls",
    tag = "calls",
    request_body = InitiateCall,
    responses(
        (status = 201, description = "The call, `initiated`; the callee's push goes out", body = Success<CallBody>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "`BANNED` (the caller is banned) or `FORBIDDEN` (the callee blocked or banned the caller)", body = ErrorBody),
        (status = 404, description = "No such user to call", body = ErrorBody),
        (status = 409, description = "`BUSY`: either party is in an active call (the attempt is kept as a `busy` call)", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Bad body, or calling oneself", body = ErrorBody),
    )
)]
pub async fn initiate(
    user: AuthUser,
    state: aw::Data<State>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let ctx = &state.ctx;
    let mut conn = db::pool::conn(&ctx.pool).await?;
    let caller = require_profile(&mut conn, user.0).await?;
    let body: InitiateCall = web::extract::from_object(body.into_inner())?;
    if body.callee_id == caller.id {
        return Err(ApiError::validation("you cannot call yourself"));
    }
    if caller.banned_until.is_some_and(|t| t > Utc::now()) {
        return Err(ApiError::new(ErrorCode::Banned, "you are banned for now"));
    }
    if profiles::find(&mut conn, body.callee_id).await?.is_none() {
        return Err(ApiError::not_found("no such user to call"));
    }
    if calls::refuses(&mut conn, body.callee_id, caller.id).await? {
        return Err(ApiError::forbidden("this user does not take your calls"));
    }
    let id = Uuid::now_v7();
    let created_at = Utc::now();
    let room = call_room(body.call_type, id.into(), created_at.timestamp());
    let parties = [caller.id, body.callee_id];
    // Read first so that a plain busy attempt costs LiveKit nothing; the insert below is
    // what decides when two attempts race.
    if let Some(reason) = busy_reason(&calls::busy_users(&mut conn, &parties).await?, caller.id) {
        return record_busy(&state, &mut conn, id, &caller, &body, &room, reason).await;
    }
    // The room exists before anyone may fetch a token for it, with our timeouts: it
    // outlasts the ringing if nobody joins, and a party's departure leaves the grace to us.
    // Empty, it outlives our deadlines by a margin, so that they decide even when one
    // fires late (the database away a while): LiveKit finishing the room first ended an
    // accepted call `room_finished` instead of failing it `join_timeout`.
    let t = &ctx.timings;
    ctx.rooms
        .create_room(
            &room,
            (t.push_timeout + t.ring_timeout + t.join_timeout + ROOM_EMPTY_MARGIN).as_secs() as u32,
            (t.party_grace.as_secs() + 10) as u32,
            2,
        )
        .await
        .map_err(|e| ApiError::internal(format!("LiveKit CreateRoom failed: {e}")))?;
    let created = conn
        .transaction::<Call, Initiate, _>(async |c| {
            let call = calls::insert(
                c,
                &NewCall {
                    id,
                    caller_id: caller.id,
                    callee_id: body.callee_id,
                    call_type: body.call_type.as_str(),
                    status: CallStatus::Initiated.as_str(),
                    room_name: &room,
                    ended_reason: None,
                    ended_at: None,
                },
            )
            .await?;
            if !calls::occupy(c, id, caller.id, body.callee_id).await? {
                // Lost a race with another call to one of the parties: roll it all back.
                return Err(Initiate::Busy);
            }
            bus::deadlines::schedule(
                c,
                kinds::PUSH_TIMEOUT,
                id,
                Utc::now() + chrono::Duration::from_std(t.push_timeout).unwrap_or_default(),
                json!({}),
            )
            .await?;
            bus::outbox::enqueue(c, &ctx.subjects, &call_event(&call, "")).await?;
            Ok(call)
        })
        .await;
    match created {
        Ok(call) => {
            tracing::info!(call.id = %call.id, room.name = %call.room_name, "call initiated");
            metrics::counter!("calls_initiated_total").increment(1);
            Ok(call_body(StatusCode::CREATED, &call))
        }
        Err(Initiate::Busy) => {
            lifecycle::delete_room(ctx, &room).await;
            let busy = calls::busy_users(&mut conn, &parties).await?;
            let reason = busy_reason(&busy, caller.id).unwrap_or(CallEndReason::CalleeBusy);
            record_busy(&state, &mut conn, id, &caller, &body, &room, reason).await
        }
        Err(Initiate::Db(e)) => {
            lifecycle::delete_room(ctx, &room).await;
            Err(e.into())
        }
    }
}

/// How the initiating transaction can fail.
enum Initiate {
    Busy,
    Db(db::DbError),
}

impl From<db::DbError> for Initiate {
    fn from(e: db::DbError) -> Self {
        Initiate::Db(e)
    }
}

impl From<diesel::result::Error> for Initiate {
    fn from(e: diesel::result::Error) -> Self {
        Initiate::Db(e.into())
    }
}

/// How much longer than the deadlines of an unanswered or unjoined call its room lasts
/// empty.
const ROOM_EMPTY_MARGIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Which party is busy, if one is: the caller first (its own call is the likelier one).
fn busy_reason(busy: &[Uuid], caller: Uuid) -> Option<CallEndReason> {
    match busy {
        [] => None,
        b if b.contains(&caller) => Some(CallEndReason::CallerBusy),
        _ => Some(CallEndReason::CalleeBusy),
    }
}

/// A refused attempt stays in both parties' histories as a `busy` call; the answer is
/// 409 `BUSY`.
async fn record_busy(
    state: &State,
    conn: &mut AsyncPgConnection,
    id: Uuid,
    caller: &db::models::Profile,
    body: &InitiateCall,
    room: &str,
    reason: CallEndReason,
) -> Result<HttpResponse, ApiError> {
    let ctx = &state.ctx;
    let call = conn
        .transaction::<Call, db::DbError, _>(async |c| {
            let call = calls::insert(
                c,
                &NewCall {
                    id,
                    caller_id: caller.id,
                    callee_id: body.callee_id,
                    call_type: body.call_type.as_str(),
                    status: CallStatus::Busy.as_str(),
                    room_name: room,
                    ended_reason: Some(reason.as_str()),
                    ended_at: Some(Utc::now()),
                },
            )
            .await?;
            bus::outbox::enqueue(c, &ctx.subjects, &call_event(&call, "")).await?;
            Ok(call)
        })
        .await?;
    lifecycle::observe(&call, CallStatus::Initiated, CallStatus::Busy, Utc::now());
    tracing::info!(call.id = %call.id, reason = reason.as_str(), "call refused: busy");
    Err(ApiError::new(
        ErrorCode::Busy,
        match reason {
            CallEndReason::CallerBusy => "you are already in a call",
            _ => "the person you called is in another call",
        },
    ))
}

/// Applies a party's request to the call: the stranger is told it does not exist, a party
/// may ask only for what `domain::call::may_request` gives it, and the state machine decides
/// the rest.
async fn request(
    user: AuthUser,
    state: &State,
    id: Uuid,
    event: CallEvent,
) -> Result<HttpResponse, ApiError> {
    let ctx = &state.ctx;
    let mut conn = db::pool::conn(&ctx.pool).await?;
    require_profile(&mut conn, user.0).await?;
    let (call, applied) = conn
        .transaction::<Result<(Call, Applied), ApiError>, db::DbError, _>(async |c| {
            let Some(mut call) = calls::lock(c, id).await? else {
                return Ok(Err(not_found()));
            };
            let Some(party) = party_of(&call, user.0) else {
                return Ok(Err(not_found()));
            };
            if !domain::call::may_request(event, party) {
                return Ok(Err(ApiError::forbidden(format!(
                    "the {party} cannot {event} a call"
                ))));
            }
            let reason = match (event, party) {
                (CallEvent::End, CallParty::Caller) => Some(CallEndReason::CallerEnded),
                (CallEvent::End, CallParty::Callee) => Some(CallEndReason::CalleeEnded),
                _ => None,
            };
            match lifecycle::apply(c, ctx, &mut call, event, reason).await {
                Ok(applied) => Ok(Ok((call, applied?))),
                Err(refused) => Ok(Err(ApiError::new(
                    ErrorCode::InvalidTransition,
                    format!(
                        "cannot {} a call that is {}",
                        refused.event,
                        status_of(&call).as_str()
                    ),
                ))),
            }
        })
        .await??;
    if applied.delete_room {
        lifecycle::delete_room(ctx, &call.room_name).await;
    }
    Ok(call_body(StatusCode::OK, &call))
}

/// `POST /v1/calls/{id}/accept` (callee): `ringing → accepted`.
#[utoipa::path(
    post,
    path = "/v1/calls/{id}/accept",
    tag = "calls",
    params(("id" = Uuid, Path, description = "The call")),
    responses(
        (status = 200, description = "The call after the change", body = Success<CallBody>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "The other party's request", body = ErrorBody),
        (status = 404, description = "`CALL_NOT_FOUND`: unknown, or not a call of the caller", body = ErrorBody),
        (status = 409, description = "`INVALID_TRANSITION` from the call's status", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    )
)]
pub async fn accept(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    request(user, &state, path.into_inner(), CallEvent::Accept).await
}

/// `POST /v1/calls/{id}/reject` (callee): `ringing → rejected`.
#[utoipa::path(
    post,
    path = "/v1/calls/{id}/reject",
    tag = "calls",
    params(("id" = Uuid, Path, description = "The call")),
    responses(
        (status = 200, description = "The call after the change", body = Success<CallBody>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "The other party's request", body = ErrorBody),
        (status = 404, description = "`CALL_NOT_FOUND`: unknown, or not a call of the caller", body = ErrorBody),
        (status = 409, description = "`INVALID_TRANSITION` from the call's status", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    )
)]
pub async fn reject(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    request(user, &state, path.into_inner(), CallEvent::Reject).await
}

/// `POST /v1/calls/{id}/cancel` (caller): `initiated|ringing → cancelled`.
#[utoipa::path(
    post,
    path = "/v1/calls/{id}/cancel",
    tag = "calls",
    params(("id" = Uuid, Path, description = "The call")),
    responses(
        (status = 200, description = "The call after the change", body = Success<CallBody>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "The other party's request", body = ErrorBody),
        (status = 404, description = "`CALL_NOT_FOUND`: unknown, or not a call of the caller", body = ErrorBody),
        (status = 409, description = "`INVALID_TRANSITION` from the call's status", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    )
)]
pub async fn cancel(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    request(user, &state, path.into_inner(), CallEvent::Cancel).await
}

/// `POST /v1/calls/{id}/end` (either party): `accepted|live → ended`; deletes the LiveKit room.
#[utoipa::path(
    post,
    path = "/v1/calls/{id}/end",
    tag = "calls",
    params(("id" = Uuid, Path, description = "The call")),
    responses(
        (status = 200, description = "The call after the change", body = Success<CallBody>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "The other party's request", body = ErrorBody),
        (status = 404, description = "`CALL_NOT_FOUND`: unknown, or not a call of the caller", body = ErrorBody),
        (status = 409, description = "`INVALID_TRANSITION` from the call's status", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    )
)]
pub async fn end(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    request(user, &state, path.into_inner(), CallEvent::End).await
}

/// `GET /v1/calls/{id}`: either party.
#[utoipa::path(
    get,
    path = "/v1/calls/{id}",
    tag = "calls",
    params(("id" = Uuid, Path, description = "The call")),
    responses(
        (status = 200, description = "The call", body = Success<CallBody>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 404, description = "`CALL_NOT_FOUND`: unknown, or not a call of the caller", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    )
)]
pub async fn get(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.ctx.pool).await?;
    require_profile(&mut conn, user.0).await?;
    let call = calls::find(&mut conn, path.into_inner())
        .await?
        .filter(|c| party_of(c, user.0).is_some())
        .ok_or_else(not_found)?;
    Ok(call_body(StatusCode::OK, &call))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only calls in this status.
    #[param(schema_with = call_status_schema)]
    status: Option<CallStatus>,
    /// Page size (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /v1/calls`: the user's calls, as caller or callee, newest first.
#[utoipa::path(
    get,
    path = "/v1/calls",
    tag = "calls",
    params(HistoryQuery),
    responses(
        (status = 200, description = "A page of the caller's calls", body = Success<CallPage>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 422, description = "Bad query: unknown parameter or status, limit out of range, a cursor not ours", body = ErrorBody),
    )
)]
pub async fn history(
    user: AuthUser,
    state: aw::Data<State>,
    query: aw::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = web::cursor::limit(q.limit)?;
    let after = q.cursor.as_deref().map(web::cursor::decode).transpose()?;
    let mut conn = db::pool::conn(&state.ctx.pool).await?;
    require_profile(&mut conn, user.0).await?;
    let rows = calls::history(
        &mut conn,
        user.0,
        q.status.map(|s| s.as_str()),
        after,
        limit + 1,
    )
    .await?;
    let more = rows.len() as i64 > limit;
    let page = &rows[..rows.len().min(limit as usize)];
    let next = if more {
        page.last().map(|c| web::cursor::encode(c.created_at, c.id))
    } else {
        None
    };
    Ok(ok(
        StatusCode::OK,
        CallPage {
            calls: page.iter().map(CallView::from).collect(),
            next_cursor: next,
        },
    ))
}
