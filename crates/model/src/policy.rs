//! The presence policy: the timings presence is decided by, checked together once, and
//! every decision derived from them. The API asks it; it computes no margin of its own.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::OnlineStatus;
use crate::settings::Timings;
use crate::views::LiveSession;
use crate::vocabulary::{ChangeReason, CountsAs};

/// The longest a looked-up session is trusted without asking PostgreSQL again, whatever
/// the window (revocations evict entries sooner; this bounds a stale user name or flag).
const MAX_SESSION_TRUST: Duration = Duration::from_secs(60);

/// How a request's activity is recorded: the defer-or-write procedure, decided from what
/// is known of its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recording {
    /// The request is not activity: nothing is written.
    Nothing,
    /// Kept for the next flush (real use if `active`): the user stays as others see them.
    Defer { active: bool },
    /// Written at once (a user coming back, going from away to online, …), with `reason`
    /// for the transition it may record. Decided from a cached session, it means "look
    /// the session up again, then decide": a cached snapshot's times only get older.
    WriteNow { reason: ChangeReason, active: bool },
}

/// Timings under which a user who keeps sending heartbeats could be swept offline, or
/// one who keeps using the app be shown away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "flush interval ({flush_ms} ms) + heartbeat interval ({heartbeat_ms} ms) = {} ms must be \
     at most half of the presence window ({window_secs} s) and of the away timeout \
     ({away_after_secs} s), or users who keep sending heartbeats could be marked offline \
     or away",
    flush_ms + heartbeat_ms
)]
pub struct UnsafeTimings {
    pub window_secs: u32,
    pub away_after_secs: u32,
    pub flush_ms: i64,
    pub heartbeat_ms: i64,
}

/// How far stored activity may lag before a flush writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushGranularity {
    /// A user's `last_seen` and `active_at` ([`PresencePolicy::user_granularity`]).
    pub users: TimeDelta,
    /// A session row's ([`Timings::session_granularity`]).
    pub sessions: TimeDelta,
}

/// The shared timings, how often deferred activity is flushed, and how often clients
/// send heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresencePolicy {
    timings: Timings,
    flush_interval: TimeDelta,
    heartbeat_interval: TimeDelta,
}

impl PresencePolicy {
    /// Refuses timings under which an active user could be swept or shown away: a user's
    /// stored `last_seen` and `active_at` lag their latest heartbeat by up to one
    /// heartbeat interval plus one flush interval, and that lag must stay well inside the
    /// window and the away timeout.
    pub fn new(
        timings: Timings,
        flush_interval: TimeDelta,
        heartbeat_interval: TimeDelta,
    ) -> Result<Self, UnsafeTimings> {
        let shortest = timings.window().min(timings.away_after());
        if (flush_interval + heartbeat_interval) * 2 > shortest {
            return Err(UnsafeTimings {
                window_secs: timings.offline_after_secs,
                away_after_secs: timings.away_after_secs,
                flush_ms: flush_interval.num_milliseconds(),
                heartbeat_ms: heartbeat_interval.num_milliseconds(),
            });
        }
        Ok(Self {
            timings,
            flush_interval,
            heartbeat_interval,
        })
    }

    pub fn timings(&self) -> Timings {
        self.timings
    }

    /// Silence after which a user is offline.
    pub fn window(&self) -> TimeDelta {
        self.timings.window()
    }

    /// How often clients are to send heartbeats: announced to them.
    pub fn heartbeat_interval(&self) -> TimeDelta {
        self.heartbeat_interval
    }

    /// How often deferred activity is written.
    pub fn flush_interval(&self) -> TimeDelta {
        self.flush_interval
    }

    /// Whether activity at `now` on `session` (real use if `active`) may be written by a
    /// later flush rather than at once: the user is stored connected, and their stored
    /// `last_seen` (and `active_at`, for use) stays inside the window (the away timeout)
    /// until the flush has landed, with a flush interval to spare. The sweep then never
    /// sees them silent or idle, and nothing others are shown changes.
    ///
    /// `vouched`: this replica's last flush found the user's stored `last_seen` within the
    /// user granularity of it (`flushes::Flushed::vouched`). Then `last_seen` needs no
    /// check of `session`'s copy, which may be as old as the session cache's trust: a
    /// flush writes any stored time that old, so it never lags by more than
    /// [`Self::user_granularity`] and a flush interval, inside the window.
    pub fn may_defer(
        &self,
        session: &LiveSession,
        now: DateTime<Utc>,
        active: bool,
        vouched: bool,
    ) -> bool {
        let margin = self.flush_interval * 2;
        let fresh = |at: Option<DateTime<Utc>>, limit: TimeDelta| {
            at.is_some_and(|at| at >= now - limit + margin)
        };
        session.stored_status == OnlineStatus::Online
            && (vouched || fresh(session.last_seen, self.timings.window()))
            && (!active || fresh(session.active_at, self.timings.away_after()))
    }

    /// How activity at `now` on `session` is recorded, for a request that `counts_as`
    /// (with the heartbeat's `declared_active`): deferred while [`Self::may_defer`] holds
    /// (`vouched` as there), written at once otherwise.
    pub fn recording(
        &self,
        session: &LiveSession,
        counts_as: CountsAs,
        declared_active: Option<bool>,
        now: DateTime<Utc>,
        vouched: bool,
    ) -> Recording {
        let Some(reason) = counts_as.reason() else {
            return Recording::Nothing;
        };
        let active = counts_as.is_use(declared_active);
        if self.may_defer(session, now, active, vouched) {
            Recording::Defer { active }
        } else {
            Recording::WriteNow { reason, active }
        }
    }

    /// See [`Timings::session_granularity`].
    pub fn session_granularity(&self) -> TimeDelta {
        self.timings.session_granularity()
    }

    /// How far a user's stored `last_seen` and `active_at` may lag before a flush writes
    /// them: the shorter of the window and the away timeout less three flush intervals,
    /// and half of it at least. The stored times then lag by at most this and a flush,
    /// inside both: by two flush intervals (what deferring leaves to spare, see
    /// [`Self::may_defer`]), or, at half, by the heartbeat interval [`Self::new`]
    /// demands. A write takes the latest touch, which may be a heartbeat interval older
    /// than the flush; the more the threshold exceeds that, the fewer the writes (90 s at
    /// the defaults: about one write per user every 80 s at a heartbeat every 30 s).
    pub fn user_granularity(&self) -> TimeDelta {
        let shortest = self.timings.window().min(self.timings.away_after());
        (shortest - self.flush_interval * 3).max(shortest / 2)
    }

    /// The granularities a flush writes by.
    pub fn flush_granularity(&self) -> FlushGranularity {
        FlushGranularity {
            users: self.user_granularity(),
            sessions: self.session_granularity(),
        }
    }

    /// How long a looked-up session may be trusted without asking PostgreSQL again: half
    /// a window (a user the sweep takes offline has been silent for a whole window, so no
    /// entry of theirs still holds the old flag), and a minute at most.
    pub fn session_trust(&self) -> Duration {
        (self.window() / 2)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_SESSION_TRUST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(
        window: u32,
        flush_ms: i64,
        heartbeat_ms: i64,
    ) -> Result<PresencePolicy, UnsafeTimings> {
        let timings = Timings {
            offline_after_secs: window,
            away_after_secs: 300,
        };
        PresencePolicy::new(
            timings,
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
            "flush interval (10000 ms) + heartbeat interval (30000 ms) = 40000 ms must be at most half of the presence window (60 s) and of the away timeout (300 s), or users who keep sending heartbeats could be marked offline or away"
        );
    }

    #[test]
    fn activity_is_deferred_only_while_it_changes_nothing_others_are_shown() {
        let policy = policy(120, 10_000, 30_000).unwrap();
        let now = Utc::now();
        let session = |status, seen_ago: i64, used_ago: i64| LiveSession {
            session_id: crate::ids::SessionId(1),
            user_id: crate::ids::UserId(1),
            is_admin: false,
            stored_status: status,
            last_seen: Some(now - TimeDelta::seconds(seen_ago)),
            active_at: Some(now - TimeDelta::seconds(used_ago)),
        };
        let recent = session(OnlineStatus::Online, 5, 5);
        let heartbeat = |session: &LiveSession, active| {
            policy.recording(session, CountsAs::Heartbeat, active, now, false)
        };
        assert_eq!(heartbeat(&recent, None), Recording::Defer { active: true });
        assert_eq!(
            heartbeat(&recent, Some(false)),
            Recording::Defer { active: false }
        );
        assert_eq!(
            policy.recording(&recent, CountsAs::Nothing, None, now, false),
            Recording::Nothing
        );
        // Stored offline: the user comes back, which others must be told at once.
        let offline = session(OnlineStatus::Offline, 5, 5);
        assert_eq!(
            policy.recording(&offline, CountsAs::Activity, None, now, false),
            Recording::WriteNow {
                reason: ChangeReason::Activity,
                active: true
            }
        );
        // `last_seen` would leave the window (120 s) before a flush (2 × 10 s) lands.
        let fading = session(OnlineStatus::Online, 101, 5);
        assert!(matches!(
            heartbeat(&fading, None),
            Recording::WriteNow { .. }
        ));
        // Unless this replica's last flush vouched for the stored `last_seen`: this copy of
        // it is only old (cached), not the stored time.
        assert_eq!(
            policy.recording(&fading, CountsAs::Heartbeat, None, now, true),
            Recording::Defer { active: true }
        );
        // Which never makes a user stored offline deferred.
        assert!(matches!(
            policy.recording(&offline, CountsAs::Heartbeat, None, now, true),
            Recording::WriteNow { .. }
        ));
        // Idle for longer than the away timeout (300 s) allows: use is written at once, a
        // heartbeat saying the page is idle is not.
        let idle = session(OnlineStatus::Online, 5, 281);
        assert_eq!(
            heartbeat(&idle, None),
            Recording::WriteNow {
                reason: ChangeReason::Heartbeat,
                active: true
            }
        );
        assert_eq!(
            heartbeat(&idle, Some(false)),
            Recording::Defer { active: false }
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
        assert_eq!(short.session_granularity(), TimeDelta::seconds(2));
        // Users: the shortest timing less three flushes, half of it at least.
        assert_eq!(default.user_granularity(), TimeDelta::seconds(90));
        assert_eq!(short.user_granularity(), TimeDelta::milliseconds(3400));
        let slow_flush = policy(120, 25_000, 30_000).unwrap();
        assert_eq!(slow_flush.user_granularity(), TimeDelta::seconds(60));
        let away_first = PresencePolicy::new(
            Timings {
                offline_after_secs: 120,
                away_after_secs: 60,
            },
            TimeDelta::seconds(10),
            TimeDelta::seconds(30),
        );
        assert!(away_first.is_err(), "the away timeout bounds the lag too");
    }
}
