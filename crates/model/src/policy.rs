//! The presence policy: the timings presence is decided by, checked together once, and
//! every decision derived from them. The API asks it; it computes no margin of its own.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::OnlineStatus;
use crate::presence::LiveSession;

/// The longest a looked-up session is trusted without asking PostgreSQL again, whatever
/// the window (revocations evict entries sooner; this bounds a stale user name or flag).
const MAX_SESSION_TRUST: Duration = Duration::from_secs(60);

/// Timings under which a user who keeps sending heartbeats could be swept offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "flush interval ({flush_ms} ms) + heartbeat interval ({heartbeat_ms} ms) = {} ms must be \
     at most half of the presence window ({window_secs} s), or users who keep sending \
     heartbeats could be marked offline",
    flush_ms + heartbeat_ms
)]
pub struct UnsafeTimings {
    pub window_secs: i64,
    pub flush_ms: i64,
    pub heartbeat_ms: i64,
}

/// The presence window, how often deferred activity is flushed, and how often clients
/// send heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresencePolicy {
    window: TimeDelta,
    flush_interval: TimeDelta,
}

impl PresencePolicy {
    /// Refuses timings under which an active user could be swept: a user's stored
    /// `last_seen` lags their latest heartbeat by up to one heartbeat interval plus one
    /// flush interval, and that lag must stay well inside the window.
    pub fn new(
        window: TimeDelta,
        flush_interval: TimeDelta,
        heartbeat_interval: TimeDelta,
    ) -> Result<Self, UnsafeTimings> {
        if (flush_interval + heartbeat_interval) * 2 > window {
            return Err(UnsafeTimings {
                window_secs: window.num_seconds(),
                flush_ms: flush_interval.num_milliseconds(),
                heartbeat_ms: heartbeat_interval.num_milliseconds(),
            });
        }
        Ok(Self {
            window,
            flush_interval,
        })
    }

    /// Silence after which a user is offline.
    pub fn window(&self) -> TimeDelta {
        self.window
    }

    /// How often deferred activity is written.
    pub fn flush_interval(&self) -> TimeDelta {
        self.flush_interval
    }

    /// Whether activity at `now` on `session` may be written by a later flush rather than
    /// at once: the user is stored online, and their stored `last_seen` stays inside the
    /// window until the flush has landed, with a flush interval to spare. The sweep then
    /// never sees them silent, and no transition is due.
    pub fn may_defer(&self, session: &LiveSession, now: DateTime<Utc>) -> bool {
        session.stored_status == OnlineStatus::Online
            && session
                .user
                .last_seen
                .is_some_and(|last_seen| last_seen >= now - self.window + self.flush_interval * 2)
    }

    /// How far a session row's `last_seen` may lag before a flush rewrites it: it serves
    /// the session TTL and "is another session live?", which need no finer grain.
    pub fn session_granularity(&self) -> TimeDelta {
        self.window / 2
    }

    /// How long a looked-up session may be trusted without asking PostgreSQL again: half
    /// a window (a user the sweep takes offline has been silent for a whole window, so no
    /// entry of theirs still holds the old flag), and a minute at most.
    pub fn session_trust(&self) -> Duration {
        (self.window / 2)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_SESSION_TRUST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(
        window: i64,
        flush_ms: i64,
        heartbeat_ms: i64,
    ) -> Result<PresencePolicy, UnsafeTimings> {
        PresencePolicy::new(
            TimeDelta::seconds(window),
            TimeDelta::milliseconds(flush_ms),
            TimeDelta::milliseconds(heartbeat_ms),
        )
    }

    #[test]
    fn refuses_timings_that_could_sweep_active_users() {
        assert!(policy(120, 10_000, 30_000).is_ok());
        assert!(policy(80, 10_000, 30_000).is_ok());
        let refused = policy(60, 10_000, 30_000).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "flush interval (10000 ms) + heartbeat interval (30000 ms) = 40000 ms must be at most half of the presence window (60 s), or users who keep sending heartbeats could be marked offline"
        );
    }

    #[test]
    fn derives_session_granularity_and_trust() {
        let default = policy(120, 10_000, 30_000).unwrap();
        assert_eq!(default.session_granularity(), TimeDelta::seconds(60));
        assert_eq!(default.session_trust(), Duration::from_secs(60));
        let long = policy(600, 10_000, 30_000).unwrap();
        assert_eq!(long.session_trust(), Duration::from_secs(60));
        let short = policy(4, 200, 1000).unwrap();
        assert_eq!(short.session_trust(), Duration::from_secs(2));
    }
}
