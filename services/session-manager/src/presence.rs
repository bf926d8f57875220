//! Following LiveKit: `livekit.*` events → presence, counts and the host's transitions.

use bus::consumer::{Handler, HandlerError, mark_processed};
use bus::{Event, Family, Incoming, proto};
use chrono::{DateTime, Utc};
use db::models::LiveSession;
use db::queries::sessions::{self, Presence};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use domain::roles::audience_role;
use domain::rooms::{RoomRef, parse_room};
use domain::session::{EndReason, SessionEvent, SessionStatus, SessionType};
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::lifecycle::{self, Ctx, TxResult, status_of};

pub const CONSUMER: &str = "session-manager-livekit";

/// What happened to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionChange<'a> {
    Joined,
    Left { reason: &'a str },
}

pub struct LiveKitEvents {
    pub ctx: Ctx,
}

impl Handler for LiveKitEvents {
    fn handle(&self, event: Incoming) -> BoxFuture<'_, Result<(), HandlerError>> {
        Box::pin(async move {
            let p: proto::LiveKitEvent = event
                .payload()
                .map_err(|e| HandlerError::Permanent(e.into()))?;
            let Some(RoomRef::Session { id, .. }) = parse_room(&p.room_name) else {
                return Ok(()); // a call room, or a room that is not ours
            };
            let ctx = &self.ctx;
            let mut conn = db::pool::conn(&ctx.pool).await?;
            let delete = conn
                .transaction::<Option<String>, db::DbError, _>(async |c| {
                    if !mark_processed(c, CONSUMER, event.id).await? {
                        return Ok(None);
                    }
                    let Some(mut s) = sessions::lock(c, id.as_uuid()).await? else {
                        return Ok(None);
                    };
                    let ended = on_livekit_event(c, ctx, &mut s, &p).await?;
                    Ok(ended.then(|| s.room_name.clone()))
                })
                .await?;
            if let Some(room) = delete {
                lifecycle::delete_room(ctx, &room).await;
            }
            Ok(())
        })
    }
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or_else(Utc::now)
}

/// Applies one LiveKit event to a locked session; returns whether the session ended.
async fn on_livekit_event(
    c: &mut AsyncPgConnection,
    ctx: &Ctx,
    s: &mut LiveSession,
    p: &proto::LiveKitEvent,
) -> TxResult<bool> {
    let when = at(p.created_at);
    match p.event.as_str() {
        "participant_joined" => {
            refresh_participant(
                c,
                ctx,
                s,
                &p.participant_identity,
                &p.participant_sid,
                ConnectionChange::Joined,
                when,
            )
            .await
        }
        "participant_left" | "participant_connection_aborted" => {
            let change = ConnectionChange::Left {
                reason: &p.disconnect_reason,
            };
            refresh_participant(
                c,
                ctx,
                s,
                &p.participant_identity,
                &p.participant_sid,
                change,
                when,
            )
            .await
        }
        "room_finished" if status_of(s) != SessionStatus::Ended => {
            end(c, ctx, s, EndReason::RoomFinished, when).await
        }
        _ => {
            s.last_activity_at = Utc::now();
            sessions::save(c, s).await?;
            Ok(false)
        }
    }
}

/// Ends a session if it is not ended yet; returns whether it ended now.
pub async fn end(
    c: &mut AsyncPgConnection,
    ctx: &Ctx,
    s: &mut LiveSession,
    reason: EndReason,
    when: DateTime<Utc>,
) -> TxResult<bool> {
    match lifecycle::apply(c, ctx, s, SessionEvent::End(reason), when).await {
        Ok(r) => r,
        Err(_) => Ok(false),
    }
}

/// Recomputes one user's presence after a change of one of their connections (already
/// recorded in `livekit_participations`), the host's state, and the counts. Returns whether
/// the session ended.
pub async fn refresh_participant(
    c: &mut AsyncPgConnection,
    ctx: &Ctx,
    s: &mut LiveSession,
    identity: &str,
    sid: &str,
    change: ConnectionChange<'_>,
    when: DateTime<Utc>,
) -> TxResult<bool> {
    let late = s.last_event_at.is_some_and(|last| when <= last);
    s.last_event_at = Some(s.last_event_at.map_or(when, |last| last.max(when)));
    s.last_activity_at = Utc::now();
    let Ok(user) = Uuid::parse_str(identity) else {
        // Not one of our users (an egress, an agent): nothing to track.
        sessions::save(c, s).await?;
        return Ok(false);
    };
    let is_host = user == s.creator_id;
    let session_type: SessionType = s.session_type.parse().unwrap_or(SessionType::VideoLive);
    // A late event for an ended session still completes its record (who was there, the
    // peak, when it started), but changes no state and tells nobody.
    let was_ended = status_of(s) == SessionStatus::Ended;
    let active = !was_ended && sessions::has_open_connection(c, &s.room_name, identity).await?;
    let role = if is_host {
        "host"
    } else {
        audience_role(session_type).as_str()
    };
    sessions::upsert_presence(
        c,
        &Presence {
            session: s.id,
            user,
            role,
            active,
            sid: (change == ConnectionChange::Joined).then_some(sid),
            joined_at: (change == ConnectionChange::Joined).then_some(when),
            left_at: (!active).then_some(when),
        },
    )
    .await?;
    if let ConnectionChange::Left { reason } = change
        && !active
        && !was_ended
        && !is_host
        && reason != "DUPLICATE_IDENTITY"
    {
        // A guest who leaves the room loses the stage.
        crate::stage::on_departure(c, ctx, s, user).await?;
    }
    if change == ConnectionChange::Joined && active && !was_ended && !is_host {
        // An ex-guest may come back with a token from their time on stage.
        crate::stage::on_join(c, ctx, s, user).await?;
    }
    let host = s.creator_id.to_string();
    s.viewer_count = sessions::active_viewers(c, s.id).await? as i32;
    s.peak_viewers = if late || was_ended {
        sessions::peak_audience(c, &s.room_name, &host).await? as i32
    } else {
        s.peak_viewers
            .max(sessions::open_audience_connections(c, &s.room_name, &host).await? as i32)
    };
    let mut ended = false;
    let mut transitioned = false;
    if is_host && !was_ended {
        let event = match change {
            ConnectionChange::Joined if active => Some(SessionEvent::HostJoined),
            // A DUPLICATE_IDENTITY leave is a replacement (the host reconnected), not a departure.
            ConnectionChange::Left { reason } if !active && reason != "DUPLICATE_IDENTITY" => {
                Some(SessionEvent::HostLeft)
            }
            _ => None,
        };
        if let Some(event) = event
            && let Ok(result) = lifecycle::apply(c, ctx, s, event, when).await
        {
            ended = result?;
            transitioned = true;
        }
    }
    if is_host && change == ConnectionChange::Joined && (s.started_at.is_some() || was_ended) {
        // The session started at the host's first join, whatever order the joins came in.
        if let Some(first) = sessions::earliest_join(c, &s.room_name, identity).await? {
            s.started_at = Some(s.started_at.map_or(first, |t| t.min(first)));
        }
        if let (Some(start), Some(end)) = (s.started_at, s.ended_at) {
            s.total_duration_seconds = (end - start).num_seconds().max(0);
        }
        sessions::save(c, s).await?;
    } else if !transitioned {
        sessions::save(c, s).await?;
    }
    if was_ended {
        return Ok(false);
    }
    let name = if active {
        "participant_joined"
    } else {
        "participant_left"
    };
    let payload = proto::SessionParticipantChanged {
        session_id: s.id.to_string(),
        user_id: user.to_string(),
        role: role.to_owned(),
        active,
        viewer_count: s.viewer_count,
    };
    bus::outbox::enqueue(
        c,
        &ctx.subjects,
        &Event::new(Family::Session, name, s.id, &payload),
    )
    .await?;
    Ok(ended)
}
