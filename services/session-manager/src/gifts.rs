//! Gifts: `GET /v1/gifts` and `POST /v1/sessions/{id}/gifts` with `Idempotency-Key`.
//!
//! Everything a gift does happens in ONE transaction: the key's claim (first, so a repeat
//! waits on it), the checks (participant, not the host, session `live` under its row lock,
//! gift on offer), the sender's guarded debit, the gift row, the host's credit (its wallet
//! created on the first one), a ledger row per side (`ref_id` = the gift row), the session's
//! counters, the `session.gift_sent` event in the outbox, and the stored answer. A retry
//! therefore either finds the committed answer or finds nothing done.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web as aw};
use bus::{Event, Family, proto};
use chrono::{DateTime, Utc};
use db::queries::gifts::{self as q, SentGift};
use db::queries::profiles;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use domain::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;
use web::idempotency::{self, Answer, IdempotencyKey};
use web::openapi::ErrorBody;
use web::{ApiError, AuthUser};

use crate::State;
use crate::api::{self, Success};
use crate::lifecycle::Ctx;

/// The host's share of `coins` at `percent`: `floor(coins × percent / 100)`.
pub fn host_share(coins: i64, percent: u8) -> i64 {
    coins * i64::from(percent) / 100
}

/// A sent gift as API.md describes it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SentGift)]
pub struct GiftView {
    /// The sent gift (the ledger rows' `ref_id`).
    id: Uuid,
    session_id: Uuid,
    sender_id: Uuid,
    /// The catalogue's gift.
    gift_id: Uuid,
    /// What the sender paid.
    coins: i64,
    /// What the host was credited: `floor(coins × GIFT_CREATOR_SHARE_PERCENT / 100)`.
    host_share: i64,
    #[serde(serialize_with = "api::millis")]
    created_at: DateTime<Utc>,
}

/// `{"gift":{...}}`.
#[derive(Serialize, ToSchema)]
pub struct OneGift {
    gift: GiftView,
}

impl From<&SentGift> for OneGift {
    fn from(g: &SentGift) -> Self {
        OneGift {
            gift: GiftView {
                id: g.id,
                session_id: g.session_id,
                sender_id: g.sender_id,
                gift_id: g.gift_id,
                coins: g.coins,
                host_share: g.host_share,
                created_at: g.created_at,
            },
        }
    }
}

/// A gift on offer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogueGift {
    id: Uuid,
    name: String,
    coin_price: i64,
}

/// `{"gifts":[...]}`, in the catalogue's order.
#[derive(Serialize, ToSchema)]
pub struct Catalogue {
    gifts: Vec<CatalogueGift>,
}

/// The gift catalogue.
#[utoipa::path(
    get,
    path = "/v1/gifts",
    operation_id = "giftCatalogue",
    tag = "gifts",
    responses(
        (status = 200, description = "the gifts on offer", body = Success<Catalogue>),
        (status = 401, description = api::UNAUTHORIZED, body = ErrorBody),
    ),
)]
pub async fn catalogue(user: AuthUser, state: aw::Data<State>) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.ctx.pool).await?;
    profiles::find(&mut conn, user.0)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown user"))?;
    let gifts = q::catalogue(&mut conn).await?;
    Ok(web::openapi::ok(
        StatusCode::OK,
        Catalogue {
            gifts: gifts
                .into_iter()
                .map(|g| CatalogueGift {
                    id: g.id,
                    name: g.name,
                    coin_price: g.coin_price,
                })
                .collect(),
        },
    ))
}

/// The gift to send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendGift {
    /// A gift of the catalogue.
    gift_id: Uuid,
}

/// Sends a gift to the session's host (a participant other than the host, while `live`):
/// the sender debited, the host credited its share, in one transaction. With an
/// `Idempotency-Key`, a repeat answers the first answer (whatever it was).
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/gifts",
    operation_id = "sendGift",
    tag = "gifts",
    params(
        ("id" = Uuid, Path, description = "the session"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = "^[!-~]([ -~]{0,253}[!-~])?$",
            description = "1 to 255 visible ASCII characters, no surrounding space; kept 24 h per user"),
    ),
    request_body = SendGift,
    responses(
        (status = 201, description = "the gift", body = Success<OneGift>,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        (status = 401, description = api::UNAUTHORIZED, body = ErrorBody),
        (status = 402, description = "PAYMENT_REQUIRED: not enough coins", body = ErrorBody),
        (status = 403, description = "BANNED: banned from this session; FORBIDDEN: not a participant, or the host", body = ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND: no such session; NOT_FOUND: no such gift", body = ErrorBody),
        (status = 409, description = "INVALID_TRANSITION: the session is not live; CONFLICT: the Idempotency-Key was used for another request, or its first request is in progress", body = ErrorBody),
        (status = 413, description = api::TOO_LARGE, body = ErrorBody),
        (status = 422, description = api::INVALID_INPUT, body = ErrorBody),
    ),
)]
pub async fn send(
    user: AuthUser,
    state: aw::Data<State>,
    path: aw::Path<Uuid>,
    key: IdempotencyKey,
    body: aw::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let session = path.into_inner();
    let req: SendGift = web::extract::from_object(body.into_inner())?;
    let scope = key.scope(
        user.0,
        "POST",
        &format!("/v1/sessions/{session}/gifts"),
        &json!({ "giftId": req.gift_id }),
    );
    let ctx = &state.ctx;
    let share_percent = state.gift_share_percent;
    let mut conn = db::pool::conn(&ctx.pool).await?;
    // Before the claim: the key row belongs to a profile.
    profiles::find(&mut conn, user.0)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown user"))?;
    let answer = conn
        .transaction::<Answer, db::DbError, _>(async |c| {
            if let Some(scope) = &scope
                && let Some(first) = idempotency::claim(c, scope).await?
            {
                return Ok(first);
            }
            let answer = match give(c, ctx, share_percent, session, user.0, req.gift_id).await? {
                Ok(g) => Answer {
                    status: StatusCode::CREATED,
                    body: Success::new(OneGift::from(&g)).into_value(),
                    replayed: false,
                },
                Err(refused) => Answer::from(refused),
            };
            if let Some(scope) = &scope {
                idempotency::finish(c, scope, &answer).await?;
            }
            Ok(answer)
        })
        .await?;
    let outcome = match answer.status.as_u16() {
        _ if answer.replayed => "replayed",
        201 => "sent",
        402 => "insufficient_funds",
        _ => "refused",
    };
    metrics::counter!("gifts_total", "outcome" => outcome).increment(1);
    Ok(answer.into_response())
}

/// The checks and the money, in the caller's transaction. A refusal has written nothing.
async fn give(
    c: &mut AsyncPgConnection,
    ctx: &Ctx,
    share_percent: u8,
    session: Uuid,
    sender: Uuid,
    gift: Uuid,
) -> Result<Result<SentGift, ApiError>, db::DbError> {
    let p = match crate::chat::participation(c, session, sender).await? {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    if p.creator_id == sender {
        return Ok(Err(ApiError::forbidden("the host cannot gift itself")));
    }
    let Some(item) = q::find(c, gift).await? else {
        return Ok(Err(ApiError::not_found("no such gift")));
    };
    // Every gift to the session queues on this lock until it commits: only the money is
    // done under it.
    let Some((status, host)) = q::lock_session(c, session).await? else {
        return Ok(Err(ApiError::new(
            ErrorCode::SessionNotFound,
            "session not found",
        )));
    };
    if status != "live" {
        return Ok(Err(ApiError::new(
            ErrorCode::InvalidTransition,
            format!("gifts are sent to live sessions; this one is {status}"),
        )));
    }
    let id = Uuid::now_v7();
    let sent = q::send(
        c,
        q::Send {
            id,
            session,
            sender,
            host,
            gift: item.id,
            coins: item.coin_price,
            host_share: host_share(item.coin_price, share_percent),
        },
    )
    .await?;
    let Some(sent) = sent else {
        return Ok(Err(ApiError::new(
            ErrorCode::PaymentRequired,
            format!(
                "not enough coins for {} ({} coins)",
                item.name, item.coin_price
            ),
        )));
    };
    let payload = proto::GiftSent {
        session_id: session.to_string(),
        gift_row_id: sent.id.to_string(),
        sender_id: sender.to_string(),
        recipient_id: host.to_string(),
        gift_id: sent.gift_id.to_string(),
        coins: sent.coins,
        host_share: sent.host_share,
    };
    bus::outbox::enqueue(
        c,
        &ctx.subjects,
        &Event::new(Family::Session, "gift_sent", session, &payload),
    )
    .await?;
    tracing::info!(
        session.id = %session, gift.id = %sent.id, sender.id = %sender, coins = sent.coins,
        "gift sent"
    );
    Ok(Ok(sent))
}

#[cfg(test)]
mod tests {
    use super::host_share;

    #[test]
    fn the_share_rounds_down() {
        assert_eq!(host_share(1, 70), 0);
        assert_eq!(host_share(5, 70), 3);
        assert_eq!(host_share(10, 70), 7);
        assert_eq!(host_share(333, 70), 233);
        assert_eq!(host_share(500, 100), 500);
        assert_eq!(host_share(500, 0), 0);
    }
}
