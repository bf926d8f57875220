//! Usage accounting reads `livekit_participations` (webhook-ingest writes it from LiveKit's
//! event times): every connection that overlaps a period, over every room.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::DbResult;
use crate::schema::livekit_participations as lp;

/// A connection's `(joined_at, left_at)`.
pub type Span = (DateTime<Utc>, Option<DateTime<Utc>>);

/// `(joined_at, left_at)` of every connection with a known join that overlaps `[from, to)`;
/// `left_at` is `None` while it is open. A connection whose join was never reported has no
/// start to count from and is left out.
pub async fn connections_between(
    conn: &mut AsyncPgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> DbResult<Vec<Span>> {
    type Row = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let rows: Vec<Row> = lp::table
        .filter(lp::joined_at.is_not_null())
        .filter(lp::joined_at.lt(to))
        .filter(lp::left_at.is_null().or(lp::left_at.gt(from)))
        .select((lp::joined_at, lp::left_at))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(j, l)| j.map(|j| (j, l)))
        .collect())
}
