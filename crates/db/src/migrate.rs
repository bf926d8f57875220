//! Embedded migrations, applied at start-up by every service under a PostgreSQL advisory
//! lock: the first replica migrates, the others wait and then find nothing to do.

use diesel::Connection;
use diesel::RunQueryDsl;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Advisory lock key that serialises migrations across replicas ("ipelya" in ASCII).
const MIGRATION_LOCK: i64 = 0x6970_656c_7961;

/// Applies pending migrations; returns how many ran.
pub async fn run_migrations(url: &str) -> anyhow::Result<usize> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)?;
        diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
            .execute(&mut conn)?;
        let result = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|v| v.len())
            .map_err(|e| anyhow::anyhow!("migration failed: {e}"));
        diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
            .execute(&mut conn)?;
        result
    })
    .await?
}

/// Reverts every migration (tests of the down migrations).
pub async fn revert_all(url: &str) -> anyhow::Result<usize> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)?;
        let reverted = conn
            .revert_all_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("revert failed: {e}"))?;
        Ok(reverted.len())
    })
    .await?
}
