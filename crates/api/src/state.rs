//! What every handler shares, and the one way handlers reach the database.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::web;
use chrono::TimeDelta;
use presence_model::db::PgConnection;
use presence_model::flushes::UserWrites;
use presence_model::ids::UserId;
use presence_model::policy::PresencePolicy;
use presence_model::users::UserRecord;
use presence_model::{DbPool, Error};

use crate::activity::ActivityBuffer;
use crate::errors::ApiError;
use crate::metrics::Metrics;
use crate::presence_cache::PresenceCache;
use crate::session_cache::SessionCache;
use crate::throttle::{LoginThrottle, PasswordHashing};
use presence_model::events::Transition;
use presence_runtime::nudges::{PublishNudges, StatusEnds};

pub struct AppState {
    pub pool: DbPool,
    pub metrics: Metrics,
    pub sessions: SessionCache,
    /// What this replica remembers of users, for `/me` and the status lookups.
    pub presence: PresenceCache,
    pub activity: std::sync::Arc<ActivityBuffer>,
    /// Publish nudges, sent after each transition.
    pub nudges: PublishNudges,
    /// Jobs scheduled for the seconds in which manual or custom statuses end.
    pub status_ends: StatusEnds,
    pub login_throttle: LoginThrottle,
    /// Quotas of registrations and logins, per address and for the deployment.
    pub admission: crate::admission::Admission,
    pub hashing: PasswordHashing,
    /// The window, the flush interval and what follows from them: the timings stored in
    /// the database, adopted as they change (see `crate::timings`).
    pub policy: std::sync::RwLock<PresencePolicy>,
    pub session_ttl: TimeDelta,
    /// The live streams of this process.
    pub streams: std::sync::Arc<crate::stream::StreamHub>,
    /// Stream tickets, shared by every replica through Redis.
    pub tickets: crate::tickets::Tickets,
    /// Redis, for what the API reads there itself (tickets, the workers' reports).
    pub redis: presence_runtime::redis_conn::LazyRedis,
    /// `REDIS_PREFIX`: where the workers' reports and queues are.
    pub config_prefix: String,
}

impl AppState {
    /// The presence policy in force now.
    pub fn policy(&self) -> PresencePolicy {
        *self.policy.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes all the activity deferred so far, due or not (see [`ActivityBuffer::flush`]):
    /// the buffer is full.
    pub async fn write_all_activity(&self) {
        let granularity = self.policy().flush_granularity();
        let written = self
            .activity
            .flush(&self.pool, granularity, UserWrites::All)
            .await;
        if let Some(users) = written {
            self.presence.forget(&users);
        }
    }

    /// The records of `ids` (unknown ids left out), from this replica's memory where it
    /// holds them.
    pub async fn user_records(
        &self,
        ids: &[UserId],
    ) -> Result<HashMap<UserId, Arc<UserRecord>>, ApiError> {
        Ok(self.presence.records(&self.pool, ids).await?)
    }

    /// One user's record (`None`: no such user), from memory where held.
    pub async fn user_record(&self, id: UserId) -> Result<Option<Arc<UserRecord>>, ApiError> {
        Ok(self.user_records(&[id]).await?.remove(&id))
    }

    /// This replica wrote `user`'s row: what it remembers of them goes at once, so its
    /// next read shows the write (other replicas hear of it from PostgreSQL).
    pub fn wrote_user(&self, user: UserId) {
        self.presence.forget(&[user]);
    }

    /// A session was revoked (logged out), here or on another replica: its cached entry
    /// goes, and so does every stream it opened.
    pub fn revoke_session(&self, token_hash: &[u8]) {
        self.sessions.revoke(token_hash);
        self.streams.end_session(token_hash);
    }
}

/// Revocations heard by the listener reach the session cache and the streams; written
/// users, the presence cache; the clock offset it measures, the metrics.
impl crate::listener::Announcements for web::Data<AppState> {
    fn revoked(&self, token_hash: &[u8]) {
        self.revoke_session(token_hash);
    }

    fn users_written(&self, ids: &[UserId]) {
        self.presence.forget(ids);
    }

    fn hearing(&self, hearing: bool) {
        self.presence.set_hearing(hearing);
    }

    fn clock_offset(&self, offset: TimeDelta) {
        let seconds = offset.num_microseconds().unwrap_or(0) as f64 / 1e6;
        self.metrics.clock_offset.set(seconds);
    }
}

/// Changes received from the subscription reach the presence cache before any stream, so a
/// snapshot read from it as of the last revision received is never older than that.
impl crate::stream::Delivered for web::Data<AppState> {
    fn changed(&self, user: UserId) {
        self.presence.forget(&[user]);
    }

    fn may_have_missed(&self) {
        self.presence.forget_everyone();
    }
}

/// Runs `f` on the blocking thread pool: diesel and argon2 are synchronous and must never
/// stall the async workers.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    presence_runtime::blocking::blocking(f)
        .await
        .map_err(ApiError::from)
}

/// Runs `f` with a pooled connection, on the blocking thread pool.
pub(crate) async fn db<T, E, F>(state: &web::Data<AppState>, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Into<Error>,
{
    presence_runtime::blocking::with_connection(&state.pool, f)
        .await
        .map_err(ApiError::from)
}

/// Asks a worker to publish `change` now, if the write made one (see
/// `presence_runtime::nudges`).
pub(crate) async fn publish_soon(state: &AppState, change: Option<&Transition>) {
    if let Some(change) = change {
        let what = format!("transition {} of user {}", change.id, change.user_id);
        state.nudges.nudge(&what).await;
    }
}
