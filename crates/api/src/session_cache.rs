//! The session cache and how revocations reach it.
//!
//! Sessions are cached by token hash, so most authenticated requests do not touch
//! PostgreSQL at all; an entry is trusted for the policy's `session_trust` (half a
//! window, a minute at most). Logout announces the revoked token's hash with a PostgreSQL
//! `NOTIFY` in the revoking transaction; every replica `LISTEN`s on its own connection
//! (`crate::listener`) and evicts the entry within a poll. PostgreSQL is the one place a
//! revocation can be made, so this holds whatever Redis does. A replica whose listening
//! connection dropped keeps its entries (so cached sessions keep working through a
//! PostgreSQL outage, when nobody can revoke) and, once reconnected, evicts every session
//! revoked since it last heard from PostgreSQL before trusting anything again.
//!
//! A miss is looked up together with every other miss at that moment
//! ([`crate::coalesced_reads`]): when a replica dies and its clients reconnect to this one,
//! 15,000 sessions it never saw cost a few dozen queries, not 15,000.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use moka::sync::Cache;
use presence_model::DbPool;
use presence_model::policy::PresencePolicy;
use presence_model::tokens;
use presence_model::views::LiveSession;
use presence_runtime::blocking::{BlockingError, with_connection};
use prometheus::IntCounter;

use crate::coalesced_reads::{CoalescedReads, ReadFailed};

/// How long a revocation is remembered, so that a lookup racing it cannot cache the
/// session again.
const REVOKED_MEMORY: Duration = Duration::from_secs(10);
/// Sessions cached at most; memory stays bounded whatever the traffic.
pub const AUTH_CACHE_CAPACITY: u64 = 100_000;
/// Lookups of missed sessions running at once: a quarter of the default pool, so that a
/// storm of them never takes every connection from the writes.
const LOOKUPS_IN_FLIGHT: usize = 4;
/// Sessions one lookup reads at most.
const LOOKUP_BATCH: usize = 1000;

/// A cached session.
pub struct CachedSession {
    pub live: LiveSession,
}

/// Live sessions by token hash, and the hashes revoked lately.
pub struct SessionCache {
    sessions: Cache<Vec<u8>, Arc<CachedSession>>,
    revoked: Cache<Vec<u8>, ()>,
    lookups: CoalescedReads<Vec<u8>, LiveSession, BlockingError>,
    /// A session unused for this long is not live (`SESSION_TTL`).
    session_ttl: TimeDelta,
    /// Counts the lookup queries.
    queries: IntCounter,
}

impl SessionCache {
    /// Trusts an entry for the policy's `session_trust`; `queries` counts the lookups.
    pub fn new(policy: &PresencePolicy, session_ttl: TimeDelta, queries: IntCounter) -> Self {
        Self {
            lookups: CoalescedReads::new(LOOKUPS_IN_FLIGHT, LOOKUP_BATCH),
            session_ttl,
            queries,
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

    /// Looks the session of `token_hash` up in PostgreSQL, with the other misses queued
    /// meanwhile, and caches it (unless revoked meanwhile). `None`: no live session.
    pub async fn look_up(
        &self,
        pool: &DbPool,
        token_hash: Vec<u8>,
    ) -> Result<Option<Arc<CachedSession>>, ReadFailed<BlockingError>> {
        let (pool, ttl, queries) = (pool.clone(), self.session_ttl, self.queries.clone());
        let mut found = self
            .lookups
            .read(std::slice::from_ref(&token_hash), move |hashes| {
                queries.inc();
                let pool = pool.clone();
                async move {
                    with_connection(&pool, move |conn| {
                        tokens::find_live_sessions(conn, &hashes, ttl)
                    })
                    .await
                }
            })
            .await?;
        Ok(found
            .remove(&token_hash)
            .map(|live| self.remember(token_hash, live)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, Utc};
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
        let cache = SessionCache::new(
            &policy,
            TimeDelta::days(30),
            IntCounter::new("q", "q").unwrap(),
        );
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
}
