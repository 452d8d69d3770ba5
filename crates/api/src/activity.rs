//! Cheap presence for busy users: authentication from a short-lived cache, and their
//! `last_seen` written in batches.
//!
//! Writing PostgreSQL on every heartbeat and request caps the service at what one row
//! update costs. So a request from a user who is already online, and whose stored
//! `last_seen` stays inside the offline window until the next flush, writes nothing: its
//! time is kept here and written with everyone else's every `LAST_SEEN_FLUSH_MS`, at most
//! one row per user (see `presence::flush_last_seen`). Anything that changes a status
//! (login, logout, a user coming back) is still written at once.
//!
//! Sessions are cached by token hash for [`AUTH_CACHE_TTL`]: a token revoked by any
//! replica stops working everywhere within that time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web;
use chrono::{DateTime, TimeDelta, Utc};
use moka::sync::Cache;
use presence_model::presence::{self, LiveSession};

use crate::state::AppState;

/// How long a looked-up session is trusted without asking PostgreSQL again.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(1);
/// Sessions cached at most; memory stays bounded whatever the traffic.
pub const AUTH_CACHE_CAPACITY: u64 = 100_000;
/// Deferred writes kept at most before a flush is forced (one per active session).
pub const MAX_PENDING: usize = 1_000_000;

pub struct Activity {
    sessions: Cache<Vec<u8>, Arc<LiveSession>>,
    /// Session id → the latest activity not yet written.
    pending: Mutex<HashMap<i64, DateTime<Utc>>>,
    /// Held through a flush: flushes run one at a time, and "flush now" waits for the one
    /// in progress, so everything deferred before it is written when it returns.
    flushing: tokio::sync::Mutex<()>,
    pub flush_interval: TimeDelta,
}

impl Activity {
    pub fn new(flush_interval: TimeDelta) -> Self {
        Self {
            sessions: Cache::builder()
                .max_capacity(AUTH_CACHE_CAPACITY)
                .time_to_live(AUTH_CACHE_TTL)
                .build(),
            pending: Mutex::new(HashMap::new()),
            flushing: tokio::sync::Mutex::new(()),
            flush_interval,
        }
    }

    pub fn cached(&self, token_hash: &[u8]) -> Option<Arc<LiveSession>> {
        self.sessions.get(token_hash)
    }

    pub fn remember(&self, token_hash: Vec<u8>, session: LiveSession) -> Arc<LiveSession> {
        let session = Arc::new(session);
        self.sessions.insert(token_hash, session.clone());
        session
    }

    pub fn forget(&self, token_hash: &[u8]) {
        self.sessions.invalidate(token_hash);
    }

    /// Records activity to be written by the next flush. Returns whether the backlog is
    /// full enough that the caller should flush now.
    pub fn defer(&self, session_id: i64, at: DateTime<Utc>) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let latest = pending.entry(session_id).or_insert(at);
        *latest = (*latest).max(at);
        pending.len() >= MAX_PENDING
    }

    fn take_pending(&self) -> Vec<(i64, DateTime<Utc>)> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *pending).into_iter().collect()
    }

    /// Puts back touches a failed flush could not write, keeping the later time of each.
    fn restore(&self, touches: Vec<(i64, DateTime<Utc>)>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (session_id, at) in touches {
            let latest = pending.entry(session_id).or_insert(at);
            *latest = (*latest).max(at);
        }
    }
}

/// Writes the deferred activity. On failure (PostgreSQL down) the touches are kept for the
/// next flush: nothing is lost while the process lives.
pub async fn flush(state: &web::Data<AppState>) {
    let _one_at_a_time = state.activity.flushing.lock().await;
    let touches = state.activity.take_pending();
    if touches.is_empty() {
        return;
    }
    let count = touches.len();
    let pool = state.pool.clone();
    // Session rows only need to be roughly current (TTL, "another session live?").
    let session_granularity = state.offline_after / 2;
    let result = web::block(move || {
        let written = pool
            .get()
            .map_err(presence_model::Error::from)
            .and_then(|mut conn| {
                presence::flush_last_seen(&mut conn, &touches, session_granularity)
                    .map_err(Into::into)
            });
        (written, touches)
    })
    .await;
    match result {
        Ok((Ok(users), _)) => log::debug!("flushed activity of {count} sessions ({users} users)"),
        Ok((Err(e), touches)) => {
            log::error!("could not write the activity of {count} sessions, will retry: {e}");
            state.activity.restore(touches);
        }
        Err(e) => log::error!("activity flush did not run: {e}"),
    }
}

/// Flushes every flush interval until the server stops.
pub async fn flush_periodically(state: web::Data<AppState>) {
    let period = state
        .activity
        .flush_interval
        .to_std()
        .unwrap_or(Duration::from_secs(10));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        flush(&state).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferred_activity_is_one_entry_per_session_whatever_the_requests() {
        let activity = Activity::new(TimeDelta::seconds(10));
        let start = Utc::now();
        for n in 0..10_000 {
            activity.defer(n % 3, start + TimeDelta::milliseconds(n));
        }
        let mut pending = activity.take_pending();
        pending.sort_unstable();
        assert_eq!(
            pending,
            vec![
                (0, start + TimeDelta::milliseconds(9_999)),
                (1, start + TimeDelta::milliseconds(9_997)),
                (2, start + TimeDelta::milliseconds(9_998)),
            ]
        );
        assert!(activity.take_pending().is_empty());
    }

    #[test]
    fn a_failed_flush_loses_nothing() {
        let activity = Activity::new(TimeDelta::seconds(10));
        let t = Utc::now();
        activity.defer(1, t);
        let taken = activity.take_pending();
        activity.defer(1, t - TimeDelta::seconds(1));
        activity.defer(2, t);
        activity.restore(taken);
        let mut pending = activity.take_pending();
        pending.sort_unstable();
        assert_eq!(pending, vec![(1, t), (2, t)]);
    }
}
