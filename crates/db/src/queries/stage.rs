//! `stage_requests` (invitations and requests to go on stage) and the stage roles kept in
//! `live_participants.role`, which token-issuer reads to give a guest its grants.
//!
//! Callers lock the session row first (`sessions::lock`): every change of a session's stage
//! happens under that lock, so the guest count read here cannot change before the commit.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::DbResult;
use crate::models::{NewStageRequest, StageRequest};
use crate::schema::{live_participants, stage_requests};

/// Inserts a pending invitation or request. A second pending one for the same user and
/// session violates `stage_requests_one_pending` (`DbError::is_unique_violation`).
pub async fn insert(
    conn: &mut AsyncPgConnection,
    new: &NewStageRequest<'_>,
) -> DbResult<StageRequest> {
    Ok(diesel::insert_into(stage_requests::table)
        .values(new)
        .returning(StageRequest::as_returning())
        .get_result(conn)
        .await?)
}

/// The invitation or request, locked for the rest of the transaction.
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> DbResult<Option<StageRequest>> {
    Ok(stage_requests::table
        .find(id)
        .for_update()
        .select(StageRequest::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The user's pending invitation or request in the session, if any.
pub async fn pending_of(
    conn: &mut AsyncPgConnection,
    session: Uuid,
    user: Uuid,
) -> DbResult<Option<StageRequest>> {
    Ok(stage_requests::table
        .filter(stage_requests::session_id.eq(session))
        .filter(stage_requests::user_id.eq(user))
        .filter(stage_requests::status.eq("pending"))
        .select(StageRequest::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Sets the status of an answered, expired or cancelled one.
pub async fn set_status(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: &str,
    at: DateTime<Utc>,
) -> DbResult<StageRequest> {
    Ok(diesel::update(stage_requests::table.find(id))
        .set((
            stage_requests::status.eq(status),
            stage_requests::responded_at.eq(at),
        ))
        .returning(StageRequest::as_returning())
        .get_result(conn)
        .await?)
}

/// Cancels every pending one of a session (it ended); returns them as they are now.
pub async fn cancel_pending(
    conn: &mut AsyncPgConnection,
    session: Uuid,
    at: DateTime<Utc>,
) -> DbResult<Vec<StageRequest>> {
    Ok(diesel::update(
        stage_requests::table
            .filter(stage_requests::session_id.eq(session))
            .filter(stage_requests::status.eq("pending")),
    )
    .set((
        stage_requests::status.eq("cancelled"),
        stage_requests::responded_at.eq(at),
    ))
    .returning(StageRequest::as_returning())
    .get_results(conn)
    .await?)
}

/// The newest accepted invitation or request of the user in the session: what put them on
/// stage (named in the event of their turn's end).
pub async fn latest_accepted(
    conn: &mut AsyncPgConnection,
    session: Uuid,
    user: Uuid,
) -> DbResult<Option<Uuid>> {
    Ok(stage_requests::table
        .filter(stage_requests::session_id.eq(session))
        .filter(stage_requests::user_id.eq(user))
        .filter(stage_requests::status.eq("accepted"))
        .order(stage_requests::responded_at.desc().nulls_last())
        .select(stage_requests::id)
        .first(conn)
        .await
        .optional()?)
}

/// How many users of the session have `role` (the stage role of its type).
pub async fn count_with_role(
    conn: &mut AsyncPgConnection,
    session: Uuid,
    role: &str,
) -> DbResult<i64> {
    Ok(live_participants::table
        .filter(live_participants::session_id.eq(session))
        .filter(live_participants::role.eq(role))
        .count()
        .get_result(conn)
        .await?)
}

/// Sets the user's role in the session; `false` when they have no participant row.
pub async fn set_role(
    conn: &mut AsyncPgConnection,
    session: Uuid,
    user: Uuid,
    role: &str,
) -> DbResult<bool> {
    let n = diesel::update(
        live_participants::table
            .filter(live_participants::session_id.eq(session))
            .filter(live_participants::user_id.eq(user)),
    )
    .set((
        live_participants::role.eq(role),
        live_participants::updated_at.eq(Utc::now()),
    ))
    .execute(conn)
    .await?;
    Ok(n > 0)
}
