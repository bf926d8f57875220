//! Applying moderation's decisions: session-manager owns `live_sessions` and
//! `live_messages`, so moderation publishes `moderation.terminated` and
//! `moderation.message_deleted` and this consumer applies them, through the same state
//! machine and in the same transaction as the handled-event mark.
//!
//! - `moderation.terminated` → the session ends with `admin_terminated` (any non-ended
//!   state may end) and its LiveKit room is deleted; an ended session is left as it is.
//! - `moderation.message_deleted` → `live_messages.deleted_at`/`deleted_by` set and
//!   `session.message_deleted` (`MessagePosted` with `deleted = true`) published; a message
//!   already deleted changes nothing.

use bus::consumer::{Handler, HandlerError, mark_processed};
use bus::{Event, Family, Incoming, proto};
use chrono::Utc;
use db::queries::{moderation as mq, sessions};
use diesel_async::AsyncConnection;
use domain::session::{EndReason, SessionEvent};
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::lifecycle::{self, Ctx};

pub const CONSUMER: &str = "session-manager-moderation";

/// The events this consumer handles.
pub const EVENTS: [&str; 2] = ["moderation.terminated", "moderation.message_deleted"];

pub struct ModerationEvents {
    pub ctx: Ctx,
}

fn uuid(s: &str) -> Option<Uuid> {
    Uuid::parse_str(s).ok()
}

impl Handler for ModerationEvents {
    fn handle(&self, event: Incoming) -> BoxFuture<'_, Result<(), HandlerError>> {
        Box::pin(async move {
            let p: proto::ModerationAction = event
                .payload()
                .map_err(|e| HandlerError::Permanent(e.into()))?;
            let ctx = &self.ctx;
            let mut conn = db::pool::conn(&ctx.pool).await?;
            let delete = conn
                .transaction::<Option<String>, db::DbError, _>(async |c| {
                    if !mark_processed(c, CONSUMER, event.id).await? {
                        return Ok(None);
                    }
                    match event.event_type.as_str() {
                        "moderation.terminated" => {
                            let Some(id) = uuid(&p.session_id) else {
                                return Ok(None);
                            };
                            let Some(mut s) = sessions::lock(c, id).await? else {
                                return Ok(None);
                            };
                            let end = SessionEvent::End(EndReason::AdminTerminated);
                            match lifecycle::apply(c, ctx, &mut s, end, Utc::now()).await {
                                Ok(ended) => {
                                    tracing::info!(session.id = %s.id, actor.id = %p.actor_id, "session terminated by an operator");
                                    Ok(ended?.then(|| s.room_name.clone()))
                                }
                                Err(_) => Ok(None), // already ended
                            }
                        }
                        "moderation.message_deleted" => {
                            let Some(id) = uuid(&p.message_id) else {
                                return Ok(None);
                            };
                            if let Some((m, true)) =
                                mq::soft_delete_message(c, id, uuid(&p.actor_id)).await?
                            {
                                let payload = proto::MessagePosted {
                                    session_id: m.session_id.to_string(),
                                    message_id: m.id.to_string(),
                                    user_id: m.user_id.to_string(),
                                    body: String::new(),
                                    deleted: true,
                                };
                                bus::outbox::enqueue(
                                    c,
                                    &ctx.subjects,
                                    &Event::new(
                                        Family::Session,
                                        "message_deleted",
                                        m.session_id,
                                        &payload,
                                    ),
                                )
                                .await?;
                            }
                            Ok(None)
                        }
                        _ => Ok(None),
                    }
                })
                .await?;
            if let Some(room) = delete {
                lifecycle::delete_room(ctx, &room).await;
            }
            Ok(())
        })
    }
}
