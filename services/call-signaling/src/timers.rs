//! The call deadlines: push timeout, ring timeout, join timeout, party grace, maximum
//! duration. Each fires once (claimed under `FOR UPDATE SKIP LOCKED`, marked in the same
//! transaction as its effect), also after a restart; one the call has moved past is moot.

use db::models::DeadlineRow;
use db::queries::calls;
use diesel_async::AsyncPgConnection;
use domain::call::{CallEndReason, CallEvent, CallStatus};
use futures_util::future::BoxFuture;

use crate::lifecycle::{self, Ctx, kinds, status_of};

pub struct Timers {
    pub ctx: Ctx,
}

impl bus::deadlines::DeadlineHandler for Timers {
    fn fire<'a>(
        &'a self,
        c: &'a mut AsyncPgConnection,
        d: &'a DeadlineRow,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            if d.kind == kinds::RECONCILE {
                let repaired = crate::reconcile::reconcile_all(&self.ctx).await?;
                return Ok(format!("reconciled:{repaired}"));
            }
            self.fire_call(c, d).await
        })
    }
}

impl Timers {
    async fn fire_call(
        &self,
        c: &mut AsyncPgConnection,
        d: &DeadlineRow,
    ) -> anyhow::Result<String> {
        let ctx = &self.ctx;
        let Some(mut call) = calls::lock(c, d.subject_id).await? else {
            return Ok("gone".into());
        };
        let status = status_of(&call);
        let (event, reason) = match d.kind.as_str() {
            kinds::PUSH_TIMEOUT => (CallEvent::PushTimeout, CallEndReason::PushTimeout),
            kinds::RING_TIMEOUT => (CallEvent::RingTimeout, CallEndReason::NoAnswer),
            kinds::MAX_DURATION => (CallEvent::MaxDuration, CallEndReason::MaxDuration),
            kinds::JOIN_TIMEOUT => {
                if status != CallStatus::Accepted {
                    return Ok("moot".into());
                }
                // Webhooks can be lost: LiveKit may have both parties although we never
                // heard of their joins.
                if both_in_livekit(ctx, &call).await {
                    lifecycle::apply(c, ctx, &mut call, CallEvent::BothJoined, None)
                        .await
                        .ok()
                        .transpose()?;
                    return Ok("both_present".into());
                }
                (CallEvent::PartyLost, CallEndReason::JoinTimeout)
            }
            kinds::PARTY_GRACE => {
                if status != CallStatus::Live {
                    return Ok("moot".into());
                }
                let identity = d.payload["identity"].as_str().unwrap_or_default();
                let (caller_in, callee_in) = crate::room_events::presence(c, &call).await?;
                if caller_in && callee_in {
                    return Ok("back".into());
                }
                if !identity.is_empty()
                    && let Ok(Some(_)) = ctx.rooms.get_participant(&call.room_name, identity).await
                {
                    return Ok("present_in_livekit".into());
                }
                (CallEvent::PartyLost, CallEndReason::Network)
            }
            other => return Ok(format!("unknown kind {other}")),
        };
        match lifecycle::apply(c, ctx, &mut call, event, Some(reason)).await {
            Ok(applied) => {
                let applied = applied?;
                if applied.delete_room {
                    lifecycle::delete_room(ctx, &call.room_name).await;
                }
                Ok(applied.to.as_str().to_owned())
            }
            Err(_) => Ok("moot".into()),
        }
    }
}

/// Whether LiveKit reports both parties in the call's room (false when it cannot say).
async fn both_in_livekit(ctx: &Ctx, call: &db::models::Call) -> bool {
    match ctx.rooms.list_participants(&call.room_name).await {
        Ok(ps) => {
            let has = |id: uuid::Uuid| ps.iter().any(|p| p.identity == id.to_string());
            has(call.caller_id) && has(call.callee_id)
        }
        Err(e) => {
            tracing::warn!(call.id = %call.id, error = %e, "LiveKit could not list the call's participants");
            false
        }
    }
}
