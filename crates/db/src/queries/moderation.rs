//! What moderation writes (`live_session_bans`, `creator_bans`, `live_reports`,
//! `profiles.banned_until`, `alert_states`) and the operators' reads over sessions.
//!
//! The row types live here rather than in `models.rs`: no other service reads them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::DbResult;
use crate::models::LiveSession;
use crate::schema::{
    alert_states, creator_bans, live_messages, live_participants, live_reports, live_session_bans,
    live_sessions, profiles,
};

// ---- bans -------------------------------------------------------------------------------

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = live_session_bans, check_for_backend(diesel::pg::Pg))]
pub struct SessionBan {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub banned_by: Uuid,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = creator_bans, check_for_backend(diesel::pg::Pg))]
pub struct CreatorBan {
    pub creator_id: Uuid,
    pub user_id: Uuid,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Bans `user` from `session`; a ban already there keeps its time and takes the new reason.
pub async fn ban_from_session(
    conn: &mut AsyncPgConnection,
    session: Uuid,
    user: Uuid,
    by: Uuid,
    reason: Option<&str>,
) -> DbResult<SessionBan> {
    Ok(diesel::insert_into(live_session_bans::table)
        .values((
            live_session_bans::session_id.eq(session),
            live_session_bans::user_id.eq(user),
            live_session_bans::banned_by.eq(by),
            live_session_bans::reason.eq(reason),
        ))
        .on_conflict((live_session_bans::session_id, live_session_bans::user_id))
        .do_update()
        .set((
            live_session_bans::reason.eq(reason),
            live_session_bans::banned_by.eq(by),
        ))
        .returning(SessionBan::as_returning())
        .get_result(conn)
        .await?)
}

/// Lifts a session ban; whether there was one.
pub async fn unban_from_session(
    conn: &mut AsyncPgConnection,
    session: Uuid,
    user: Uuid,
) -> DbResult<bool> {
    Ok(diesel::delete(
        live_session_bans::table
            .filter(live_session_bans::session_id.eq(session))
            .filter(live_session_bans::user_id.eq(user)),
    )
    .execute(conn)
    .await?
        > 0)
}

/// Newest session bans (operators' view), at most `limit`.
pub async fn recent_session_bans(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> DbResult<Vec<SessionBan>> {
    Ok(live_session_bans::table
        .order(live_session_bans::created_at.desc())
        .limit(limit)
        .select(SessionBan::as_select())
        .load(conn)
        .await?)
}

/// Bans `user` from every session of `creator`; a ban already there takes the new reason.
pub async fn ban_from_creator(
    conn: &mut AsyncPgConnection,
    creator: Uuid,
    user: Uuid,
    reason: Option<&str>,
) -> DbResult<CreatorBan> {
    Ok(diesel::insert_into(creator_bans::table)
        .values((
            creator_bans::creator_id.eq(creator),
            creator_bans::user_id.eq(user),
            creator_bans::reason.eq(reason),
        ))
        .on_conflict((creator_bans::creator_id, creator_bans::user_id))
        .do_update()
        .set(creator_bans::reason.eq(reason))
        .returning(CreatorBan::as_returning())
        .get_result(conn)
        .await?)
}

/// Lifts a creator ban; whether there was one.
pub async fn unban_from_creator(
    conn: &mut AsyncPgConnection,
    creator: Uuid,
    user: Uuid,
) -> DbResult<bool> {
    Ok(diesel::delete(
        creator_bans::table
            .filter(creator_bans::creator_id.eq(creator))
            .filter(creator_bans::user_id.eq(user)),
    )
    .execute(conn)
    .await?
        > 0)
}

/// A creator's bans, newest first, after a `(created_at, user_id)` cursor.
pub async fn creator_bans_of(
    conn: &mut AsyncPgConnection,
    creator: Uuid,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> DbResult<Vec<CreatorBan>> {
    let mut q = creator_bans::table
        .filter(creator_bans::creator_id.eq(creator))
        .order((
            creator_bans::created_at.desc(),
            creator_bans::user_id.desc(),
        ))
        .limit(limit)
        .select(CreatorBan::as_select())
        .into_boxed();
    if let Some((at, id)) = after {
        q = q.filter(
            creator_bans::created_at.lt(at).or(creator_bans::created_at
                .eq(at)
                .and(creator_bans::user_id.lt(id))),
        );
    }
    Ok(q.load(conn).await?)
}

/// Newest creator bans (operators' view), at most `limit`.
pub async fn recent_creator_bans(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> DbResult<Vec<CreatorBan>> {
    Ok(creator_bans::table
        .order(creator_bans::created_at.desc())
        .limit(limit)
        .select(CreatorBan::as_select())
        .load(conn)
        .await?)
}

/// Users banned globally right now (`banned_until` in the future), soonest lifted last.
pub async fn globally_banned(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> DbResult<Vec<(Uuid, String, DateTime<Utc>)>> {
    let rows: Vec<(Uuid, String, Option<DateTime<Utc>>)> = profiles::table
        .filter(profiles::banned_until.gt(Utc::now()))
        .order(profiles::banned_until.desc())
        .limit(limit)
        .select((profiles::id, profiles::username, profiles::banned_until))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, name, until)| until.map(|u| (id, name, u)))
        .collect())
}

/// Whether `user` may not be in a session of `creator` (`session`): banned from it, by its
/// creator, or globally. The same rule as token-issuer's check chain, for the removal of a
/// banned identity that joined anyway (a refreshed token).
pub async fn is_banned(
    conn: &mut AsyncPgConnection,
    session: Uuid,
    creator: Uuid,
    user: Uuid,
) -> DbResult<bool> {
    use diesel::dsl::{exists, select};
    let session_ban = exists(
        live_session_bans::table
            .filter(live_session_bans::session_id.eq(session))
            .filter(live_session_bans::user_id.eq(user)),
    );
    let creator_ban = exists(
        creator_bans::table
            .filter(creator_bans::creator_id.eq(creator))
            .filter(creator_bans::user_id.eq(user)),
    );
    let global = exists(
        profiles::table
            .filter(profiles::id.eq(user))
            .filter(profiles::banned_until.gt(Utc::now())),
    );
    Ok(select(session_ban.or(creator_ban).or(global))
        .get_result(conn)
        .await?)
}

/// Rooms of non-ended sessions `user` is active in (to remove a globally banned user).
pub async fn active_session_rooms(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> DbResult<Vec<String>> {
    Ok(live_participants::table
        .inner_join(live_sessions::table)
        .filter(live_participants::user_id.eq(user))
        .filter(live_participants::is_active.eq(true))
        .filter(live_sessions::status.ne("ended"))
        .select(live_sessions::room_name)
        .load(conn)
        .await?)
}

// ---- reports ----------------------------------------------------------------------------

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = live_reports, check_for_backend(diesel::pg::Pg))]
pub struct Report {
    pub id: Uuid,
    pub reporter_id: Uuid,
    pub reported_user_id: Uuid,
    pub session_id: Option<Uuid>,
    pub reason: String,
    pub details: Option<String>,
    pub status: String,
    pub resolved_by: Option<Uuid>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A new report (status `pending`).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = live_reports)]
pub struct NewReport<'a> {
    pub id: Uuid,
    pub reporter_id: Uuid,
    pub reported_user_id: Uuid,
    pub session_id: Option<Uuid>,
    pub reason: &'a str,
    pub details: Option<&'a str>,
}

pub async fn insert_report(conn: &mut AsyncPgConnection, r: &NewReport<'_>) -> DbResult<Report> {
    Ok(diesel::insert_into(live_reports::table)
        .values(r)
        .returning(Report::as_returning())
        .get_result(conn)
        .await?)
}

/// The report, locked for the rest of the transaction (two operators resolving at once:
/// one wins, the other sees it resolved).
pub async fn lock_report(conn: &mut AsyncPgConnection, id: Uuid) -> DbResult<Option<Report>> {
    Ok(live_reports::table
        .find(id)
        .for_update()
        .select(Report::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Sets a report's resolution.
pub async fn resolve_report(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: &str,
    by: Uuid,
) -> DbResult<Report> {
    Ok(diesel::update(live_reports::table.find(id))
        .set((
            live_reports::status.eq(status),
            live_reports::resolved_by.eq(by),
            live_reports::resolved_at.eq(Utc::now()),
        ))
        .returning(Report::as_returning())
        .get_result(conn)
        .await?)
}

/// Reports of a status: pending ones oldest first (a queue), resolved ones newest first;
/// after a `(created_at, id)` cursor.
pub async fn reports(
    conn: &mut AsyncPgConnection,
    status: &str,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> DbResult<Vec<Report>> {
    let mut q = live_reports::table
        .filter(live_reports::status.eq(status))
        .select(Report::as_select())
        .limit(limit)
        .into_boxed();
    let queue = status == "pending";
    q = if queue {
        q.order((live_reports::created_at.asc(), live_reports::id.asc()))
    } else {
        q.order((live_reports::created_at.desc(), live_reports::id.desc()))
    };
    if let Some((at, id)) = after {
        q = if queue {
            q.filter(
                live_reports::created_at
                    .gt(at)
                    .or(live_reports::created_at.eq(at).and(live_reports::id.gt(id))),
            )
        } else {
            q.filter(
                live_reports::created_at
                    .lt(at)
                    .or(live_reports::created_at.eq(at).and(live_reports::id.lt(id))),
            )
        };
    }
    Ok(q.load(conn).await?)
}

pub async fn pending_reports(conn: &mut AsyncPgConnection) -> DbResult<i64> {
    Ok(live_reports::table
        .filter(live_reports::status.eq("pending"))
        .count()
        .get_result(conn)
        .await?)
}

// ---- messages (session-manager writes them; moderation authorises their deletion) ------

/// A chat message as moderation reads it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = live_messages, check_for_backend(diesel::pg::Pg))]
pub struct Message {
    pub id: Uuid,
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub deleted_by: Option<Uuid>,
}

pub async fn message(conn: &mut AsyncPgConnection, id: Uuid) -> DbResult<Option<Message>> {
    Ok(live_messages::table
        .find(id)
        .select(Message::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The newest `limit` messages of a session (soft-deleted ones included, marked), oldest
/// first.
pub async fn recent_messages(
    conn: &mut AsyncPgConnection,
    session: Uuid,
    limit: i64,
) -> DbResult<Vec<Message>> {
    let mut rows: Vec<Message> = live_messages::table
        .filter(live_messages::session_id.eq(session))
        .order((live_messages::created_at.desc(), live_messages::id.desc()))
        .limit(limit)
        .select(Message::as_select())
        .load(conn)
        .await?;
    rows.reverse();
    Ok(rows)
}

// ---- the operators' reads over sessions -------------------------------------------------

/// A session with what the operators' list shows next to it.
#[derive(Debug, Clone)]
pub struct SessionOverview {
    pub session: LiveSession,
    pub creator_username: String,
    /// Active participants (the host included while connected).
    pub participant_count: i64,
}

/// Sessions of a status (`None`: every non-ended one), newest first, after a cursor.
pub async fn sessions_overview(
    conn: &mut AsyncPgConnection,
    status: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> DbResult<Vec<SessionOverview>> {
    let active = diesel::alias!(live_participants as active);
    let count = active
        .filter(
            active
                .field(live_participants::session_id)
                .eq(live_sessions::id),
        )
        .filter(active.field(live_participants::is_active).eq(true))
        .count()
        .single_value();
    let mut q = live_sessions::table
        .inner_join(profiles::table.on(profiles::id.eq(live_sessions::creator_id)))
        .select((LiveSession::as_select(), profiles::username, count))
        .order((live_sessions::created_at.desc(), live_sessions::id.desc()))
        .limit(limit)
        .into_boxed();
    q = match status {
        Some(s) => q.filter(live_sessions::status.eq(s.to_owned())),
        None => q.filter(live_sessions::status.ne("ended")),
    };
    if let Some((at, id)) = after {
        q = q.filter(
            live_sessions::created_at
                .lt(at)
                .or(live_sessions::created_at
                    .eq(at)
                    .and(live_sessions::id.lt(id))),
        );
    }
    let rows: Vec<(LiveSession, String, Option<i64>)> = q.load(conn).await?;
    Ok(rows
        .into_iter()
        .map(|(session, creator_username, n)| SessionOverview {
            session,
            creator_username,
            participant_count: n.unwrap_or(0),
        })
        .collect())
}

/// A participant row with the username.
pub async fn participants_named(
    conn: &mut AsyncPgConnection,
    session: Uuid,
) -> DbResult<Vec<(crate::models::LiveParticipant, String)>> {
    Ok(live_participants::table
        .inner_join(profiles::table.on(profiles::id.eq(live_participants::user_id)))
        .filter(live_participants::session_id.eq(session))
        .order((
            live_participants::is_active.desc(),
            live_participants::joined_at.desc(),
        ))
        .select((
            crate::models::LiveParticipant::as_select(),
            profiles::username,
        ))
        .load(conn)
        .await?)
}

/// A non-ended session that has had no active participant (the host included) for a while.
#[derive(Debug, Clone, QueryableByName)]
pub struct SilentSession {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub creator_id: Uuid,
    #[diesel(sql_type = Text)]
    pub creator_username: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Text)]
    pub room_name: String,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub started_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    pub last_activity_at: DateTime<Utc>,
}

/// Non-ended sessions running (since `started_at`, or `created_at` when they never went
/// live) for over `older_than_seconds` with no active participant: the runbook's problem
/// sessions (one hour) and the orphan alert (`ORPHAN_AFTER_SECONDS`).
pub async fn silent_sessions(
    conn: &mut AsyncPgConnection,
    older_than_seconds: i64,
    limit: i64,
) -> DbResult<Vec<SilentSession>> {
    Ok(diesel::sql_query(
        "SELECT s.id, s.creator_id, p.username AS creator_username, s.status, s.room_name,
                s.created_at, s.started_at, s.last_activity_at
           FROM live_sessions s JOIN profiles p ON p.id = s.creator_id
          WHERE s.status <> 'ended'
            AND coalesce(s.started_at, s.created_at) < now() - make_interval(secs => $1)
            AND NOT EXISTS (SELECT 1 FROM live_participants lp
                             WHERE lp.session_id = s.id AND lp.is_active)
          ORDER BY coalesce(s.started_at, s.created_at)
          LIMIT $2",
    )
    .bind::<BigInt, _>(older_than_seconds)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

/// One day of the runbook's daily summary.
#[derive(Debug, Clone, QueryableByName)]
pub struct DailyStats {
    #[diesel(sql_type = Text)]
    pub date: String,
    #[diesel(sql_type = BigInt)]
    pub sessions_created: i64,
    #[diesel(sql_type = BigInt)]
    pub sessions_ended: i64,
    #[diesel(sql_type = BigInt)]
    pub unique_creators: i64,
    #[diesel(sql_type = BigInt)]
    pub unique_viewers: i64,
    #[diesel(sql_type = BigInt)]
    pub total_duration_seconds: i64,
    #[diesel(sql_type = Integer)]
    pub peak_viewers: i32,
    #[diesel(sql_type = BigInt)]
    pub messages: i64,
    #[diesel(sql_type = BigInt)]
    pub gift_coins: i64,
    #[diesel(sql_type = BigInt)]
    pub reports: i64,
}

/// The last `days` UTC days (today included), oldest first.
pub async fn daily_stats(conn: &mut AsyncPgConnection, days: i32) -> DbResult<Vec<DailyStats>> {
    Ok(diesel::sql_query(
        "WITH d AS (
            SELECT g::date AS day
              FROM generate_series((now() AT TIME ZONE 'UTC')::date - ($1 - 1),
                                   (now() AT TIME ZONE 'UTC')::date, interval '1 day') g)
         SELECT to_char(d.day, 'YYYY-MM-DD') AS date,
           (SELECT count(*) FROM live_sessions s
             WHERE (s.created_at AT TIME ZONE 'UTC')::date = d.day) AS sessions_created,
           (SELECT count(*) FROM live_sessions s
             WHERE (s.ended_at AT TIME ZONE 'UTC')::date = d.day) AS sessions_ended,
           (SELECT count(DISTINCT s.creator_id) FROM live_sessions s
             WHERE (s.created_at AT TIME ZONE 'UTC')::date = d.day) AS unique_creators,
           (SELECT count(DISTINCT lp.user_id) FROM live_participants lp
              JOIN live_sessions s ON s.id = lp.session_id
             WHERE lp.user_id <> s.creator_id
               AND (coalesce(lp.first_joined_at, lp.joined_at) AT TIME ZONE 'UTC')::date = d.day)
             AS unique_viewers,
           (SELECT coalesce(sum(s.total_duration_seconds), 0)::bigint FROM live_sessions s
             WHERE (s.ended_at AT TIME ZONE 'UTC')::date = d.day) AS total_duration_seconds,
           (SELECT coalesce(max(s.peak_viewers), 0) FROM live_sessions s
             WHERE (s.created_at AT TIME ZONE 'UTC')::date = d.day) AS peak_viewers,
           (SELECT count(*) FROM live_messages m
             WHERE (m.created_at AT TIME ZONE 'UTC')::date = d.day) AS messages,
           (SELECT coalesce(sum(g.coins), 0)::bigint FROM live_gifts g
             WHERE (g.created_at AT TIME ZONE 'UTC')::date = d.day) AS gift_coins,
           (SELECT count(*) FROM live_reports r
             WHERE (r.created_at AT TIME ZONE 'UTC')::date = d.day) AS reports
         FROM d ORDER BY d.day",
    )
    .bind::<Integer, _>(days)
    .load(conn)
    .await?)
}

/// A creator's figures over a period.
#[derive(Debug, Clone, QueryableByName)]
pub struct CreatorStats {
    #[diesel(sql_type = SqlUuid)]
    pub creator_id: Uuid,
    #[diesel(sql_type = Text)]
    pub username: String,
    #[diesel(sql_type = BigInt)]
    pub sessions: i64,
    #[diesel(sql_type = BigInt)]
    pub total_duration_seconds: i64,
    #[diesel(sql_type = Integer)]
    pub peak_viewers: i32,
    #[diesel(sql_type = BigInt)]
    pub messages: i64,
    #[diesel(sql_type = BigInt)]
    pub gift_coins: i64,
}

/// Creators by sessions created in the last `days` days (then by time live), at most `limit`.
pub async fn top_creators(
    conn: &mut AsyncPgConnection,
    days: i32,
    limit: i64,
) -> DbResult<Vec<CreatorStats>> {
    Ok(diesel::sql_query(
        "SELECT s.creator_id, p.username, count(*) AS sessions,
                coalesce(sum(s.total_duration_seconds), 0)::bigint AS total_duration_seconds,
                coalesce(max(s.peak_viewers), 0) AS peak_viewers,
                coalesce(sum(s.total_messages), 0)::bigint AS messages,
                coalesce(sum(s.total_gift_coins), 0)::bigint AS gift_coins
           FROM live_sessions s JOIN profiles p ON p.id = s.creator_id
          WHERE s.created_at >= now() - make_interval(days => $1)
          GROUP BY s.creator_id, p.username
          ORDER BY sessions DESC, total_duration_seconds DESC, p.username
          LIMIT $2",
    )
    .bind::<Integer, _>(days)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

/// A creator who created sessions lately (abuse: many sessions in a few minutes).
#[derive(Debug, Clone, QueryableByName)]
pub struct RecentCreator {
    #[diesel(sql_type = SqlUuid)]
    pub creator_id: Uuid,
    #[diesel(sql_type = Text)]
    pub username: String,
    #[diesel(sql_type = BigInt)]
    pub sessions: i64,
    #[diesel(sql_type = Timestamptz)]
    pub last_created_at: DateTime<Utc>,
}

/// Creators by sessions created in the last `minutes` minutes, at most `limit`.
pub async fn recent_creators(
    conn: &mut AsyncPgConnection,
    minutes: i32,
    limit: i64,
) -> DbResult<Vec<RecentCreator>> {
    Ok(diesel::sql_query(
        "SELECT s.creator_id, p.username, count(*) AS sessions,
                max(s.created_at) AS last_created_at
           FROM live_sessions s JOIN profiles p ON p.id = s.creator_id
          WHERE s.created_at >= now() - make_interval(mins => $1)
          GROUP BY s.creator_id, p.username
          ORDER BY sessions DESC, last_created_at DESC
          LIMIT $2",
    )
    .bind::<Integer, _>(minutes)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

// ---- alert states -----------------------------------------------------------------------

/// The stored level of every alert that has one (`name` → `severity`).
pub async fn alert_levels(conn: &mut AsyncPgConnection) -> DbResult<Vec<(String, String)>> {
    Ok(alert_states::table
        .select((alert_states::name, alert_states::severity))
        .load(conn)
        .await?)
}

/// Stores an alert's new level (`since` = now, as the level changed).
pub async fn set_alert_level(
    conn: &mut AsyncPgConnection,
    name: &str,
    severity: &str,
) -> DbResult<()> {
    diesel::insert_into(alert_states::table)
        .values((
            alert_states::name.eq(name),
            alert_states::severity.eq(severity),
        ))
        .on_conflict(alert_states::name)
        .do_update()
        .set((
            alert_states::severity.eq(severity),
            alert_states::since.eq(diesel::dsl::now),
            alert_states::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Soft-deletes a chat message (session-manager applies `moderation.message_deleted`);
/// the message as it is now, `None` when it does not exist. Already deleted: unchanged, and
/// `newly` is false.
pub async fn soft_delete_message(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    by: Option<Uuid>,
) -> DbResult<Option<(Message, bool)>> {
    let updated: Option<Message> = diesel::update(
        live_messages::table
            .find(id)
            .filter(live_messages::deleted_at.is_null()),
    )
    .set((
        live_messages::deleted_at.eq(Utc::now()),
        live_messages::deleted_by.eq(by),
    ))
    .returning(Message::as_returning())
    .get_result(conn)
    .await
    .optional()?;
    match updated {
        Some(m) => Ok(Some((m, true))),
        None => Ok(message(conn, id).await?.map(|m| (m, false))),
    }
}
