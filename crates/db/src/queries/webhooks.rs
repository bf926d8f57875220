//! LiveKit's record: every verified webhook once by its id, and one row per connection
//! (participant sid) with its join and leave times as LiveKit reported them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::DbResult;
use crate::models::{NewWebhookEvent, Participation};
use crate::schema::{livekit_participations, webhook_events};

/// Stores a webhook; `false` when its id was already stored (a retry or a duplicate).
pub async fn insert_event(
    conn: &mut AsyncPgConnection,
    event: &NewWebhookEvent<'_>,
) -> DbResult<bool> {
    let inserted = diesel::insert_into(webhook_events::table)
        .values(event)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

/// A participant's connection as one webhook saw it.
#[derive(Debug, Clone, Copy)]
pub enum ConnectionFact<'a> {
    Joined {
        at: DateTime<Utc>,
    },
    Left {
        at: DateTime<Utc>,
        reason: Option<&'a str>,
    },
}

/// Leave reasons we inferred ourselves; a real leave from LiveKit replaces them.
pub const INFERRED_LEAVES: [&str; 2] = ["ROOM_FINISHED", RECONCILED];

/// Records a join or a leave of one connection. Either may arrive first; each sets only its
/// own column, once (a real leave replaces an inferred one, its time being LiveKit's own),
/// so any order of delivery ends in the same row. Written with diesel's builder so the
/// statements are prepared once per connection; the update runs only when the row existed.
pub async fn record_connection(
    conn: &mut AsyncPgConnection,
    sid: &str,
    room: &str,
    identity: &str,
    fact: ConnectionFact<'_>,
) -> DbResult<()> {
    use livekit_participations as lp;
    let (joined_at, left_at, left_reason) = match fact {
        ConnectionFact::Joined { at } => (Some(at), None, None),
        ConnectionFact::Left { at, reason } => (None, Some(at), reason),
    };
    let inserted = diesel::insert_into(lp::table)
        .values((
            lp::participant_sid.eq(sid),
            lp::room_name.eq(room),
            lp::identity.eq(identity),
            lp::joined_at.eq(joined_at),
            lp::left_at.eq(left_at),
            lp::left_reason.eq(left_reason),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if inserted == 1 {
        return Ok(());
    }
    match fact {
        ConnectionFact::Joined { at } => {
            diesel::update(
                lp::table
                    .filter(lp::participant_sid.eq(sid))
                    .filter(lp::joined_at.is_null()),
            )
            .set(lp::joined_at.eq(at))
            .execute(conn)
            .await?;
        }
        ConnectionFact::Left { at, reason } => {
            diesel::update(
                lp::table.filter(lp::participant_sid.eq(sid)).filter(
                    lp::left_at
                        .is_null()
                        .or(lp::left_reason.eq_any(INFERRED_LEAVES).assume_not_null()),
                ),
            )
            .set((lp::left_at.eq(at), lp::left_reason.eq(reason)))
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// Marks every open connection of a room as left (the room finished or was deleted).
pub async fn close_room(
    conn: &mut AsyncPgConnection,
    room: &str,
    at: DateTime<Utc>,
    reason: &str,
) -> DbResult<usize> {
    use livekit_participations as lp;
    Ok(diesel::update(
        lp::table
            .filter(lp::room_name.eq(room))
            .filter(lp::left_at.is_null()),
    )
    // Never before the connection's own join (a room_finished of an earlier incarnation).
    .set((
        lp::left_at.eq(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
        >("GREATEST(joined_at, ")
        .bind::<diesel::sql_types::Timestamptz, _>(at)
        .sql(")")),
        lp::left_reason.eq(reason),
    ))
    .execute(conn)
    .await?)
}

/// The connections of a room.
pub async fn connections(conn: &mut AsyncPgConnection, room: &str) -> DbResult<Vec<Participation>> {
    use livekit_participations as lp;
    Ok(lp::table
        .filter(lp::room_name.eq(room))
        .select(Participation::as_select())
        .load(conn)
        .await?)
}

/// Reopens a connection the reconciliation closed while LiveKit still has it.
pub async fn reopen_reconciled(conn: &mut AsyncPgConnection, sid: &str) -> DbResult<bool> {
    use livekit_participations as lp;
    let n = diesel::update(
        lp::table
            .filter(lp::participant_sid.eq(sid))
            .filter(lp::left_reason.eq(RECONCILED)),
    )
    .set((
        lp::left_at.eq(None::<DateTime<Utc>>),
        lp::left_reason.eq(None::<String>),
    ))
    .execute(conn)
    .await?;
    Ok(n > 0)
}

/// The leave reason the reconciliation records for a connection LiveKit no longer has.
pub const RECONCILED: &str = "RECONCILED";
