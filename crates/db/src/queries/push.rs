//! `push_devices`, `push_deliveries`, `live_notifications_sent`: the notifier's tables.

use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::DbResult;
use crate::models::{NewPushDelivery, PushDevice};
use crate::schema::{processed_events, push_deliveries, push_devices};

/// Registers `token` for `user`. The token is unique: registering it again updates it, and
/// a token another user registered moves to this one (the phone changed hands or accounts).
pub async fn upsert_device(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    platform: &str,
    kind: &str,
    token: &str,
) -> DbResult<PushDevice> {
    Ok(diesel::insert_into(push_devices::table)
        .values((
            push_devices::id.eq(Uuid::now_v7()),
            push_devices::user_id.eq(user),
            push_devices::platform.eq(platform),
            push_devices::kind.eq(kind),
            push_devices::token.eq(token),
        ))
        .on_conflict(push_devices::token)
        .do_update()
        .set((
            push_devices::user_id.eq(user),
            push_devices::platform.eq(platform),
            push_devices::kind.eq(kind),
            push_devices::updated_at.eq(Utc::now()),
        ))
        .returning(PushDevice::as_returning())
        .get_result(conn)
        .await?)
}

/// Removes `user`'s device with `token`; `None` when the user has no such token.
pub async fn delete_device(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    token: &str,
) -> DbResult<Option<PushDevice>> {
    Ok(diesel::delete(
        push_devices::table
            .filter(push_devices::token.eq(token))
            .filter(push_devices::user_id.eq(user)),
    )
    .returning(PushDevice::as_returning())
    .get_result(conn)
    .await
    .optional()?)
}

/// Every device of the given users.
pub async fn devices_of(conn: &mut AsyncPgConnection, users: &[Uuid]) -> DbResult<Vec<PushDevice>> {
    Ok(push_devices::table
        .filter(push_devices::user_id.eq_any(users))
        .order(push_devices::created_at.asc())
        .select(PushDevice::as_select())
        .load(conn)
        .await?)
}

/// Removes devices the provider reported unregistered.
pub async fn delete_devices(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> DbResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(
        diesel::delete(push_devices::table.filter(push_devices::id.eq_any(ids)))
            .execute(conn)
            .await?,
    )
}

/// Marks devices a push was accepted for.
pub async fn touch_devices(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> DbResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(
        diesel::update(push_devices::table.filter(push_devices::id.eq_any(ids)))
            .set(push_devices::last_used_at.eq(Utc::now()))
            .execute(conn)
            .await?,
    )
}

/// Appends attempts to the delivery log.
pub async fn insert_deliveries(
    conn: &mut AsyncPgConnection,
    rows: &[NewPushDelivery],
) -> DbResult<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut n = 0;
    // PostgreSQL takes at most 65535 bind parameters per statement (11 per row).
    for chunk in rows.chunks(5000) {
        n += diesel::insert_into(push_deliveries::table)
            .values(chunk)
            .execute(conn)
            .await?;
    }
    Ok(n)
}

/// Whether `consumer` already handled `event_id` (a redelivery): lets a consumer skip its
/// network work before the transaction that calls `bus::consumer::mark_processed`.
pub async fn already_processed(
    conn: &mut AsyncPgConnection,
    consumer: &str,
    event_id: Uuid,
) -> DbResult<bool> {
    Ok(diesel::select(diesel::dsl::exists(
        processed_events::table
            .filter(processed_events::consumer.eq(consumer))
            .filter(processed_events::event_id.eq(event_id)),
    ))
    .get_result(conn)
    .await?)
}

#[derive(QueryableByName)]
struct Follower {
    #[diesel(sql_type = sql_types::Uuid)]
    user_id: Uuid,
}

/// Claims up to `limit` followers of `creator` not yet told that `session` is live, and
/// records them as told (`live_notifications_sent`) in the same statement. Call it in its
/// own transaction before sending: a redelivered event then skips everyone already claimed,
/// so no follower is told twice (one whose push was lost in a crash is not told again).
pub async fn claim_followers(
    conn: &mut AsyncPgConnection,
    session: Uuid,
    creator: Uuid,
    limit: i64,
) -> DbResult<Vec<Uuid>> {
    let rows: Vec<Follower> = diesel::sql_query(
        "INSERT INTO live_notifications_sent (session_id, user_id) \
         SELECT $1, f.follower_id FROM follows f \
         WHERE f.creator_id = $2 AND f.follower_id <> $2 \
           AND NOT EXISTS (SELECT 1 FROM live_notifications_sent n \
                           WHERE n.session_id = $1 AND n.user_id = f.follower_id) \
         ORDER BY f.follower_id LIMIT $3 \
         ON CONFLICT DO NOTHING RETURNING user_id",
    )
    .bind::<sql_types::Uuid, _>(session)
    .bind::<sql_types::Uuid, _>(creator)
    .bind::<sql_types::BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.user_id).collect())
}
