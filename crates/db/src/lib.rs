#![doc = include_str!("../README.md")]

pub mod migrate;
pub mod models;
pub mod pool;
pub mod queries;
#[rustfmt::skip]
pub mod schema;

pub use diesel_async::AsyncPgConnection;
pub use pool::{Pool, PooledConn, connect_pool};

/// Errors of the database layer. The services map them to `INTERNAL_ERROR` unless a query
/// function documents a more precise meaning (a unique violation becomes `CONFLICT`, ...).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database query failed")]
    Query(#[from] diesel::result::Error),
    #[error("database connection unavailable: {0}")]
    Pool(String),
}

impl DbError {
    /// Whether the error is a unique-constraint violation (used to turn races into 409s).
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }

    /// Name of the violated constraint, when the database reported one.
    pub fn constraint_name(&self) -> Option<&str> {
        match self {
            DbError::Query(diesel::result::Error::DatabaseError(_, info)) => info.constraint_name(),
            _ => None,
        }
    }
}

pub type DbResult<T> = Result<T, DbError>;
