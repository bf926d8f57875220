//! Applying the session state machine to a locked row: the transition itself comes from
//! `domain::session::next`; this module adds what each transition does to the row, its
//! deadlines and its events, in the caller's transaction.

use std::sync::Arc;
use std::time::Duration;

use bus::{Event, Family, proto};
use chrono::{DateTime, Utc};
use db::models::LiveSession;
use db::queries::sessions;
use diesel_async::AsyncPgConnection;
use domain::InvalidTransition;
use domain::session::{EndReason, SessionEvent, SessionStatus};
use livekit::RoomService;

/// Deadline kinds of this service.
pub mod kinds {
    pub const HOST_GRACE: &str = "session.host_grace";
    pub const NO_SHOW: &str = "session.no_show";
    pub const MAX_DURATION: &str = "session.max_duration";
    pub const RECONCILE: &str = "session.reconcile";
    /// A stage invitation or request expires (subject: its id).
    pub const STAGE_EXPIRE: &str = "stage.expire";
    pub const ALL: [&str; 5] = [HOST_GRACE, NO_SHOW, MAX_DURATION, RECONCILE, STAGE_EXPIRE];
}

/// Timings of the session lifecycle.
#[derive(Debug, Clone)]
pub struct Timings {
    pub host_grace: Duration,
    pub no_show: Duration,
    pub max_duration: Duration,
    pub orphan_after: Duration,
    pub reconcile_every: Duration,
}

/// What the lifecycle needs besides the connection.
#[derive(Clone)]
pub struct Ctx {
    pub subjects: bus::Subjects,
    pub rooms: Arc<dyn RoomService>,
    pub timings: Timings,
    pub pool: db::Pool,
}

pub type TxResult<T> = Result<T, db::DbError>;

pub fn status_of(s: &LiveSession) -> SessionStatus {
    s.status.parse().unwrap_or(SessionStatus::Ended)
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::seconds(0))
}

/// The event a session change publishes.
pub fn session_event(s: &LiveSession, name: &str, previous: &str) -> Event {
    let payload = proto::SessionChanged {
        session_id: s.id.to_string(),
        creator_id: s.creator_id.to_string(),
        session_type: s.session_type.clone(),
        access_type: s.access_type.clone(),
        room_name: s.room_name.clone(),
        status: s.status.clone(),
        previous_status: previous.to_owned(),
        end_reason: s.end_reason.clone().unwrap_or_default(),
        viewer_count: s.viewer_count,
        peak_viewers: s.peak_viewers,
        title: s.title.clone(),
    };
    Event::new(Family::Session, name, s.id, &payload)
}

/// Applies `event` at `at` to the locked session `s`, saves it and writes its event.
/// Returns whether the LiveKit room should now be deleted (the session ended).
pub async fn apply(
    c: &mut AsyncPgConnection,
    ctx: &Ctx,
    s: &mut LiveSession,
    event: SessionEvent,
    at: DateTime<Utc>,
) -> Result<TxResult<bool>, InvalidTransition> {
    let from = status_of(s);
    let to = domain::session::next(from, event)?;
    Ok(effects(c, ctx, s, from, to, event, at).await)
}

async fn effects(
    c: &mut AsyncPgConnection,
    ctx: &Ctx,
    s: &mut LiveSession,
    from: SessionStatus,
    to: SessionStatus,
    event: SessionEvent,
    at: DateTime<Utc>,
) -> TxResult<bool> {
    let previous = s.status.clone();
    s.status = to.as_str().to_owned();
    s.last_activity_at = Utc::now();
    let now = Utc::now();
    let name = match (from, to) {
        (SessionStatus::Created, SessionStatus::Live) => {
            s.started_at = Some(at);
            bus::deadlines::cancel(c, kinds::NO_SHOW, s.id).await?;
            bus::deadlines::schedule(
                c,
                kinds::MAX_DURATION,
                s.id,
                now + chrono(ctx.timings.max_duration),
                serde_json::json!({}),
            )
            .await?;
            "live"
        }
        (SessionStatus::HostDisconnected, SessionStatus::Live) => {
            s.host_left_at = None;
            bus::deadlines::cancel(c, kinds::HOST_GRACE, s.id).await?;
            "host_returned"
        }
        (SessionStatus::Paused, SessionStatus::Live) => "resumed",
        (_, SessionStatus::Paused) => "paused",
        (_, SessionStatus::HostDisconnected) => {
            s.host_left_at = Some(at);
            bus::deadlines::schedule(
                c,
                kinds::HOST_GRACE,
                s.id,
                now + chrono(ctx.timings.host_grace),
                serde_json::json!({ "hostLeftAt": at }),
            )
            .await?;
            "host_disconnected"
        }
        (_, SessionStatus::Ended) => {
            let reason = match event {
                SessionEvent::End(r) => r,
                _ => EndReason::RoomFinished,
            };
            if s.started_at.is_none() {
                // The host may have been in the room without the session going live (its
                // join and leave delivered in reverse): it started at that join.
                s.started_at =
                    sessions::earliest_join(c, &s.room_name, &s.creator_id.to_string()).await?;
            }
            let ended_at = at.max(s.started_at.unwrap_or(at)).max(s.created_at);
            s.ended_at = Some(ended_at);
            s.end_reason = Some(reason.as_str().to_owned());
            s.host_left_at = if to == SessionStatus::HostDisconnected {
                s.host_left_at
            } else {
                None
            };
            s.total_duration_seconds = s
                .started_at
                .map(|st| (ended_at - st).num_seconds().max(0))
                .unwrap_or(0);
            let host = s.creator_id.to_string();
            s.peak_viewers = sessions::peak_audience(c, &s.room_name, &host)
                .await?
                .max(0) as i32;
            s.viewer_count = 0;
            sessions::deactivate_all(c, s.id, ended_at).await?;
            bus::deadlines::cancel_all(c, s.id).await?;
            crate::stage::on_session_end(c, ctx, s).await?;
            "ended"
        }
        _ => "changed",
    };
    sessions::save(c, s).await?;
    bus::outbox::enqueue(c, &ctx.subjects, &session_event(s, name, &previous)).await?;
    tracing::info!(session.id = %s.id, from = %previous, to = %s.status, "session {name}");
    metrics::counter!("session_transitions_total", "to" => s.status.clone()).increment(1);
    Ok(to == SessionStatus::Ended)
}

/// Deletes a session's LiveKit room (best effort: LiveKit finishes empty rooms anyway).
pub async fn delete_room(ctx: &Ctx, room: &str) {
    if let Err(e) = ctx.rooms.delete_room(room).await {
        tracing::warn!(room.name = %room, error = %e, "could not delete the LiveKit room");
    }
}
