//! What every handler shares, and the one way handlers reach the database.

use actix_web::web;
use chrono::TimeDelta;
use presence_model::db::PgConnection;
use presence_model::policy::PresencePolicy;
use presence_model::{DbPool, Error};

use crate::activity::ActivityBuffer;
use crate::errors::ApiError;
use crate::metrics::Metrics;
use crate::queue::PresenceQueue;
use crate::session_cache::SessionCache;
use crate::throttle::{LoginThrottle, PasswordHashing};

pub struct AppState {
    pub pool: DbPool,
    pub metrics: Metrics,
    pub sessions: SessionCache,
    pub activity: ActivityBuffer,
    pub queue: PresenceQueue,
    pub login_throttle: LoginThrottle,
    pub hashing: PasswordHashing,
    /// The window, the flush interval and what follows from them.
    pub policy: PresencePolicy,
    pub session_ttl: TimeDelta,
}

/// Runs `f` on the blocking thread pool: diesel and argon2 are synchronous and must never
/// stall the async workers.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    web::block(f)
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
}

/// Runs `f` with a pooled connection, on the blocking thread pool.
pub(crate) async fn db<T, E, F>(state: &web::Data<AppState>, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Into<Error>,
{
    let state = state.clone();
    blocking(move || {
        let mut conn = state.pool.get()?;
        f(&mut conn).map_err(Into::into)
    })
    .await
}
