//! Applying the call state machine to a locked row: the transition itself comes from
//! `domain::call::next`; this module adds what each transition does to the row, the busy
//! rows, the deadlines and the events, in the caller's transaction.

use std::sync::Arc;
use std::time::Duration;

use bus::{Event, Family, proto};
use chrono::{DateTime, Utc};
use db::models::Call;
use db::queries::calls;
use diesel_async::AsyncPgConnection;
use domain::InvalidTransition;
use domain::call::{CallEndReason, CallEvent, CallStatus};
use livekit::RoomService;

/// Deadline kinds of this service.
pub mod kinds {
    pub const PUSH_TIMEOUT: &str = "call.push_timeout";
    pub const RING_TIMEOUT: &str = "call.ring_timeout";
    pub const JOIN_TIMEOUT: &str = "call.join_timeout";
    pub const PARTY_GRACE: &str = "call.party_grace";
    pub const MAX_DURATION: &str = "call.max_duration";
    /// The periodic reconciliation with LiveKit (one pending row for all calls).
    pub const RECONCILE: &str = "call.reconcile";
    pub const ALL: [&str; 6] = [
        PUSH_TIMEOUT,
        RING_TIMEOUT,
        JOIN_TIMEOUT,
        PARTY_GRACE,
        MAX_DURATION,
        RECONCILE,
    ];
}

/// Timings of a call's life.
#[derive(Debug, Clone)]
pub struct Timings {
    /// `CALL_PUSH_TIMEOUT_SECONDS` (5): initiated without a push result → failed.
    pub push_timeout: Duration,
    /// `CALL_RING_TIMEOUT_SECONDS` (30): ringing → missed.
    pub ring_timeout: Duration,
    /// `CALL_JOIN_TIMEOUT_SECONDS` (30): accepted, not both in the room → failed.
    pub join_timeout: Duration,
    /// `CALL_PARTY_GRACE_SECONDS` (15): a dropped party has this long to come back.
    pub party_grace: Duration,
    /// `CALL_MAX_SECONDS` (14400): a call is ended after this long.
    pub max_duration: Duration,
    /// `RECONCILE_INTERVAL_SECONDS` (60): how often answered calls are compared with LiveKit.
    pub reconcile_every: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            push_timeout: Duration::from_secs(5),
            ring_timeout: Duration::from_secs(30),
            join_timeout: Duration::from_secs(30),
            party_grace: Duration::from_secs(15),
            max_duration: Duration::from_secs(14_400),
            reconcile_every: Duration::from_secs(60),
        }
    }
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

pub fn status_of(c: &Call) -> CallStatus {
    // The column is checked by the database; an unknown value cannot be read.
    c.status.parse().unwrap_or(CallStatus::Failed)
}

fn after(d: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::seconds(0))
}

/// The event a call change publishes: `call.<new status>`.
pub fn call_event(c: &Call, previous: &str) -> Event {
    let payload = proto::CallChanged {
        call_id: c.id.to_string(),
        caller_id: c.caller_id.to_string(),
        callee_id: c.callee_id.to_string(),
        call_type: c.call_type.clone(),
        status: c.status.clone(),
        previous_status: previous.to_owned(),
        room_name: c.room_name.clone(),
        ended_reason: c.ended_reason.clone().unwrap_or_default(),
    };
    Event::new(Family::Call, &c.status, c.id, &payload)
}

/// What a transition left to do after the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub to: CallStatus,
    /// The call is over: its LiveKit room should go.
    pub delete_room: bool,
}

/// Applies `event` to the locked call `c` (with `reason` when it ends it), saves it, and
/// writes its deadlines, busy rows and event. The state machine refuses with
/// [`InvalidTransition`] before anything is written.
pub async fn apply(
    conn: &mut AsyncPgConnection,
    ctx: &Ctx,
    c: &mut Call,
    event: CallEvent,
    reason: Option<CallEndReason>,
) -> Result<TxResult<Applied>, InvalidTransition> {
    let from = status_of(c);
    let to = domain::call::next(from, event)?;
    Ok(effects(conn, ctx, c, from, to, reason).await)
}

async fn effects(
    conn: &mut AsyncPgConnection,
    ctx: &Ctx,
    c: &mut Call,
    from: CallStatus,
    to: CallStatus,
    reason: Option<CallEndReason>,
) -> TxResult<Applied> {
    let now = Utc::now();
    let t = &ctx.timings;
    let previous = c.status.clone();
    c.status = to.as_str().to_owned();
    match to {
        CallStatus::Ringing => {
            c.ringing_at = Some(now);
            bus::deadlines::cancel(conn, kinds::PUSH_TIMEOUT, c.id).await?;
            bus::deadlines::schedule(
                conn,
                kinds::RING_TIMEOUT,
                c.id,
                after(t.ring_timeout),
                serde_json::json!({}),
            )
            .await?;
        }
        CallStatus::Accepted => {
            c.answered_at = Some(now);
            bus::deadlines::cancel(conn, kinds::RING_TIMEOUT, c.id).await?;
            bus::deadlines::schedule(
                conn,
                kinds::JOIN_TIMEOUT,
                c.id,
                after(t.join_timeout),
                serde_json::json!({}),
            )
            .await?;
        }
        CallStatus::Live => {
            c.live_at = Some(now);
            bus::deadlines::cancel(conn, kinds::JOIN_TIMEOUT, c.id).await?;
            bus::deadlines::schedule(
                conn,
                kinds::MAX_DURATION,
                c.id,
                after(t.max_duration),
                serde_json::json!({}),
            )
            .await?;
        }
        _ if to.is_terminal() => {
            c.ended_at = Some(now);
            c.ended_reason = Some(reason.unwrap_or_else(|| default_reason(to)).as_str().into());
            calls::release(conn, c.id).await?;
            bus::deadlines::cancel_all(conn, c.id).await?;
        }
        _ => {}
    }
    observe(c, from, to, now);
    calls::save(conn, c).await?;
    bus::outbox::enqueue(conn, &ctx.subjects, &call_event(c, &previous)).await?;
    tracing::info!(call.id = %c.id, from = %previous, to = %c.status, reason = c.ended_reason.as_deref().unwrap_or(""), "call {}", c.status);
    Ok(Applied {
        to,
        delete_room: to.is_terminal(),
    })
}

/// The reason a terminal status implies when the event did not give one.
fn default_reason(to: CallStatus) -> CallEndReason {
    match to {
        CallStatus::Rejected => CallEndReason::Rejected,
        CallStatus::Missed => CallEndReason::NoAnswer,
        CallStatus::Cancelled => CallEndReason::Cancelled,
        CallStatus::Busy => CallEndReason::CalleeBusy,
        CallStatus::Failed => CallEndReason::Network,
        _ => CallEndReason::BothLeft,
    }
}

/// Metrics of a transition: the outcome of a call that ended, and how long it rang when
/// the ringing stopped (answered, declined, missed or cancelled).
pub fn observe(c: &Call, from: CallStatus, to: CallStatus, now: DateTime<Utc>) {
    if to.is_terminal() {
        metrics::counter!("calls_total", "outcome" => to.as_str()).increment(1);
    }
    if from == CallStatus::Ringing
        && let Some(rang) = c.ringing_at
    {
        metrics::histogram!("call_ring_seconds", "outcome" => to.as_str())
            .record((now - rang).num_milliseconds().max(0) as f64 / 1000.0);
    }
}

/// Deletes a call's LiveKit room (best effort: LiveKit finishes empty rooms anyway).
pub async fn delete_room(ctx: &Ctx, room: &str) {
    if let Err(e) = ctx.rooms.delete_room(room).await {
        tracing::warn!(room.name = %room, error = %e, "could not delete the call's LiveKit room");
    }
}
