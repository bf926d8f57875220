//! `idempotency_keys`: a POST that moves coins claims its `Idempotency-Key` in the
//! transaction that moves them, and stores its answer there before committing.
//!
//! The claim is an insert on the `(user_id, key)` primary key: a second request with the
//! same key while the first is still in its transaction blocks on that insert until the
//! first commits (then it reads the stored answer) or rolls back (then it claims the key
//! itself). So "a repeat in flight waits for it" costs no polling and no lock table.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::DbResult;
use crate::schema::idempotency_keys as ik;

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The key is the caller's for this transaction: do the work, then `complete`.
    Fresh,
    /// The key was used within its lifetime.
    Used {
        request_hash: String,
        /// `None` only if a claim was committed without an answer (not done by `complete`
        /// users; treated as still in progress).
        response: Option<(i32, serde_json::Value)>,
    },
}

/// Claims `key` for `user`: inserts it, or takes over a row older than `expired_before`
/// (a key is kept 24 h). Waits for a concurrent transaction holding the same key.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    key: &str,
    request_hash: &str,
    expired_before: DateTime<Utc>,
) -> DbResult<Claim> {
    let now = Utc::now();
    let upsert = diesel::insert_into(ik::table)
        .values((
            ik::user_id.eq(user),
            ik::key.eq(key),
            ik::request_hash.eq(request_hash),
            ik::created_at.eq(now),
        ))
        .on_conflict((ik::user_id, ik::key))
        .do_update()
        .set((
            ik::request_hash.eq(request_hash),
            ik::created_at.eq(now),
            ik::response_status.eq(None::<i32>),
            ik::response_body.eq(None::<serde_json::Value>),
            ik::completed_at.eq(None::<DateTime<Utc>>),
        ));
    // Only an expired row is taken over (`ON CONFLICT ... DO UPDATE ... WHERE`).
    let claimed =
        diesel::query_dsl::methods::FilterDsl::filter(upsert, ik::created_at.lt(expired_before))
            .execute(conn)
            .await?;
    if claimed == 1 {
        return Ok(Claim::Fresh);
    }
    let (request_hash, status, body) = ik::table
        .find((user, key))
        .select((ik::request_hash, ik::response_status, ik::response_body))
        .first::<(String, Option<i32>, Option<serde_json::Value>)>(conn)
        .await?;
    Ok(Claim::Used {
        request_hash,
        response: status.zip(body),
    })
}

/// Stores the answer of a claimed key (same transaction as the claim).
pub async fn complete(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    key: &str,
    status: i32,
    body: &serde_json::Value,
) -> DbResult<()> {
    diesel::update(ik::table.find((user, key)))
        .set((
            ik::response_status.eq(status),
            ik::response_body.eq(body),
            ik::completed_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes keys created before `before`; returns how many.
pub async fn purge(conn: &mut AsyncPgConnection, before: DateTime<Utc>) -> DbResult<usize> {
    Ok(diesel::delete(ik::table.filter(ik::created_at.lt(before)))
        .execute(conn)
        .await?)
}
