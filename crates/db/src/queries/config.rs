//! `system_config`: operator switches.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::DbResult;
use crate::schema::system_config;

/// Key of the kill switch for new sessions.
pub const LIVE_SESSIONS_DISABLED: &str = "live_sessions_disabled";

/// Whether operators switched new live sessions off.
pub async fn live_sessions_disabled(conn: &mut AsyncPgConnection) -> DbResult<bool> {
    let value: Option<serde_json::Value> = system_config::table
        .find(LIVE_SESSIONS_DISABLED)
        .select(system_config::value)
        .first(conn)
        .await
        .optional()?;
    Ok(value.and_then(|v| v.as_bool()).unwrap_or(false))
}

/// Sets a switch (upsert).
pub async fn set(
    conn: &mut AsyncPgConnection,
    key: &str,
    value: serde_json::Value,
    by: Option<uuid::Uuid>,
) -> DbResult<()> {
    diesel::insert_into(system_config::table)
        .values((
            system_config::key.eq(key),
            system_config::value.eq(&value),
            system_config::updated_by.eq(by),
        ))
        .on_conflict(system_config::key)
        .do_update()
        .set((
            system_config::value.eq(&value),
            system_config::updated_by.eq(by),
            system_config::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
