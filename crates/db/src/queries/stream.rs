//! What the notifier's event stream reads: who is in a session.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::DbResult;
use crate::schema::{live_participants, live_sessions};

/// A session's audience as the database has it now: its host and its active participants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAudience {
    pub status: String,
    pub creator_id: Uuid,
    /// Users with an active `live_participants` row (the host too when it is connected).
    pub participants: Vec<Uuid>,
}

/// The session's audience, `None` for an unknown session. Read once per session and replica;
/// the participant events keep it current afterwards (the index on active rows serves it).
pub async fn session_audience(
    conn: &mut AsyncPgConnection,
    session: Uuid,
) -> DbResult<Option<SessionAudience>> {
    let Some((status, creator_id)) = live_sessions::table
        .find(session)
        .select((live_sessions::status, live_sessions::creator_id))
        .first::<(String, Uuid)>(conn)
        .await
        .optional()?
    else {
        return Ok(None);
    };
    let participants = live_participants::table
        .filter(live_participants::session_id.eq(session))
        .filter(live_participants::is_active.eq(true))
        .select(live_participants::user_id)
        .load::<Uuid>(conn)
        .await?;
    Ok(Some(SessionAudience {
        status,
        creator_id,
        participants,
    }))
}
