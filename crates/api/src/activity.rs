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
//! Logout announces the revoked token's hash with a PostgreSQL `NOTIFY` in the revoking
//! transaction; every replica `LISTEN`s on its own connection and evicts the entry within
//! [`REVOCATION_POLL`]. PostgreSQL is the one place a revocation can be made, so this holds
//! whatever Redis does. A replica whose listening connection dropped keeps its entries (so
//! cached sessions keep working through a PostgreSQL outage, when nobody can revoke) and,
//! once reconnected, evicts every session revoked since it last heard from PostgreSQL
//! before trusting anything again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web;
use chrono::{DateTime, TimeDelta, Utc};
use moka::sync::Cache;
use presence_model::policy::PresencePolicy;
use presence_model::presence::{self, LiveSession};
use presence_model::sessions::RevocationListener;

use crate::state::AppState;

/// How often the revocation listener reads announcements off its connection.
pub const REVOCATION_POLL: Duration = Duration::from_millis(50);
/// How often the listener proves its connection alive with a round trip.
const LISTENER_CHECK: Duration = Duration::from_secs(1);
/// How far before its last sign of life a reconnecting listener looks for revocations,
/// for transactions that committed late with an earlier `revoked_at`.
const REVOCATION_CATCH_UP_SLACK: TimeDelta = TimeDelta::seconds(10);
/// How long a revocation is remembered, so that a lookup racing it cannot cache the
/// session again.
const REVOKED_MEMORY: Duration = Duration::from_secs(10);
/// Sessions cached at most; memory stays bounded whatever the traffic.
pub const AUTH_CACHE_CAPACITY: u64 = 100_000;
/// Deferred writes kept at most before a flush is forced (one per active session).
pub const MAX_PENDING: usize = 1_000_000;

/// A cached session.
pub struct CachedSession {
    pub live: LiveSession,
}

pub struct Activity {
    sessions: Cache<Vec<u8>, Arc<CachedSession>>,
    revoked: Cache<Vec<u8>, ()>,
    /// Session id → the latest activity not yet written.
    pending: Mutex<HashMap<i64, DateTime<Utc>>>,
    /// Held through a flush: flushes run one at a time, and "flush now" waits for the one
    /// in progress, so everything deferred before it is written when it returns.
    flushing: tokio::sync::Mutex<()>,
    /// This process's name in `activity_flushes`.
    pub replica: String,
}

impl Activity {
    pub fn new(policy: PresencePolicy) -> Self {
        Self {
            sessions: Cache::builder()
                .max_capacity(AUTH_CACHE_CAPACITY)
                .time_to_live(policy.session_trust())
                .build(),
            revoked: Cache::builder()
                .max_capacity(AUTH_CACHE_CAPACITY)
                .time_to_live(REVOKED_MEMORY)
                .build(),
            pending: Mutex::new(HashMap::new()),
            flushing: tokio::sync::Mutex::new(()),
            replica: presence::replica_name("api"),
        }
    }

    /// The cached session, if there is one.
    pub fn cached(&self, token_hash: &[u8]) -> Option<Arc<CachedSession>> {
        self.sessions.get(token_hash)
    }

    /// Caches a session looked up just now, unless it was revoked meanwhile.
    pub fn remember(&self, token_hash: Vec<u8>, live: LiveSession) -> Arc<CachedSession> {
        let entry = Arc::new(CachedSession { live });
        if !self.revoked.contains_key(&token_hash) {
            self.sessions.insert(token_hash, entry.clone());
        }
        entry
    }

    /// Drops every cached session, so each is looked up again: what their trust running
    /// out does, at once (for tests).
    pub fn forget_sessions(&self) {
        self.sessions.invalidate_all();
    }

    /// A session was revoked (here, or on another replica): never answer from cache again.
    pub fn revoke(&self, token_hash: &[u8]) {
        self.revoked.insert(token_hash.to_vec(), ());
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

/// Writes the deferred activity, with this replica's promise that everything it saw
/// before the flush began is written (which the sweep waits for). Runs even with nothing
/// pending, to renew the promise. On failure (PostgreSQL down) the touches are kept for
/// the next flush: nothing is lost while the process lives, and the stale promise keeps
/// the sweep from taking users whose activity is still here.
pub async fn flush(state: &web::Data<AppState>) {
    let _one_at_a_time = state.activity.flushing.lock().await;
    let flushed_through = Utc::now();
    let touches = state.activity.take_pending();
    let count = touches.len();
    let replica = state.activity.replica.clone();
    let pool = state.pool.clone();
    let session_granularity = state.policy.session_granularity();
    let result = web::block(move || {
        let written = pool
            .get()
            .map_err(presence_model::Error::from)
            .and_then(|mut conn| {
                presence::flush_last_seen(
                    &mut conn,
                    &replica,
                    flushed_through,
                    &touches,
                    session_granularity,
                )
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

/// The last flush of a replica stopping gracefully, then its promise withdrawn so it no
/// longer holds the sweep back.
pub async fn flush_and_forget(state: &web::Data<AppState>) {
    flush(state).await;
    let (pool, replica) = (state.pool.clone(), state.activity.replica.clone());
    let forgotten = web::block(move || {
        let mut conn = pool.get().map_err(presence_model::Error::from)?;
        presence::forget_replica(&mut conn, &replica).map_err(presence_model::Error::from)
    })
    .await;
    if !matches!(forgotten, Ok(Ok(()))) {
        log::warn!("could not withdraw this replica's flush promise; it lapses after a window");
    }
}

/// Keeps this replica listening for revocations announced by any replica's logout, and
/// evicts each from the session cache. Reconnects after losing PostgreSQL, catching up on
/// the revocations it may have missed meanwhile.
pub async fn listen_for_revocations(state: web::Data<AppState>, database_url: String) {
    // The database's clock at the listener's last sign of life.
    let mut alive_at: Option<DateTime<Utc>> = None;
    loop {
        let url = database_url.clone();
        match web::block(move || RevocationListener::connect(&url)).await {
            Ok(Ok(listener)) => {
                let lost = listen(&state, listener, &mut alive_at).await;
                log::warn!("revocation listener lost PostgreSQL: {lost}");
            }
            Ok(Err(e)) => log::debug!("revocation listener cannot connect: {e}"),
            Err(e) => log::error!("revocation listener did not run: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Listens on one connection until it fails, and returns why. Before the first poll,
/// evicts what was revoked since `alive_at` (nothing on the first connection: the cache
/// starts empty).
async fn listen(
    state: &web::Data<AppState>,
    listener: RevocationListener,
    alive_at: &mut Option<DateTime<Utc>>,
) -> String {
    let since = *alive_at;
    let (mut listener, missed) = match web::block(move || {
        let mut listener = listener;
        let missed = match since {
            Some(since) => listener.revoked_since(since - REVOCATION_CATCH_UP_SLACK),
            None => Ok(Vec::new()),
        };
        (listener, missed)
    })
    .await
    {
        Ok((listener, Ok(missed))) => (listener, missed),
        Ok((_, Err(e))) => return e.to_string(),
        Err(e) => return e.to_string(),
    };
    for token_hash in missed {
        state.activity.revoke(&token_hash);
    }
    let mut checked = Instant::now() - LISTENER_CHECK;
    loop {
        let check = checked.elapsed() >= LISTENER_CHECK;
        let polled = web::block(move || {
            let now = check.then(|| listener.database_time()).transpose();
            let revoked = now.and_then(|now| Ok((now, listener.poll()?)));
            (listener, revoked)
        })
        .await;
        let (now, revoked) = match polled {
            Ok((returned, Ok(polled))) => {
                listener = returned;
                polled
            }
            Ok((_, Err(e))) => return e.to_string(),
            Err(e) => return e.to_string(),
        };
        if let Some(now) = now {
            *alive_at = Some(now);
            checked = Instant::now();
        }
        for token_hash in revoked {
            state.activity.revoke(&token_hash);
        }
        tokio::time::sleep(REVOCATION_POLL).await;
    }
}

/// Flushes every flush interval until the server stops.
pub async fn flush_periodically(state: web::Data<AppState>) {
    let period = state
        .policy
        .flush_interval()
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
        let activity = Activity::new(
            PresencePolicy::new(
                TimeDelta::seconds(120),
                TimeDelta::seconds(10),
                TimeDelta::seconds(30),
            )
            .unwrap(),
        );
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
        let activity = Activity::new(
            PresencePolicy::new(
                TimeDelta::seconds(120),
                TimeDelta::seconds(10),
                TimeDelta::seconds(30),
            )
            .unwrap(),
        );
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
