//! The notifier's answer to the incoming-call push: `notify.push_result` → ringing or failed.

use bus::consumer::{Handler, HandlerError, mark_processed};
use bus::{Incoming, proto};
use db::models::Call;
use diesel_async::AsyncConnection;
use domain::call::{CallEndReason, CallEvent};
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::lifecycle::{self, Applied, Ctx};

pub const CONSUMER: &str = "call-signaling-push";
/// The event type this consumer handles.
pub const PUSH_RESULT: &str = "notify.push_result";
/// `PushResult.purpose` of the incoming ring.
pub const INCOMING_CALL: &str = "incoming_call";

pub struct PushResults {
    pub ctx: Ctx,
}

/// The call event a push result means.
pub fn event_of(r: &proto::PushResult) -> (CallEvent, Option<CallEndReason>) {
    if r.delivered {
        (CallEvent::PushDelivered, None)
    } else if r.devices == 0 || r.error == "no_device" {
        (CallEvent::PushFailed, Some(CallEndReason::NoDevice))
    } else {
        (CallEvent::PushFailed, Some(CallEndReason::PushFailed))
    }
}

impl Handler for PushResults {
    fn handle(&self, event: Incoming) -> BoxFuture<'_, Result<(), HandlerError>> {
        Box::pin(async move {
            let r: proto::PushResult = event
                .payload()
                .map_err(|e| HandlerError::Permanent(e.into()))?;
            if r.purpose != INCOMING_CALL {
                return Ok(());
            }
            let Ok(id) = Uuid::parse_str(&r.ref_id) else {
                return Err(HandlerError::Permanent(anyhow::anyhow!(
                    "push result for `{}`, which is not a call id",
                    r.ref_id
                )));
            };
            let (call_event, reason) = event_of(&r);
            let ctx = &self.ctx;
            let mut conn = db::pool::conn(&ctx.pool).await?;
            let applied = conn
                .transaction::<Option<(Call, Applied)>, db::DbError, _>(async |c| {
                    if !mark_processed(c, CONSUMER, event.id).await? {
                        return Ok(None);
                    }
                    let Some(mut call) = db::queries::calls::lock(c, id).await? else {
                        return Ok(None);
                    };
                    match lifecycle::apply(c, ctx, &mut call, call_event, reason).await {
                        Ok(a) => Ok(Some((call, a?))),
                        // Late (the caller cancelled, the push timeout fired): moot.
                        Err(_) => Ok(None),
                    }
                })
                .await?;
            if let Some((call, a)) = applied {
                metrics::counter!("call_push_results_total", "delivered" => r.delivered.to_string())
                    .increment(1);
                if a.delete_room {
                    lifecycle::delete_room(ctx, &call.room_name).await;
                }
            }
            Ok(())
        })
    }
}
