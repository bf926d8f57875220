//! Chat of a session (`live_messages`) and what posting to it or reading it needs to know
//! about the caller. Gifts use the same facts (`participation`).

use chrono::{DateTime, Utc};
use diesel::dsl::exists;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::DbResult;
use crate::schema::{live_messages, live_sessions};

/// A chat message as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = live_messages, check_for_backend(diesel::pg::Pg))]
pub struct Message {
    pub id: Uuid,
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// What the chat and gift routes check about one user in one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participation {
    pub status: String,
    pub creator_id: Uuid,
    /// Banned from this session, by its creator, or globally (`profiles.banned_until`).
    pub banned: bool,
    /// The host, or a user with an active `live_participants` row.
    pub participant: bool,
}

/// `None` when the user has no profile; `Some(None)` when the session is unknown.
///
/// One statement (one round trip on the chat's hot path), written with diesel's builder so
/// its prepared statement is cached per connection.
pub async fn participation(
    conn: &mut AsyncPgConnection,
    session: Uuid,
    user: Uuid,
) -> DbResult<Option<Option<Participation>>> {
    use crate::schema::{
        creator_bans as cb, live_participants as lp, live_session_bans as lsb, profiles as p,
    };
    let now = Utc::now();
    let creator_of = diesel::alias!(crate::schema::live_sessions as creator_of);
    let creator = creator_of
        .filter(creator_of.field(live_sessions::id).eq(session))
        .select(creator_of.field(live_sessions::creator_id))
        .single_value();
    let row = p::table
        .left_join(live_sessions::table.on(live_sessions::id.eq(session)))
        .filter(p::id.eq(user))
        .select((
            live_sessions::status.nullable(),
            live_sessions::creator_id.nullable(),
            p::banned_until.gt(now),
            exists(
                lsb::table
                    .filter(lsb::session_id.eq(session))
                    .filter(lsb::user_id.eq(user)),
            ),
            exists(
                cb::table
                    .filter(cb::creator_id.nullable().eq(creator))
                    .filter(cb::user_id.eq(user)),
            ),
            exists(
                lp::table
                    .filter(lp::session_id.eq(session))
                    .filter(lp::user_id.eq(user))
                    .filter(lp::is_active.eq(true)),
            ),
        ))
        .first::<(Option<String>, Option<Uuid>, Option<bool>, bool, bool, bool)>(conn)
        .await
        .optional()?;
    Ok(row.map(
        |(status, creator_id, global, session_ban, creator_ban, active)| {
            let (status, creator_id) = (status?, creator_id?);
            Some(Participation {
                banned: global.unwrap_or(false) || session_ban || creator_ban,
                participant: creator_id == user || active,
                status,
                creator_id,
            })
        },
    ))
}

/// Counts one more message on a session that has not ended, taking the session row's lock
/// until the caller's transaction ends. Returns false when the session is ended (or gone).
///
/// Taking the lock before the message id is drawn makes ids of one session increase in
/// commit order, so a reader listing `after` the newest id it saw never skips a message
/// committed later with a smaller id.
pub async fn count_message(conn: &mut AsyncPgConnection, session: Uuid) -> DbResult<bool> {
    let n = diesel::update(
        live_sessions::table
            .filter(live_sessions::id.eq(session))
            .filter(live_sessions::status.ne("ended")),
    )
    .set(live_sessions::total_messages.eq(live_sessions::total_messages + 1))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Stores a message.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    session: Uuid,
    user: Uuid,
    body: &str,
) -> DbResult<Message> {
    Ok(diesel::insert_into(live_messages::table)
        .values((
            live_messages::id.eq(id),
            live_messages::session_id.eq(session),
            live_messages::user_id.eq(user),
            live_messages::body.eq(body),
        ))
        .returning(Message::as_returning())
        .get_result(conn)
        .await?)
}

/// Messages not deleted, oldest first: the `limit` after `after` (a message id), or without
/// it the `limit` most recent ones.
pub async fn list(
    conn: &mut AsyncPgConnection,
    session: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> DbResult<Vec<Message>> {
    let q = live_messages::table
        .filter(live_messages::session_id.eq(session))
        .filter(live_messages::deleted_at.is_null())
        .select(Message::as_select())
        .limit(limit);
    Ok(match after {
        Some(after) => {
            q.filter(live_messages::id.gt(after))
                .order(live_messages::id.asc())
                .load(conn)
                .await?
        }
        None => {
            let mut rows: Vec<Message> = q.order(live_messages::id.desc()).load(conn).await?;
            rows.reverse();
            rows
        }
    })
}
