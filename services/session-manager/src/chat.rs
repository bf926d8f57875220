//! Chat: `POST /v1/sessions/{id}/messages` and `GET /v1/sessions/{id}/messages?after=`.
//!
//! A post is checked in this order: token (401), body (422), the per-user-per-session token
//! bucket (429, before any database work so that a flood costs nothing but the check), then
//! one query for the facts (401 unknown user, 404 session, 403 `BANNED`, 403 not a
//! participant, 409 ended), then one transaction: the session's message counter, the
//! message, and its `session.message_posted` event through the outbox.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web as aw};
use bus::{Event, Family, proto};
use chrono::{DateTime, Utc};
use db::queries::chat::{self as q, Message, Participation};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use domain::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use web::openapi::ErrorBody;
use web::rate_limit::KeyedLimiter;
use web::{ApiError, AuthUser};

use crate::State;
use crate::api::{self, Success};

/// The longest message, in characters.
pub const MAX_BODY_CHARS: usize = 500;

/// Chat's share of the service state: the rate limit of posts.
#[derive(Clone)]
pub struct Chat {
    /// `CHAT_RATE_PER_MIN` per (user, session), burst of the same size. In memory per
    /// replica, like the token limits: behind N replicas a user may post up to N times the
    /// rate, which the gateway's per-user stickiness (or a lower setting) absorbs.
    pub limiter: KeyedLimiter<(Uuid, Uuid)>,
}

impl Chat {
    pub fn new(rate_per_min: u32) -> Self {
        Chat {
            limiter: KeyedLimiter::per_minute(rate_per_min),
        }
    }

    /// Forgets full buckets now and then so the limiter's memory follows the active users.
    pub fn spawn_shrink(
        &self,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let limiter = self.limiter.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(60)) => limiter.shrink(),
                    _ = shutdown.changed() => return,
                }
            }
        })
    }
}

/// A chat message as API.md's resources look.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Message)]
pub struct MessageView {
    id: Uuid,
    session_id: Uuid,
    /// The author.
    user_id: Uuid,
    /// Trimmed; 1 to 500 characters.
    body: String,
    #[serde(serialize_with = "api::millis")]
    created_at: DateTime<Utc>,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        MessageView {
            id: m.id,
            session_id: m.session_id,
            user_id: m.user_id,
            body: m.body.clone(),
            created_at: m.created_at,
        }
    }
}

/// `{"message":{...}}`.
#[derive(Serialize, ToSchema)]
pub struct OneMessage {
    message: MessageView,
}

/// A page of messages, oldest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    messages: Vec<MessageView>,
    /// The `after` of the next page (only pages asked with `after` have one); `null` on the
    /// last one.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// The caller's standing in the session, or the refusal every chat and gift route shares.
pub(crate) async fn participation(
    c: &mut AsyncPgConnection,
    session: Uuid,
    user: Uuid,
) -> Result<Result<Participation, ApiError>, db::DbError> {
    Ok(match q::participation(c, session, user).await? {
        None => Err(ApiError::unauthorized("unknown user")),
        Some(None) => Err(ApiError::new(
            ErrorCode::SessionNotFound,
            "session not found",
        )),
        Some(Some(p)) if p.banned => Err(ApiError::new(
            ErrorCode::Banned,
            "you are banned from this session",
        )),
        Some(Some(p)) if !p.participant => Err(ApiError::forbidden(
            "you are not a participant of this session",
        )),
        Some(Some(p)) => Ok(p),
    })
}

/// A chat message to post.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    /// Trimmed; 1 to 500 characters (inner newlines kept), no NUL.
    #[schema(min_length = 1, max_length = 500, pattern = "^[^\\x00]*$")]
    body: String,
}

fn ended(session: Uuid) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidTransition,
        format!("session {session} has ended: its chat is closed"),
    )
}

/// Posts a chat message (a participant, while the session has not ended).
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/messages",
    operation_id = "postMessage",
    tag = "chat",
    params(("id" = Uuid, Path, description = "the session")),
    request_body = PostMessage,
    responses(
        (status = 201, description = "the message", body = Success<OneMessage>),
        (status = 401, description = api::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = "BANNED: banned from this session; FORBIDDEN: not a participant", body = ErrorBody),
        (status = 404, description = api::SESSION_NOT_FOUND, body = ErrorBody),
        (status = 409, description = "INVALID_TRANSITION: the session has ended", body = ErrorBody),
        (status = 413, description = api::TOO_LARGE, body = ErrorBody),
        (status = 422, description = api::INVALID_INPUT, body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: over CHAT_RATE_PER_MIN in this session; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds"))),
    ),
)]
pub async fn post(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let session = path.into_inner();
    let body: PostMessage = web::extract::from_object(body.into_inner())?;
    // Surrounding whitespace is not content (as titles); inner newlines are kept.
    let text = body.body.trim();
    if text.is_empty() {
        return Err(ApiError::validation("body must not be empty"));
    }
    if text.chars().count() > MAX_BODY_CHARS {
        return Err(ApiError::validation(format!(
            "body must be at most {MAX_BODY_CHARS} characters"
        )));
    }
    api::no_nul("body", text)?;
    if let Err(e) = state.chat.limiter.check(&(user.0, session)) {
        metrics::counter!("chat_messages_total", "outcome" => "rate_limited").increment(1);
        return Err(e);
    }
    let ctx = &state.ctx;
    let mut conn = db::pool::conn(&ctx.pool).await?;
    let p = participation(&mut conn, session, user.0).await??;
    if p.status == "ended" {
        return Err(ended(session));
    }
    let message = conn
        .transaction::<Option<Message>, db::DbError, _>(async |c| {
            if !q::count_message(c, session).await? {
                return Ok(None);
            }
            let m = q::insert(c, uuid::Uuid::now_v7(), session, user.0, text).await?;
            let payload = proto::MessagePosted {
                session_id: session.to_string(),
                message_id: m.id.to_string(),
                user_id: user.0.to_string(),
                body: m.body.clone(),
                deleted: false,
            };
            bus::outbox::enqueue(
                c,
                &ctx.subjects,
                &Event::new(Family::Session, "message_posted", session, &payload),
            )
            .await?;
            Ok(Some(m))
        })
        .await?
        .ok_or_else(|| ended(session))?;
    metrics::counter!("chat_messages_total", "outcome" => "posted").increment(1);
    Ok(web::openapi::ok(
        StatusCode::CREATED,
        OneMessage {
            message: (&message).into(),
        },
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// A message id: list the ones after it, oldest first (without it: the newest ones).
    after: Option<Uuid>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// Recent messages (a participant); soft-deleted ones are never listed.
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/messages",
    operation_id = "listMessages",
    tag = "chat",
    params(("id" = Uuid, Path, description = "the session"), ListQuery),
    responses(
        (status = 200, description = "a page of messages, oldest first", body = Success<MessagePage>),
        (status = 401, description = api::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = "BANNED: banned from this session; FORBIDDEN: not a participant", body = ErrorBody),
        (status = 404, description = api::SESSION_NOT_FOUND, body = ErrorBody),
        (status = 422, description = api::INVALID_INPUT, body = ErrorBody),
    ),
)]
pub async fn list(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
    query: aw::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let session = path.into_inner();
    let q = query.into_inner();
    let limit = web::cursor::limit(q.limit)?;
    let mut conn = db::pool::conn(&state.ctx.pool).await?;
    participation(&mut conn, session, user.0).await??;
    let mut rows = q::list(&mut conn, session, q.after, limit + 1).await?;
    // One row more than asked tells whether a next page exists (only `after` pages have
    // one: without `after` the page is the newest messages).
    let more = rows.len() as i64 > limit;
    if more {
        match q.after {
            Some(_) => rows.truncate(limit as usize),
            None => {
                rows.remove(0);
            }
        }
    }
    let next = (more && q.after.is_some())
        .then(|| rows.last().map(|m| m.id.to_string()))
        .flatten();
    Ok(web::openapi::ok(
        StatusCode::OK,
        MessagePage {
            messages: rows.iter().map(MessageView::from).collect(),
            next_cursor: next,
        },
    ))
}
