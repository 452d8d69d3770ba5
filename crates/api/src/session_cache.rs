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

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use presence_model::policy::PresencePolicy;
use presence_model::views::LiveSession;

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
}
