//! Diesel is synchronous: every database call runs on the blocking thread pool, never on
//! an async worker thread.

use presence_model::db::PgConnection;
use presence_model::{DbPool, Error};

/// Why a blocking call did not give its answer.
#[derive(Debug, thiserror::Error)]
pub enum BlockingError {
    /// The call ran and failed.
    #[error(transparent)]
    Model(Error),
    /// The call never finished (it panicked, or the runtime is shutting down).
    #[error("blocking task did not finish: {0}")]
    Join(String),
}

/// Runs `f` on the blocking thread pool.
pub async fn blocking<T, F>(f: F) -> Result<T, BlockingError>
where
    F: FnOnce() -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(outcome) => outcome.map_err(BlockingError::Model),
        Err(e) => Err(BlockingError::Join(e.to_string())),
    }
}

/// Runs `f` with a connection from `pool`, on the blocking thread pool.
pub async fn with_connection<T, E, F>(pool: &DbPool, f: F) -> Result<T, BlockingError>
where
    F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Into<Error>,
{
    let pool = pool.clone();
    blocking(move || {
        let mut conn = pool.get()?;
        f(&mut conn).map_err(Into::into)
    })
    .await
}
