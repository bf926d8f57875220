//! Following LiveKit in call rooms: `livekit.*` events → live, ended, or the party grace.
//!
//! Who is in the room comes from `livekit_participations` (one row per participant sid,
//! written by webhook-ingest before the event is published), not from the event at hand, so
//! any delivery order of joins and leaves ends in the same state.

use bus::consumer::{Handler, HandlerError, mark_processed};
use bus::{Incoming, proto};
use chrono::Utc;
use db::models::Call;
use db::queries::sessions::has_open_connection;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use domain::call::{CallEndReason, CallEvent, CallParty, CallStatus};
use domain::rooms::{RoomRef, parse_room};
use futures_util::future::BoxFuture;

use crate::lifecycle::{self, Applied, Ctx, TxResult, kinds, status_of};

pub const CONSUMER: &str = "call-signaling-livekit";

pub struct RoomEvents {
    pub ctx: Ctx,
}

impl Handler for RoomEvents {
    fn handle(&self, event: Incoming) -> BoxFuture<'_, Result<(), HandlerError>> {
        Box::pin(async move {
            let p: proto::LiveKitEvent = event
                .payload()
                .map_err(|e| HandlerError::Permanent(e.into()))?;
            let Some(RoomRef::Call { id, .. }) = parse_room(&p.room_name) else {
                return Ok(()); // a session room, or a room that is not ours
            };
            let ctx = &self.ctx;
            let mut conn = db::pool::conn(&ctx.pool).await?;
            let applied = conn
                .transaction::<Option<(Call, Applied)>, db::DbError, _>(async |c| {
                    if !mark_processed(c, CONSUMER, event.id).await? {
                        return Ok(None);
                    }
                    let Some(mut call) = db::queries::calls::lock(c, id.as_uuid()).await? else {
                        return Ok(None);
                    };
                    Ok(on_room_event(c, ctx, &mut call, &p)
                        .await?
                        .map(|a| (call, a)))
                })
                .await?;
            if let Some((call, a)) = applied
                && a.delete_room
            {
                lifecycle::delete_room(ctx, &call.room_name).await;
            }
            Ok(())
        })
    }
}

/// The side of the call an identity is, if any (an egress or agent is neither).
pub fn party(call: &Call, identity: &str) -> Option<CallParty> {
    if identity == call.caller_id.to_string() {
        Some(CallParty::Caller)
    } else if identity == call.callee_id.to_string() {
        Some(CallParty::Callee)
    } else {
        None
    }
}

/// Whether each party has an open connection to the call's room: `(caller, callee)`.
pub async fn presence(c: &mut AsyncPgConnection, call: &Call) -> TxResult<(bool, bool)> {
    Ok((
        has_open_connection(c, &call.room_name, &call.caller_id.to_string()).await?,
        has_open_connection(c, &call.room_name, &call.callee_id.to_string()).await?,
    ))
}

async fn transition(
    c: &mut AsyncPgConnection,
    ctx: &Ctx,
    call: &mut Call,
    event: CallEvent,
    reason: Option<CallEndReason>,
) -> TxResult<Option<Applied>> {
    match lifecycle::apply(c, ctx, call, event, reason).await {
        Ok(applied) => applied.map(Some),
        Err(_) => Ok(None), // moot: the call moved on
    }
}

/// Applies one LiveKit event to a locked call; returns the transition it caused, if any.
pub async fn on_room_event(
    c: &mut AsyncPgConnection,
    ctx: &Ctx,
    call: &mut Call,
    p: &proto::LiveKitEvent,
) -> TxResult<Option<Applied>> {
    let status = status_of(call);
    if status.is_terminal() {
        return Ok(None);
    }
    if p.event == "room_finished" {
        return match status {
            CallStatus::Accepted | CallStatus::Live => {
                transition(
                    c,
                    ctx,
                    call,
                    CallEvent::End,
                    Some(CallEndReason::RoomFinished),
                )
                .await
            }
            _ => Ok(None), // not answered yet: the ring timeout decides
        };
    }
    let Some(who) = party(call, &p.participant_identity) else {
        return Ok(None);
    };
    let (caller_in, callee_in) = presence(c, call).await?;
    match p.event.as_str() {
        "participant_joined" => {
            if caller_in && callee_in {
                if status == CallStatus::Accepted {
                    return transition(c, ctx, call, CallEvent::BothJoined, None).await;
                }
                // Back within the grace.
                bus::deadlines::cancel(c, kinds::PARTY_GRACE, call.id).await?;
            }
            Ok(None)
        }
        "participant_left" | "participant_connection_aborted" => {
            // A DUPLICATE_IDENTITY leave is a replacement (a full reconnect), not a departure;
            // and a party with another open connection has not left either.
            let still_in = match who {
                CallParty::Caller => caller_in,
                CallParty::Callee => callee_in,
            };
            if p.disconnect_reason == "DUPLICATE_IDENTITY" || still_in {
                return Ok(None);
            }
            let on_purpose = p.disconnect_reason == "CLIENT_INITIATED";
            let left = match who {
                CallParty::Caller => CallEndReason::CallerLeft,
                CallParty::Callee => CallEndReason::CalleeLeft,
            };
            match status {
                CallStatus::Live if !caller_in && !callee_in => {
                    transition(c, ctx, call, CallEvent::End, Some(CallEndReason::BothLeft)).await
                }
                CallStatus::Live | CallStatus::Accepted if on_purpose => {
                    transition(c, ctx, call, CallEvent::End, Some(left)).await
                }
                CallStatus::Live => {
                    // Dropped: it has the grace to come back before the call fails.
                    let due = Utc::now()
                        + chrono::Duration::from_std(ctx.timings.party_grace).unwrap_or_default();
                    bus::deadlines::schedule(
                        c,
                        kinds::PARTY_GRACE,
                        call.id,
                        due,
                        serde_json::json!({ "identity": p.participant_identity }),
                    )
                    .await?;
                    tracing::info!(call.id = %call.id, party = %who, "call party dropped; grace started");
                    Ok(None)
                }
                // Accepted and a drop: the join timeout decides. Before the answer, the
                // caller in the room early is free to come and go.
                _ => Ok(None),
            }
        }
        _ => Ok(None),
    }
}
