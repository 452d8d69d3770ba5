//! The session cache and how revocations reach it.
//!
//! Sessions are cached by token hash, so most authenticated requests do not touch
//! PostgreSQL at all; an entry is trusted for the policy's `session_trust` (half a
//! window, a minute at most). Logout announces the revoked token's hash with a PostgreSQL
//! `NOTIFY` in the revoking transaction; every replica `LISTEN`s on its own connection
//! and evicts the entry within [`REVOCATION_POLL`]. PostgreSQL is the one place a
//! revocation can be made, so this holds whatever Redis does. A replica whose listening
//! connection dropped keeps its entries (so cached sessions keep working through a
//! PostgreSQL outage, when nobody can revoke) and, once reconnected, evicts every session
//! revoked since it last heard from PostgreSQL before trusting anything again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web;
use chrono::{DateTime, TimeDelta, Utc};
use moka::sync::Cache;
use presence_model::policy::PresencePolicy;
use presence_model::sessions::RevocationListener;
use presence_model::views::LiveSession;

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

/// A cached session.
pub struct CachedSession {
    pub live: LiveSession,
}

/// Live sessions by token hash, and the hashes revoked lately.
pub struct SessionCache {
    sessions: Cache<Vec<u8>, Arc<CachedSession>>,
    revoked: Cache<Vec<u8>, ()>,
}

impl SessionCache {
    pub fn new(policy: &PresencePolicy) -> Self {
        Self {
            sessions: Cache::builder()
                .max_capacity(AUTH_CACHE_CAPACITY)
                .time_to_live(policy.session_trust())
                .build(),
            revoked: Cache::builder()
                .max_capacity(AUTH_CACHE_CAPACITY)
                .time_to_live(REVOKED_MEMORY)
                .build(),
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
}

/// What the revocation listener tells its owner.
pub trait RevocationSink {
    /// A session was revoked (here or on another replica), or may have been while the
    /// listener was not connected.
    fn revoked(&self, token_hash: &[u8]);
    /// The database's clock was read: how far this machine's is off it.
    fn clock_offset(&self, offset: TimeDelta);
}

/// Keeps this replica listening on `database_url` for revocations announced by any
/// replica's logout, telling `sink` of each. Reconnects after losing PostgreSQL, catching
/// up on the revocations it may have missed meanwhile.
pub async fn listen_for_revocations(sink: impl RevocationSink, database_url: String) {
    // Sessions may be cached before the first connection listens: it catches up from here.
    let started = Instant::now();
    // The database's clock at the listener's last sign of life.
    let mut alive_at: Option<DateTime<Utc>> = None;
    loop {
        let url = database_url.clone();
        match web::block(move || RevocationListener::connect(&url)).await {
            Ok(Ok(listener)) => {
                let lost = listen(&sink, listener, started, &mut alive_at).await;
                log::warn!("revocation listener lost PostgreSQL: {lost}");
            }
            Ok(Err(e)) => log::debug!("revocation listener cannot connect: {e}"),
            Err(e) => log::error!("revocation listener did not run: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Listens on one connection until it fails, and returns why. Before the first poll,
/// evicts what was revoked since `alive_at`, or, on the first connection, since the
/// process `started` listening (requests may have cached sessions before it could).
async fn listen(
    sink: &impl RevocationSink,
    listener: RevocationListener,
    started: Instant,
    alive_at: &mut Option<DateTime<Utc>>,
) -> String {
    let since = *alive_at;
    let (mut listener, missed) = match web::block(move || {
        let mut listener = listener;
        let since = match since {
            Some(since) => Ok(since),
            None => listener
                .database_time()
                .map(|now| now - TimeDelta::from_std(started.elapsed()).unwrap_or_default()),
        };
        let missed =
            since.and_then(|since| listener.revoked_since(since - REVOCATION_CATCH_UP_SLACK));
        (listener, missed)
    })
    .await
    {
        Ok((listener, Ok(missed))) => (listener, missed),
        Ok((_, Err(e))) => return e.to_string(),
        Err(e) => return e.to_string(),
    };
    for token_hash in missed {
        sink.revoked(&token_hash);
    }
    let mut checked = Instant::now() - LISTENER_CHECK;
    loop {
        let check = checked.elapsed() >= LISTENER_CHECK;
        let polled = web::block(move || {
            // The round trip that proves the connection alive also reads the database's
            // clock, which every time this process stamps is read by.
            let now = check
                .then(|| {
                    let offset = listener.calibrate_clock()?;
                    listener.database_time().map(|now| (now, offset))
                })
                .transpose();
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
        if let Some((now, offset)) = now {
            *alive_at = Some(now);
            checked = Instant::now();
            sink.clock_offset(offset);
        }
        for token_hash in revoked {
            sink.revoked(&token_hash);
        }
        tokio::time::sleep(REVOCATION_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use presence_model::OnlineStatus;
    use presence_model::ids::{SessionId, UserId};
    use presence_model::settings::Timings;

    fn live(session_id: i64) -> LiveSession {
        LiveSession {
            session_id: SessionId(session_id),
            user_id: UserId(1),
            is_admin: false,
            stored_status: OnlineStatus::Online,
            last_seen: Some(Utc::now()),
            active_at: Some(Utc::now()),
        }
    }

    #[test]
    fn a_revoked_session_is_evicted_and_not_cached_again_by_a_racing_lookup() {
        let timings = Timings {
            offline_after_secs: 120,
            away_after_secs: 300,
        };
        let policy =
            PresencePolicy::new(timings, TimeDelta::seconds(10), TimeDelta::seconds(30)).unwrap();
        let cache = SessionCache::new(&policy);
        cache.remember(b"a".to_vec(), live(1));
        assert!(cache.cached(b"a").is_some());
        cache.revoke(b"a");
        assert!(cache.cached(b"a").is_none());
        // A lookup that read the session before the revocation committed.
        cache.remember(b"a".to_vec(), live(1));
        assert!(cache.cached(b"a").is_none());
        cache.remember(b"b".to_vec(), live(2));
        cache.forget_sessions();
        assert!(cache.cached(b"b").is_none());
    }

    /// What a listener under test heard.
    #[derive(Clone, Default)]
    struct Heard(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

    impl RevocationSink for Heard {
        fn revoked(&self, token_hash: &[u8]) {
            self.0.lock().unwrap().push(token_hash.to_vec());
        }

        fn clock_offset(&self, _offset: TimeDelta) {}
    }

    impl Heard {
        async fn until_heard(&self, token_hash: &[u8]) -> bool {
            let heard = || self.0.lock().unwrap().iter().any(|h| h == token_hash);
            presence_testkit::eventually(Duration::from_secs(10), async || heard()).await
        }
    }

    /// A session opened on `db`: its id and token hash.
    fn session(db: &presence_model::testing::TestDatabase, name: &str) -> (SessionId, Vec<u8>) {
        use presence_model::testing::{TIMINGS, register};
        let user = register(db, name);
        let mut conn = db.pool().get().unwrap();
        let logged_in = presence_model::users::open_session(&mut conn, TIMINGS, user)
            .unwrap()
            .unwrap();
        let hash = presence_model::tokens::hash_token(logged_in.token.expose());
        (logged_in.session_id, hash)
    }

    #[actix_web::test]
    async fn revocations_made_before_and_after_the_listener_connects_are_heard() {
        use presence_model::testing::TIMINGS;
        let db = presence_model::testing::TestDatabase::new();
        let (before, before_hash) = session(&db, "ada");
        let (after, after_hash) = session(&db, "bob");
        let log_out = |session| {
            let mut conn = db.pool().get().unwrap();
            presence_model::sessions::log_out(&mut conn, TIMINGS, session)
                .unwrap()
                .unwrap();
        };
        // Revoked as the process starts, before its listener could listen: caught up on.
        log_out(before);
        let heard = Heard::default();
        let listener =
            actix_web::rt::spawn(listen_for_revocations(heard.clone(), db.url().to_owned()));
        assert!(heard.until_heard(&before_hash).await);
        log_out(after);
        assert!(heard.until_heard(&after_hash).await);
        listener.abort();
    }
}
