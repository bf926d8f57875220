//! Deadlines (host grace, no-show, maximum duration) and the periodic reconciliation with
//! LiveKit, which also ends orphaned sessions.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use db::models::{DeadlineRow, LiveSession};
use db::queries::sessions;
use db::queries::webhooks::{self, ConnectionFact};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use domain::session::{EndReason, SessionEvent, SessionStatus};
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::lifecycle::{self, Ctx, kinds, status_of};
use crate::presence::{ConnectionChange, end, refresh_participant};

/// The subject of the one periodic reconciliation deadline.
pub const RECONCILE_SUBJECT: Uuid = Uuid::nil();

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
            match d.kind.as_str() {
                kinds::RECONCILE => {
                    let repaired = reconcile_all(&self.ctx).await?;
                    Ok(format!("reconciled:{repaired}"))
                }
                kinds::STAGE_EXPIRE => crate::stage::expire(c, &self.ctx, d).await,
                kind => self.fire_session(c, kind, d).await,
            }
        })
    }
}

impl Timers {
    async fn fire_session(
        &self,
        c: &mut AsyncPgConnection,
        kind: &str,
        d: &DeadlineRow,
    ) -> anyhow::Result<String> {
        let ctx = &self.ctx;
        let Some(mut s) = sessions::lock(c, d.subject_id).await? else {
            return Ok("gone".into());
        };
        let now = Utc::now();
        let reason = match kind {
            kinds::HOST_GRACE => {
                if status_of(&s) != SessionStatus::HostDisconnected {
                    return Ok("moot".into());
                }
                // Webhooks can be lost: ask LiveKit before ending.
                match ctx
                    .rooms
                    .get_participant(&s.room_name, &s.creator_id.to_string())
                    .await
                {
                    Ok(Some(_)) => {
                        lifecycle::apply(c, ctx, &mut s, SessionEvent::HostJoined, now)
                            .await
                            .ok();
                        return Ok("host_present".into());
                    }
                    Ok(None) => EndReason::HostDisconnected,
                    Err(e) if (now - d.due_at) < chrono::Duration::seconds(60) => {
                        anyhow::bail!("LiveKit unavailable to confirm the host's absence: {e}")
                    }
                    Err(e) => {
                        tracing::warn!(session.id = %s.id, error = %e, "LiveKit still unavailable; ending on our own record");
                        EndReason::HostDisconnected
                    }
                }
            }
            kinds::NO_SHOW => {
                if status_of(&s) != SessionStatus::Created {
                    return Ok("moot".into());
                }
                // The host's join may be recorded and not applied yet (its event held by
                // a replica that died, redelivered after the ack wait; or dead-lettered),
                // or its webhook lost: look at LiveKit's record, then ask LiveKit.
                let host = s.creator_id.to_string();
                let present = sessions::has_open_connection(c, &s.room_name, &host).await?
                    || matches!(
                        ctx.rooms.get_participant(&s.room_name, &host).await,
                        Ok(Some(_))
                    );
                if present {
                    let joined = sessions::earliest_join(c, &s.room_name, &host)
                        .await?
                        .unwrap_or(now);
                    lifecycle::apply(c, ctx, &mut s, SessionEvent::HostJoined, joined)
                        .await
                        .ok()
                        .transpose()?;
                    return Ok("host_present".into());
                }
                EndReason::NoShow
            }
            kinds::MAX_DURATION => EndReason::MaxDuration,
            other => return Ok(format!("unknown kind {other}")),
        };
        let ended = end(c, ctx, &mut s, reason, now).await?;
        if ended {
            lifecycle::delete_room(ctx, &s.room_name).await;
            Ok("ended".into())
        } else {
            Ok("moot".into())
        }
    }
}

/// Reconciles every running session with LiveKit; returns how many were repaired.
pub async fn reconcile_all(ctx: &Ctx) -> anyhow::Result<usize> {
    let running = {
        let mut conn = db::pool::conn(&ctx.pool).await?;
        sessions::not_ended(&mut conn, 1000).await?
    };
    if running.is_empty() {
        return Ok(0);
    }
    let names: Vec<String> = running.iter().map(|s| s.room_name.clone()).collect();
    let rooms = ctx
        .rooms
        .list_rooms(&names)
        .await
        .map_err(|e| anyhow::anyhow!("ListRooms: {e}"))?;
    let existing: HashSet<String> = rooms.into_iter().map(|r| r.name).collect();
    let mut repaired = 0;
    for s in running {
        match reconcile(ctx, &s, existing.contains(&s.room_name)).await {
            Ok(true) => repaired += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(session.id = %s.id, error = %e, "reconciliation of one session failed")
            }
        }
    }
    Ok(repaired)
}

/// Reconciles one session; returns whether anything was repaired.
pub async fn reconcile(
    ctx: &Ctx,
    snapshot: &LiveSession,
    room_exists: bool,
) -> anyhow::Result<bool> {
    // Only connections recorded before LiveKit was asked can be missing from its answer
    // for a reason (a lost leave); a join recorded since is newer than the answer.
    let asked_at = Utc::now() - chrono::Duration::seconds(1);
    let in_livekit = if room_exists {
        ctx.rooms
            .list_participants(&snapshot.room_name)
            .await
            .map_err(|e| anyhow::anyhow!("ListParticipants: {e}"))?
    } else {
        Vec::new()
    };
    let mut conn = db::pool::conn(&ctx.pool).await?;
    let (repaired, delete) = conn
        .transaction::<(bool, bool), anyhow::Error, _>(async |c| {
            let Some(mut s) = sessions::lock(c, snapshot.id).await? else {
                return Ok((false, false));
            };
            if status_of(&s) == SessionStatus::Ended {
                return Ok((false, false));
            }
            let now = Utc::now();
            let ours = webhooks::connections(c, &s.room_name).await?;
            let known: HashMap<&str, bool> = ours
                .iter()
                .map(|k| {
                    (
                        k.participant_sid.as_str(),
                        k.joined_at.is_some() && k.left_at.is_none(),
                    )
                })
                .collect();
            let live_sids: HashSet<&str> = in_livekit.iter().map(|p| p.sid.as_str()).collect();
            let mut repaired = false;
            let mut ended = false;
            // Connections we think open that LiveKit no longer has: their leave was lost.
            for k in ours
                .iter()
                .filter(|k| k.joined_at.is_some() && k.left_at.is_none() && k.created_at < asked_at)
            {
                if !live_sids.contains(k.participant_sid.as_str()) {
                    webhooks::record_connection(
                        c,
                        &k.participant_sid,
                        &s.room_name,
                        &k.identity,
                        ConnectionFact::Left {
                            at: now,
                            reason: Some(webhooks::RECONCILED),
                        },
                    )
                    .await?;
                    let change = ConnectionChange::Left {
                        reason: webhooks::RECONCILED,
                    };
                    ended |= refresh_participant(
                        c,
                        ctx,
                        &mut s,
                        &k.identity,
                        &k.participant_sid,
                        change,
                        now,
                    )
                    .await?;
                    repaired = true;
                }
            }
            // Participants LiveKit has that we never heard of: their join was lost.
            for p in &in_livekit {
                // A connection closed by an earlier pass that LiveKit still has: reopen it.
                if known.get(p.sid.as_str()).copied() == Some(false) && !ended {
                    webhooks::reopen_reconciled(c, &p.sid).await?;
                }
                if known.get(p.sid.as_str()).copied() != Some(true) && !ended {
                    let joined = chrono::DateTime::from_timestamp(p.joined_at, 0)
                        .filter(|_| p.joined_at > 0)
                        .unwrap_or(now);
                    webhooks::record_connection(
                        c,
                        &p.sid,
                        &s.room_name,
                        &p.identity,
                        ConnectionFact::Joined { at: joined },
                    )
                    .await?;
                    ended |= refresh_participant(
                        c,
                        ctx,
                        &mut s,
                        &p.identity,
                        &p.sid,
                        ConnectionChange::Joined,
                        joined,
                    )
                    .await?;
                    repaired = true;
                }
            }
            if !ended && !room_exists && status_of(&s) != SessionStatus::Created {
                // The room is gone and its room_finished never arrived.
                ended = end(c, ctx, &mut s, EndReason::RoomFinished, now).await?;
                repaired |= ended;
            }
            let orphan_after = chrono::Duration::from_std(ctx.timings.orphan_after)?;
            if !ended
                && in_livekit.is_empty()
                && matches!(
                    status_of(&s),
                    SessionStatus::Live | SessionStatus::Paused | SessionStatus::HostDisconnected
                )
                && (now - snapshot.last_activity_at) >= orphan_after
            {
                ended = end(c, ctx, &mut s, EndReason::OrphanedCleanup, now).await?;
                repaired |= ended;
            }
            Ok((repaired, ended))
        })
        .await?;
    if delete {
        lifecycle::delete_room(ctx, &snapshot.room_name).await;
    }
    if repaired {
        tracing::info!(session.id = %snapshot.id, "reconciliation repaired the session");
        metrics::counter!("reconciliation_repairs_total").increment(1);
    }
    Ok(repaired)
}
