//! `live_sessions` and `live_participants`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::DbResult;
use crate::models::{LiveParticipant, LiveSession, NewLiveSession};
use crate::schema::{live_participants, live_sessions, livekit_participations};

pub async fn insert(
    conn: &mut AsyncPgConnection,
    session: &NewLiveSession<'_>,
) -> DbResult<LiveSession> {
    Ok(diesel::insert_into(live_sessions::table)
        .values(session)
        .returning(LiveSession::as_returning())
        .get_result(conn)
        .await?)
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> DbResult<Option<LiveSession>> {
    Ok(live_sessions::table
        .find(id)
        .select(LiveSession::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The session, locked for the rest of the transaction (every change of a session's state
/// goes through this lock, so concurrent webhooks, deadlines and requests serialise).
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> DbResult<Option<LiveSession>> {
    Ok(live_sessions::table
        .find(id)
        .for_update()
        .select(LiveSession::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The creator's non-ended session, if any.
pub async fn active_of_creator(
    conn: &mut AsyncPgConnection,
    creator: Uuid,
) -> DbResult<Option<LiveSession>> {
    Ok(live_sessions::table
        .filter(live_sessions::creator_id.eq(creator))
        .filter(live_sessions::status.ne("ended"))
        .select(LiveSession::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Sessions by status (and type), newest first, after a `(created_at, id)` cursor.
pub async fn list(
    conn: &mut AsyncPgConnection,
    status: &str,
    session_type: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> DbResult<Vec<LiveSession>> {
    let mut q = live_sessions::table
        .filter(live_sessions::status.eq(status))
        .select(LiveSession::as_select())
        .order((live_sessions::created_at.desc(), live_sessions::id.desc()))
        .limit(limit)
        .into_boxed();
    if let Some(t) = session_type {
        q = q.filter(live_sessions::session_type.eq(t));
    }
    if let Some((at, id)) = after {
        q = q.filter(
            live_sessions::created_at
                .lt(at)
                .or(live_sessions::created_at
                    .eq(at)
                    .and(live_sessions::id.lt(id))),
        );
    }
    Ok(q.load(conn).await?)
}

/// Sessions that are not ended (reconciliation).
pub async fn not_ended(conn: &mut AsyncPgConnection, limit: i64) -> DbResult<Vec<LiveSession>> {
    Ok(live_sessions::table
        .filter(live_sessions::status.ne("ended"))
        .order(live_sessions::last_activity_at.asc())
        .limit(limit)
        .select(LiveSession::as_select())
        .load(conn)
        .await?)
}

/// Writes every mutable field of a session back (after a transition computed in Rust).
pub async fn save(conn: &mut AsyncPgConnection, s: &LiveSession) -> DbResult<()> {
    use live_sessions as ls;
    diesel::update(ls::table.find(s.id))
        .set((
            ls::status.eq(&s.status),
            ls::started_at.eq(s.started_at),
            ls::ended_at.eq(s.ended_at),
            ls::end_reason.eq(&s.end_reason),
            ls::host_left_at.eq(s.host_left_at),
            ls::last_event_at.eq(s.last_event_at),
            ls::last_activity_at.eq(s.last_activity_at),
            ls::viewer_count.eq(s.viewer_count),
            ls::peak_viewers.eq(s.peak_viewers),
            ls::total_duration_seconds.eq(s.total_duration_seconds),
            ls::updated_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn participant(
    conn: &mut AsyncPgConnection,
    session: Uuid,
    user: Uuid,
) -> DbResult<Option<LiveParticipant>> {
    Ok(live_participants::table
        .filter(live_participants::session_id.eq(session))
        .filter(live_participants::user_id.eq(user))
        .select(LiveParticipant::as_select())
        .first(conn)
        .await
        .optional()?)
}

pub async fn participants(
    conn: &mut AsyncPgConnection,
    session: Uuid,
) -> DbResult<Vec<LiveParticipant>> {
    Ok(live_participants::table
        .filter(live_participants::session_id.eq(session))
        .select(LiveParticipant::as_select())
        .load(conn)
        .await?)
}

/// Presence of one user in a session, upserted from what LiveKit reported.
#[derive(Debug, Clone)]
pub struct Presence<'a> {
    pub session: Uuid,
    pub user: Uuid,
    /// Role for a new row (an existing row keeps its role: a promoted guest stays one).
    pub role: &'a str,
    pub active: bool,
    pub sid: Option<&'a str>,
    pub joined_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
}

pub async fn upsert_presence(conn: &mut AsyncPgConnection, p: &Presence<'_>) -> DbResult<()> {
    use live_participants as lp;
    diesel::insert_into(lp::table)
        .values((
            lp::id.eq(Uuid::now_v7()),
            lp::session_id.eq(p.session),
            lp::user_id.eq(p.user),
            lp::role.eq(p.role),
            lp::is_active.eq(p.active),
            lp::participant_sid.eq(p.sid),
            lp::first_joined_at.eq(p.joined_at),
            lp::joined_at.eq(p.joined_at),
            lp::left_at.eq(p.left_at),
        ))
        .on_conflict((lp::session_id, lp::user_id))
        .do_update()
        .set((
            lp::is_active.eq(p.active),
            lp::participant_sid.eq(diesel::dsl::sql::<diesel::sql_types::Nullable<Text>>(
                "COALESCE(excluded.participant_sid, live_participants.participant_sid)",
            )),
            lp::first_joined_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >(
                "LEAST(live_participants.first_joined_at, excluded.first_joined_at)",
            )),
            lp::joined_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >(
                "GREATEST(live_participants.joined_at, excluded.joined_at)",
            )),
            lp::left_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >(
                "GREATEST(live_participants.left_at, excluded.left_at)"
            )),
            lp::updated_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks every participant of a session inactive (the session ended).
pub async fn deactivate_all(
    conn: &mut AsyncPgConnection,
    session: Uuid,
    at: DateTime<Utc>,
) -> DbResult<usize> {
    use live_participants as lp;
    Ok(diesel::update(
        lp::table
            .filter(lp::session_id.eq(session))
            .filter(lp::is_active.eq(true)),
    )
    .set((
        lp::is_active.eq(false),
        lp::left_at.eq(at),
        lp::updated_at.eq(Utc::now()),
    ))
    .execute(conn)
    .await?)
}

/// Marks one participant inactive (`POST .../leave`); `false` when there was no row.
pub async fn deactivate(conn: &mut AsyncPgConnection, session: Uuid, user: Uuid) -> DbResult<bool> {
    use live_participants as lp;
    let n = diesel::update(
        lp::table
            .filter(lp::session_id.eq(session))
            .filter(lp::user_id.eq(user)),
    )
    .set((
        lp::is_active.eq(false),
        lp::left_at.eq(Utc::now()),
        lp::updated_at.eq(Utc::now()),
    ))
    .execute(conn)
    .await?;
    Ok(n > 0)
}

/// Whether `identity` has an open connection in `room` (joined, not left), per LiveKit.
pub async fn has_open_connection(
    conn: &mut AsyncPgConnection,
    room: &str,
    identity: &str,
) -> DbResult<bool> {
    use livekit_participations as k;
    Ok(diesel::select(diesel::dsl::exists(
        k::table
            .filter(k::room_name.eq(room))
            .filter(k::identity.eq(identity))
            .filter(k::joined_at.is_not_null())
            .filter(k::left_at.is_null()),
    ))
    .get_result(conn)
    .await?)
}

/// Active viewers (distinct users, the host excluded).
pub async fn active_viewers(conn: &mut AsyncPgConnection, session: Uuid) -> DbResult<i64> {
    use live_participants as lp;
    Ok(lp::table
        .filter(lp::session_id.eq(session))
        .filter(lp::is_active.eq(true))
        .filter(lp::role.ne("host"))
        .count()
        .get_result(conn)
        .await?)
}

/// Open connections in a room, the host's excluded.
pub async fn open_audience_connections(
    conn: &mut AsyncPgConnection,
    room: &str,
    host: &str,
) -> DbResult<i64> {
    use livekit_participations as k;
    Ok(k::table
        .filter(k::room_name.eq(room))
        .filter(k::identity.ne(host))
        .filter(k::joined_at.is_not_null())
        .filter(k::left_at.is_null())
        .count()
        .get_result(conn)
        .await?)
}

#[derive(QueryableByName)]
struct Peak {
    #[diesel(sql_type = BigInt)]
    peak: i64,
}

/// The exact peak of concurrent audience connections in a room, swept over LiveKit's join
/// and leave times (a leave sorts before a join of the same instant). Independent of the
/// order the webhooks arrived in.
pub async fn peak_audience(conn: &mut AsyncPgConnection, room: &str, host: &str) -> DbResult<i64> {
    let row: Peak = diesel::sql_query(
        "WITH ev AS (
             SELECT joined_at AS t, 1 AS d FROM livekit_participations
              WHERE room_name = $1 AND identity <> $2 AND joined_at IS NOT NULL
             UNION ALL
             -- LiveKit's times are whole seconds: a stay within one second still counted
             -- (its leave sorts after its own join, before others' joins of a later instant).
             SELECT GREATEST(left_at, joined_at + interval '1 microsecond'), -1 FROM livekit_participations
              WHERE room_name = $1 AND identity <> $2 AND joined_at IS NOT NULL AND left_at IS NOT NULL
         )
         SELECT COALESCE(max(running), 0)::bigint AS peak
           FROM (SELECT sum(d) OVER (ORDER BY t, d ROWS UNBOUNDED PRECEDING) AS running FROM ev) s",
    )
    .bind::<Text, _>(room)
    .bind::<Text, _>(host)
    .get_result(conn)
    .await?;
    Ok(row.peak)
}

/// Ids of sessions whose room is `room` (by name).
pub async fn by_room(conn: &mut AsyncPgConnection, room: &str) -> DbResult<Option<Uuid>> {
    Ok(live_sessions::table
        .filter(live_sessions::room_name.eq(room))
        .select(live_sessions::id)
        .first(conn)
        .await
        .optional()?)
}

/// The earliest time LiveKit reported `identity` joining `room` (the session's start).
pub async fn earliest_join(
    conn: &mut AsyncPgConnection,
    room: &str,
    identity: &str,
) -> DbResult<Option<DateTime<Utc>>> {
    use livekit_participations as k;
    Ok(k::table
        .filter(k::room_name.eq(room))
        .filter(k::identity.eq(identity))
        .select(diesel::dsl::min(k::joined_at))
        .first::<Option<DateTime<Utc>>>(conn)
        .await?)
}
