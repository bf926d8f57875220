//! `POST /v1/tokens`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web as aw};
use chrono::Utc;
use db::queries::access::{self, ChargeOutcome, PayPerView};
use domain::access::{Admission, SessionFacts, SessionSnapshot, admit, host_share};
use domain::call::{CallStatus, CallType};
use domain::roles::{Grants, Role, grants};
use domain::session::{AccessType, SessionStatus, SessionType};
use domain::{ErrorCode, call};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use web::ApiError;
use web::openapi::ErrorBody;

use crate::State;

/// What the body is parsed into first: both optional, so that "both" and "neither" get
/// their own messages rather than serde's "did not match any variant".
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTokenRequest {
    session_id: Option<Uuid>,
    call_id: Option<Uuid>,
}

/// `POST /v1/tokens`'s body: a session or a call, never both (other fields are ignored).
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub(crate) enum TokenRequest {
    /// A token for a session's room.
    Session {
        #[serde(rename = "sessionId")]
        session_id: Uuid,
    },
    /// A token for a call's room.
    Call {
        #[serde(rename = "callId")]
        call_id: Uuid,
    },
}

fn target(body: serde_json::Value) -> Result<TokenRequest, ApiError> {
    let req: RawTokenRequest = web::extract::from_object(body)?;
    match (req.session_id, req.call_id) {
        (Some(session_id), None) => Ok(TokenRequest::Session { session_id }),
        (None, Some(call_id)) => Ok(TokenRequest::Call { call_id }),
        (Some(_), Some(_)) => Err(ApiError::validation(
            "give either sessionId or callId, not both",
        )),
        (None, None) => Err(ApiError::validation(
            "missing field `sessionId` (or `callId`)",
        )),
    }
}

/// The answer: a LiveKit access token for the room and what the app needs to join it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenIssued {
    /// Always `true`.
    success: bool,
    /// The LiveKit access token (a JWT signed with the LiveKit API secret).
    token: String,
    /// Where the app connects (`LIVEKIT_WS_URL`).
    ws_url: String,
    /// `live_video_<id>`, `audio_room_<id>` or the call's room.
    room_name: String,
    /// The caller's role in the room.
    #[schema(schema_with = role_schema)]
    role: Role,
    /// When the token expires (RFC 3339, UTC).
    #[schema(format = DateTime)]
    expires_at: String,
}

fn role_schema() -> utoipa::openapi::schema::Schema {
    web::openapi::wire_enum(Role::WIRE_NAMES)
}

/// Admits the caller to a session or call and answers a LiveKit token for its room.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "tokens",
    request_body = TokenRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Admitted: the room's token", body = TokenIssued),
        (status = 401, description = "UNAUTHORIZED: missing, bad or expired token, or no profile", body = ErrorBody),
        (status = 402, description = "PAYMENT_REQUIRED: pay-per-view and not enough coins", body = ErrorBody),
        (status = 403, description = "BANNED or SUBSCRIPTION_REQUIRED", body = ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND (unknown or ended) or CALL_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "INVALID_TRANSITION: the call is not in a state that has a room", body = ErrorBody),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = ErrorBody),
        (status = 422, description = "VALIDATION_ERROR: not a JSON object with exactly one of sessionId and callId", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED, per user or per client address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
pub(crate) async fn issue(
    req: HttpRequest,
    state: aw::Data<State>,
    body: aw::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let result = issue_inner(&req, &state, body.into_inner()).await;
    if let Err(e) = &result {
        metrics::counter!("token_failures_total", "code" => e.code.as_str()).increment(1);
    }
    result
}

async fn issue_inner(
    req: &HttpRequest,
    state: &State,
    body: serde_json::Value,
) -> Result<HttpResponse, ApiError> {
    if let Some(ip) = state.proxies.client_ip(req) {
        state.per_ip.check(&ip)?;
    }
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    let user = state
        .verifier
        .verify_header(header)
        .map_err(|e| ApiError::unauthorized(e.to_string()))?
        .user_id;
    state.per_user.check(&user)?;
    let issued = match target(body)? {
        TokenRequest::Session { session_id } => session_token(state, user, session_id).await?,
        TokenRequest::Call { call_id } => call_token(state, user, call_id).await?,
    };
    metrics::counter!("tokens_issued_total", "role" => issued.role.as_str()).increment(1);
    let expires_at = Utc::now() + chrono::Duration::from_std(state.token_ttl).unwrap_or_default();
    Ok(HttpResponse::build(StatusCode::OK).json(TokenIssued {
        success: true,
        token: issued.token,
        ws_url: state.ws_url.clone(),
        room_name: issued.room,
        role: issued.role,
        expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }))
}

struct Issued {
    token: String,
    room: String,
    role: Role,
}

fn unknown_user() -> ApiError {
    ApiError::unauthorized("unknown user")
}

fn corrupt(what: &str) -> ApiError {
    ApiError::internal(format!("unreadable {what} in the database"))
}

async fn session_token(state: &State, user: Uuid, session: Uuid) -> Result<Issued, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    let row = access::session_facts(&mut conn, user, session)
        .await?
        .ok_or_else(unknown_user)?;
    let snapshot = match (
        &row.status,
        &row.session_type,
        &row.access_type,
        row.creator_id,
    ) {
        (Some(status), Some(session_type), Some(access_type), Some(creator)) => {
            Some(SessionSnapshot {
                status: status
                    .parse::<SessionStatus>()
                    .map_err(|_| corrupt("session status"))?,
                session_type: session_type
                    .parse::<SessionType>()
                    .map_err(|_| corrupt("session type"))?,
                access_type: access_type
                    .parse::<AccessType>()
                    .map_err(|_| corrupt("access type"))?,
                price_coins: row.price_coins,
                is_creator: creator == user,
            })
        }
        _ => None,
    };
    let facts = SessionFacts {
        globally_banned: row.globally_banned,
        session: snapshot.clone(),
        session_banned: row.session_banned,
        creator_banned: row.creator_banned,
        subscribed: row.subscribed,
        paid: row.paid,
        stage_role: row.participant_role.as_deref().and_then(|r| r.parse().ok()),
    };
    let Admission { role, charge } = admit(&facts).map_err(|r| ApiError::new(r.code, r.message))?;
    let snapshot = snapshot.expect("admitted sessions exist");
    if let (Some(price), Some(host)) = (charge, row.creator_id) {
        let ppv = PayPerView {
            session,
            viewer: user,
            host,
            price,
            host_share: host_share(price, state.creator_share_percent),
        };
        match access::charge_pay_per_view(&mut conn, ppv).await? {
            ChargeOutcome::Charged => {
                tracing::info!(session.id = %session, coins = price, "pay-per-view charged");
                metrics::counter!("ppv_charges_total").increment(1);
            }
            ChargeOutcome::AlreadyPaid => {}
            ChargeOutcome::InsufficientFunds => {
                return Err(ApiError::new(
                    ErrorCode::PaymentRequired,
                    format!("this session costs {price} coins"),
                ));
            }
        }
    }
    drop(conn);
    let room = row.room_name.ok_or_else(|| corrupt("room name"))?;
    let token = mint(
        state,
        user,
        &row.username,
        &room,
        &grants(role, snapshot.session_type.media()),
    )?;
    Ok(Issued { token, room, role })
}

async fn call_token(state: &State, user: Uuid, call_id: Uuid) -> Result<Issued, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    let row = access::call_facts(&mut conn, user, call_id)
        .await?
        .ok_or_else(unknown_user)?;
    drop(conn);
    if row.globally_banned {
        return Err(ApiError::new(ErrorCode::Banned, "you are banned"));
    }
    let not_found = || ApiError::new(ErrorCode::CallNotFound, "call not found");
    let (Some(caller), Some(callee)) = (row.caller_id, row.callee_id) else {
        return Err(not_found());
    };
    let party = if user == caller {
        call::CallParty::Caller
    } else if user == callee {
        call::CallParty::Callee
    } else {
        return Err(not_found()); // not revealed to strangers
    };
    let status: CallStatus = row
        .status
        .as_deref()
        .unwrap_or("")
        .parse()
        .map_err(|_| corrupt("call status"))?;
    let call_type: CallType = row
        .call_type
        .as_deref()
        .unwrap_or("")
        .parse()
        .map_err(|_| corrupt("call type"))?;
    let allowed = matches!(status, CallStatus::Accepted | CallStatus::Live)
        || (status == CallStatus::Ringing && party == call::CallParty::Caller);
    if !allowed {
        return Err(ApiError::new(
            ErrorCode::InvalidTransition,
            format!("no token for a call that is {}", status.as_str()),
        ));
    }
    let role = party.role();
    let room = row.room_name.ok_or_else(|| corrupt("room name"))?;
    let token = mint(
        state,
        user,
        &row.username,
        &room,
        &grants(role, call_type.media()),
    )?;
    Ok(Issued { token, room, role })
}

fn mint(state: &State, user: Uuid, name: &str, room: &str, g: &Grants) -> Result<String, ApiError> {
    let grant = livekit::RoomGrant {
        room: room.to_owned(),
        can_publish: g.can_publish,
        can_subscribe: g.can_subscribe,
        can_publish_data: g.can_publish_data,
        can_publish_sources: g
            .can_publish_sources
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect(),
        room_admin: g.room_admin,
    };
    livekit::mint_token(
        &state.livekit,
        &user.to_string(),
        name,
        &grant,
        state.token_ttl,
    )
    .map_err(ApiError::internal)
}
