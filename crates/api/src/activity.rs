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
//! Sessions are cached by token hash, so most requests do not touch PostgreSQL at all.
//! Logout publishes the revoked token's hash on Redis (`<prefix>:revoked`) and every
//! replica evicts it at once; an entry is trusted for [`AUTH_CACHE_LONG_TTL`] only while
//! this replica's subscription has been up since the entry was cached, and for
//! [`AUTH_CACHE_TTL`] otherwise. Either way, a token revoked by any replica stops working
//! everywhere within a second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web;
use chrono::{DateTime, TimeDelta, Utc};
use moka::sync::Cache;
use presence_model::presence::{self, LiveSession};

use crate::state::AppState;

/// How long a looked-up session is trusted without asking PostgreSQL again, when
/// revocations may not reach this replica (its subscription is or was down).
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(1);
/// How long it is trusted while revocations are known to reach this replica (at most
/// half the offline window: a user the sweep takes offline has been silent for a whole
/// window, so no entry of theirs still holds the old status).
pub const AUTH_CACHE_LONG_TTL: Duration = Duration::from_secs(60);
/// How long a revocation is remembered, so that a lookup racing it cannot cache the
/// session again.
const REVOKED_MEMORY: Duration = Duration::from_secs(10);
/// Sessions cached at most; memory stays bounded whatever the traffic.
pub const AUTH_CACHE_CAPACITY: u64 = 100_000;
/// Deferred writes kept at most before a flush is forced (one per active session).
pub const MAX_PENDING: usize = 1_000_000;

/// A cached session, with when and under which subscription it was looked up.
pub struct CachedSession {
    pub live: LiveSession,
    cached_at: Instant,
    epoch: u64,
}

pub struct Activity {
    sessions: Cache<Vec<u8>, Arc<CachedSession>>,
    revoked: Cache<Vec<u8>, ()>,
    /// Bumped whenever the revocation subscription connects or drops.
    epoch: AtomicU64,
    listening: AtomicBool,
    /// Session id → the latest activity not yet written.
    pending: Mutex<HashMap<i64, DateTime<Utc>>>,
    /// Held through a flush: flushes run one at a time, and "flush now" waits for the one
    /// in progress, so everything deferred before it is written when it returns.
    flushing: tokio::sync::Mutex<()>,
    pub flush_interval: TimeDelta,
}

impl Activity {
    pub fn new(flush_interval: TimeDelta, window: TimeDelta) -> Self {
        let half_window = (window / 2).to_std().unwrap_or(AUTH_CACHE_TTL);
        Self {
            sessions: Cache::builder()
                .max_capacity(AUTH_CACHE_CAPACITY)
                .time_to_live(AUTH_CACHE_LONG_TTL.min(half_window).max(AUTH_CACHE_TTL))
                .build(),
            revoked: Cache::builder()
                .max_capacity(AUTH_CACHE_CAPACITY)
                .time_to_live(REVOKED_MEMORY)
                .build(),
            epoch: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            pending: Mutex::new(HashMap::new()),
            flushing: tokio::sync::Mutex::new(()),
            flush_interval,
        }
    }

    /// The cached session, if it may still be trusted.
    pub fn cached(&self, token_hash: &[u8]) -> Option<Arc<CachedSession>> {
        let entry = self.sessions.get(token_hash)?;
        let covered = self.listening.load(Ordering::Acquire)
            && entry.epoch == self.epoch.load(Ordering::Acquire);
        (covered || entry.cached_at.elapsed() < AUTH_CACHE_TTL).then_some(entry)
    }

    /// The subscription epoch to pass to [`Activity::remember`]: read it before looking
    /// the session up, so a revocation missed during the lookup shows as a changed epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Caches a session looked up under `epoch`, unless it was revoked meanwhile.
    pub fn remember(
        &self,
        token_hash: Vec<u8>,
        live: LiveSession,
        epoch: u64,
    ) -> Arc<CachedSession> {
        let entry = Arc::new(CachedSession {
            live,
            cached_at: Instant::now(),
            epoch,
        });
        if !self.revoked.contains_key(&token_hash) {
            self.sessions.insert(token_hash, entry.clone());
        }
        entry
    }

    /// A session was revoked (here, or on another replica): never answer from cache again.
    pub fn revoke(&self, token_hash: &[u8]) {
        self.revoked.insert(token_hash.to_vec(), ());
        self.sessions.invalidate(token_hash);
    }

    /// The revocation subscription connected (`true`) or dropped (`false`).
    pub fn set_listening(&self, listening: bool) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.listening.store(listening, Ordering::Release);
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

/// Keeps this replica subscribed to revocations published by any replica's logout,
/// reconnecting after a second when Redis drops the subscription.
pub async fn listen_for_revocations(
    state: web::Data<AppState>,
    redis_url: String,
    channel: String,
) {
    use futures_util::StreamExt;
    loop {
        match redis::Client::open(redis_url.as_str()) {
            Ok(client) => match client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                    Ok(()) => {
                        state.activity.set_listening(true);
                        let mut messages = pubsub.on_message();
                        while let Some(message) = messages.next().await {
                            state.activity.revoke(message.get_payload_bytes());
                        }
                        state.activity.set_listening(false);
                        log::warn!(
                            "revocation subscription dropped; trusting cached sessions for 1 s only"
                        );
                    }
                    Err(e) => log::warn!("cannot subscribe to revocations: {e}"),
                },
                Err(e) => log::debug!("cannot connect to Redis for revocations: {e}"),
            },
            Err(e) => {
                log::error!("invalid REDIS_URL: {e}");
                return;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
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
        let activity = Activity::new(TimeDelta::seconds(10), TimeDelta::seconds(120));
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
        let activity = Activity::new(TimeDelta::seconds(10), TimeDelta::seconds(120));
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
