//! Reconciliation of answered calls with LiveKit. Webhooks can be lost (LiveKit drops an
//! event queued too long, a node crash loses its queue): a live call whose leave or
//! `room_finished` never arrived would otherwise stay live until `CALL_MAX_SECONDS`. Every
//! `RECONCILE_INTERVAL_SECONDS` one replica (a periodic deadline) compares each answered
//! call with `ListRooms`/`ListParticipants`, records what LiveKit says as the connection
//! facts a webhook would have written, and applies them through the same handler.

use std::collections::HashSet;

use bus::proto;
use chrono::Utc;
use db::models::Call;
use db::queries::calls;
use db::queries::webhooks::{self, ConnectionFact};
use diesel_async::AsyncConnection;
use domain::call::CallStatus;
use uuid::Uuid;

use crate::lifecycle::{self, Ctx, status_of};
use crate::room_events::{on_room_event, party};

/// The subject of the one periodic reconciliation deadline.
pub const SUBJECT: Uuid = Uuid::nil();

/// Reconciles every answered call; returns how many were repaired.
pub async fn reconcile_all(ctx: &Ctx) -> anyhow::Result<usize> {
    let answered: Vec<Call> = {
        let mut conn = db::pool::conn(&ctx.pool).await?;
        calls::active(&mut conn, 1000)
            .await?
            .into_iter()
            .filter(|c| matches!(status_of(c), CallStatus::Accepted | CallStatus::Live))
            .collect()
    };
    if answered.is_empty() {
        return Ok(0);
    }
    let names: Vec<String> = answered.iter().map(|c| c.room_name.clone()).collect();
    let rooms = ctx
        .rooms
        .list_rooms(&names)
        .await
        .map_err(|e| anyhow::anyhow!("ListRooms: {e}"))?;
    let existing: HashSet<String> = rooms.into_iter().map(|r| r.name).collect();
    let mut repaired = 0;
    for call in answered {
        match reconcile(ctx, &call, existing.contains(&call.room_name)).await {
            Ok(true) => repaired += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(call.id = %call.id, error = %e, "reconciliation of one call failed")
            }
        }
    }
    Ok(repaired)
}

/// A webhook-shaped fact for the room handler.
fn fact(call: &Call, event: &str, sid: &str, identity: &str, reason: &str) -> proto::LiveKitEvent {
    proto::LiveKitEvent {
        event: event.to_owned(),
        room_name: call.room_name.clone(),
        participant_sid: sid.to_owned(),
        participant_identity: identity.to_owned(),
        disconnect_reason: reason.to_owned(),
        ..Default::default()
    }
}

/// Reconciles one call; returns whether anything was repaired.
async fn reconcile(ctx: &Ctx, snapshot: &Call, room_exists: bool) -> anyhow::Result<bool> {
    // Connections recorded after LiveKit was asked are newer than its answer.
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
            let Some(mut call) = calls::lock(c, snapshot.id).await? else {
                return Ok((false, false));
            };
            let mut facts = Vec::new();
            if !room_exists {
                facts.push(fact(&call, "room_finished", "", "", ""));
            } else {
                let now = Utc::now();
                let live_sids: HashSet<&str> = in_livekit.iter().map(|p| p.sid.as_str()).collect();
                for k in webhooks::connections(c, &call.room_name).await? {
                    let open = k.joined_at.is_some() && k.left_at.is_none();
                    if open
                        && k.created_at < asked_at
                        && !live_sids.contains(k.participant_sid.as_str())
                    {
                        // Its leave was lost.
                        webhooks::record_connection(
                            c,
                            &k.participant_sid,
                            &call.room_name,
                            &k.identity,
                            ConnectionFact::Left {
                                at: now,
                                reason: Some(webhooks::RECONCILED),
                            },
                        )
                        .await?;
                        facts.push(fact(
                            &call,
                            "participant_left",
                            &k.participant_sid,
                            &k.identity,
                            webhooks::RECONCILED,
                        ));
                    }
                }
                for p in &in_livekit {
                    if party(&call, &p.identity).is_none() {
                        continue;
                    }
                    let known =
                        db::queries::sessions::has_open_connection(c, &call.room_name, &p.identity)
                            .await?;
                    if !known {
                        // Its join was lost.
                        let at = chrono::DateTime::from_timestamp(p.joined_at, 0)
                            .filter(|_| p.joined_at > 0)
                            .unwrap_or(now);
                        webhooks::record_connection(
                            c,
                            &p.sid,
                            &call.room_name,
                            &p.identity,
                            ConnectionFact::Joined { at },
                        )
                        .await?;
                        facts.push(fact(&call, "participant_joined", &p.sid, &p.identity, ""));
                    }
                }
            }
            let mut delete = false;
            let repaired = !facts.is_empty();
            for f in &facts {
                if let Some(a) = on_room_event(c, ctx, &mut call, f).await? {
                    delete |= a.delete_room;
                }
            }
            Ok((repaired, delete))
        })
        .await?;
    if delete {
        lifecycle::delete_room(ctx, &snapshot.room_name).await;
    }
    if repaired {
        tracing::info!(call.id = %snapshot.id, "reconciliation repaired the call");
        metrics::counter!("call_reconciliation_repairs_total").increment(1);
    }
    Ok(repaired)
}
