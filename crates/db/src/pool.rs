//! The connection pool (deadpool over diesel-async's pure-Rust PostgreSQL driver).

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::deadpool::{Object, Pool as DeadPool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};

use crate::DbError;

pub type Pool = DeadPool<AsyncPgConnection>;
pub type PooledConn = Object<AsyncPgConnection>;

/// Builds a pool; it connects lazily, so a database that is down is reported by the first
/// query (and by `/health`), not by start-up.
pub fn connect_pool(url: &str, max_size: usize) -> anyhow::Result<Pool> {
    // `Fast` recycling: no test query on every checkout (it would double the round trips
    // of the token hot path); a broken connection fails its query and is dropped.
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    Ok(DeadPool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(std::time::Duration::from_secs(5)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .runtime(deadpool_runtime())
        .build()?)
}

fn deadpool_runtime() -> deadpool::Runtime {
    deadpool::Runtime::Tokio1
}

/// Takes a connection from the pool.
pub async fn conn(pool: &Pool) -> Result<PooledConn, DbError> {
    pool.get().await.map_err(|e| DbError::Pool(e.to_string()))
}
