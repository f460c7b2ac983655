//! Storage errors: the database could not be reached or answered wrongly, or stored data is invalid.

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("database migration failed: {0}")]
    Migration(String),
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Database(e.to_string())
    }
}

impl From<tokio_postgres::Error> for StorageError {
    fn from(e: tokio_postgres::Error) -> Self {
        // `as_db_error` carries the server's message; the Display of the outer error is often just "db error".
        match e.as_db_error() {
            Some(db) => StorageError::Database(format!("{}: {}", db.code().code(), db.message())),
            None => StorageError::Database(e.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StorageError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StorageError::Database(format!("connection pool: {e}"))
    }
}
