//! `calls` and `call_busy` (call-signaling).
//!
//! Busy is the database's promise, not only the code's: a user is a party of at most one
//! active call because `call_busy` has the user as its primary key, and [`occupy`] inserts
//! both parties' rows in one statement, in a fixed order, so two racing calls to the same
//! person cannot both hold them (and two people calling each other cannot deadlock).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::DbResult;
use crate::models::{Call, NewCall};
use crate::schema::{call_busy, calls, creator_bans, user_blocks};

pub async fn insert(conn: &mut AsyncPgConnection, call: &NewCall<'_>) -> DbResult<Call> {
    Ok(diesel::insert_into(calls::table)
        .values(call)
        .returning(Call::as_returning())
        .get_result(conn)
        .await?)
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> DbResult<Option<Call>> {
    Ok(calls::table
        .find(id)
        .select(Call::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The call, locked for the rest of the transaction: requests of both parties, push
/// results, LiveKit's reports and deadlines all change a call under this lock, so of two
/// racing changes exactly one sees the state it expects.
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> DbResult<Option<Call>> {
    Ok(calls::table
        .find(id)
        .for_update()
        .select(Call::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Writes what a transition changes back (the parties, type and room never change).
pub async fn save(conn: &mut AsyncPgConnection, call: &Call) -> DbResult<()> {
    diesel::update(calls::table.find(call.id))
        .set((
            calls::status.eq(&call.status),
            calls::ended_reason.eq(&call.ended_reason),
            calls::ringing_at.eq(call.ringing_at),
            calls::answered_at.eq(call.answered_at),
            calls::live_at.eq(call.live_at),
            calls::ended_at.eq(call.ended_at),
            calls::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks both parties busy with `call`. Returns `false` when either already is (the rows
/// that could be inserted stay; the caller rolls the transaction back).
pub async fn occupy(conn: &mut AsyncPgConnection, call: Uuid, a: Uuid, b: Uuid) -> DbResult<bool> {
    let (first, second) = if a < b { (a, b) } else { (b, a) };
    let inserted = diesel::insert_into(call_busy::table)
        .values(&[
            (call_busy::user_id.eq(first), call_busy::call_id.eq(call)),
            (call_busy::user_id.eq(second), call_busy::call_id.eq(call)),
        ])
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 2)
}

/// Frees the parties of `call` (it left the active states).
pub async fn release(conn: &mut AsyncPgConnection, call: Uuid) -> DbResult<usize> {
    Ok(
        diesel::delete(call_busy::table.filter(call_busy::call_id.eq(call)))
            .execute(conn)
            .await?,
    )
}

/// Which of `users` are in an active call right now.
pub async fn busy_users(conn: &mut AsyncPgConnection, users: &[Uuid]) -> DbResult<Vec<Uuid>> {
    Ok(call_busy::table
        .filter(call_busy::user_id.eq_any(users))
        .select(call_busy::user_id)
        .load(conn)
        .await?)
}

/// Whether `callee` refuses calls from `caller`: blocked them, or banned them from its
/// sessions as a creator.
pub async fn refuses(conn: &mut AsyncPgConnection, callee: Uuid, caller: Uuid) -> DbResult<bool> {
    let blocked = user_blocks::table
        .filter(user_blocks::blocker_id.eq(callee))
        .filter(user_blocks::blocked_id.eq(caller));
    let banned = creator_bans::table
        .filter(creator_bans::creator_id.eq(callee))
        .filter(creator_bans::user_id.eq(caller));
    Ok(
        diesel::select(diesel::dsl::exists(blocked).or(diesel::dsl::exists(banned)))
            .get_result(conn)
            .await?,
    )
}

/// A user's calls (as either party), newest first, after a `(created_at, id)` cursor.
pub async fn history(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    status: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> DbResult<Vec<Call>> {
    let mut q = calls::table
        .filter(calls::caller_id.eq(user).or(calls::callee_id.eq(user)))
        .select(Call::as_select())
        .order((calls::created_at.desc(), calls::id.desc()))
        .limit(limit)
        .into_boxed();
    if let Some(s) = status {
        q = q.filter(calls::status.eq(s));
    }
    if let Some((at, id)) = after {
        q = q.filter(
            calls::created_at
                .lt(at)
                .or(calls::created_at.eq(at).and(calls::id.lt(id))),
        );
    }
    Ok(q.load(conn).await?)
}

/// Active calls (for reconciliation and the operators), oldest first.
pub async fn active(conn: &mut AsyncPgConnection, limit: i64) -> DbResult<Vec<Call>> {
    Ok(calls::table
        .filter(calls::status.eq_any(["initiated", "ringing", "accepted", "live"]))
        .select(Call::as_select())
        .order(calls::created_at.asc())
        .limit(limit)
        .load(conn)
        .await?)
}
