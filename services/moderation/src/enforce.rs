//! The ban enforcer: self-hosted LiveKit cannot revoke a token and refreshes it for
//! connected clients, so a banned user may get back in with an old token. Every
//! `livekit.participant_joined` of a session room is checked against the session, creator
//! and global bans, and a banned identity is removed at once.
//!
//! Idempotent without a transaction around the effect: the removal is itself idempotent
//! (removing someone who is not there is fine), so the event is marked handled only after
//! the removal succeeded, and a redelivery at worst removes them again.

use std::sync::Arc;

use bus::consumer::{Handler, HandlerError, mark_processed};
use bus::{Incoming, proto};
use db::queries::{moderation as mq, sessions};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use domain::rooms::{RoomRef, parse_room};
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::events::{self, Action, actions};

pub const CONSUMER: &str = "moderation-bans";

pub struct BanEnforcer {
    pub pool: db::Pool,
    pub rooms: Arc<dyn livekit::RoomService>,
    pub subjects: bus::Subjects,
}

impl Handler for BanEnforcer {
    fn handle(&self, event: Incoming) -> BoxFuture<'_, Result<(), HandlerError>> {
        Box::pin(async move {
            let p: proto::LiveKitEvent = event
                .payload()
                .map_err(|e| HandlerError::Permanent(e.into()))?;
            if p.event != "participant_joined" {
                return Ok(());
            }
            let Some(RoomRef::Session { id, .. }) = parse_room(&p.room_name) else {
                return Ok(());
            };
            let Ok(user) = Uuid::parse_str(&p.participant_identity) else {
                return Ok(()); // an egress, an agent: not one of our users
            };
            let mut conn = db::pool::conn(&self.pool).await?;
            if !banned(&mut conn, id.as_uuid(), user).await? {
                return Ok(());
            }
            self.rooms
                .remove_participant(&p.room_name, &p.participant_identity)
                .await
                .map_err(|e| HandlerError::Retry(e.into()))?;
            tracing::info!(session.id = %id.as_uuid(), user.id = %user, "banned participant removed from the room");
            metrics::counter!("moderation_banned_removed_total").increment(1);
            let subjects = &self.subjects;
            conn.transaction::<(), diesel::result::Error, _>(async |c| {
                if mark_processed(c, CONSUMER, event.id).await? {
                    events::publish(
                        c,
                        subjects,
                        actions::BANNED_REMOVED,
                        Action {
                            session: Some(id.as_uuid()),
                            user: Some(user),
                            ..Default::default()
                        },
                    )
                    .await?;
                }
                Ok(())
            })
            .await?;
            Ok(())
        })
    }
}

/// Whether `user` may not be in `session`: session, creator or global ban. The host of the
/// session is never removed from it by a session or creator ban (those cannot name them).
async fn banned(c: &mut AsyncPgConnection, session: Uuid, user: Uuid) -> Result<bool, db::DbError> {
    let Some(s) = sessions::find(c, session).await? else {
        return Ok(false);
    };
    mq::is_banned(c, s.id, s.creator_id, user).await
}
