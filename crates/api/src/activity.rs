//! The activity write buffer: the `last_seen` of busy users, written in batches.
//!
//! Writing PostgreSQL on every heartbeat and request caps the service at what one row
//! update costs. So a request from a user who is already online, and whose stored
//! `last_seen` stays inside the offline window until the next flush, writes nothing: its
//! time is kept here and flushed with everyone else's every `LAST_SEEN_FLUSH_MS`, and a
//! user's row is written only once its stored times lag by the user granularity (90 s at
//! the defaults): at most one row write per user per half window, whatever the heartbeat
//! cadence (see `presence_model::flushes`). Touches not yet due stay here for the next flush.
//! Anything that changes a status (login, logout, a user coming back) is still written at
//! once.
//!
//! (The session cache that lets most requests skip PostgreSQL is `session_cache`.)

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use actix_web::web;
use chrono::{DateTime, Utc};
use presence_model::DbPool;
use presence_model::flushes::{self, Touch, UserWrites};
use presence_model::ids::{SessionId, UserId};
use presence_model::policy::FlushGranularity;

/// Deferred writes kept at most before a flush is forced (one per active session).
pub const MAX_PENDING: usize = 1_000_000;

/// Activity deferred to the next flush, written by this replica under its name in
/// `activity_flushes`.
pub struct ActivityBuffer {
    /// Session id → the latest activity not yet written.
    pending: Mutex<HashMap<SessionId, Touch>>,
    /// The sessions the last flush vouched for (see `flushes::Flushed::vouched`).
    vouched: RwLock<HashSet<SessionId>>,
    /// Held through a flush: flushes run one at a time, and "flush now" waits for the one
    /// in progress, so everything deferred before it is written when it returns.
    flushing: tokio::sync::Mutex<()>,
    /// This process's name in `activity_flushes`.
    replica: String,
}

impl ActivityBuffer {
    /// A buffer whose flushes promise, as `replica`, what they wrote.
    pub fn new(replica: String) -> Self {
        Self {
            pending: Mutex::new(HashMap::new()),
            vouched: RwLock::new(HashSet::new()),
            flushing: tokio::sync::Mutex::new(()),
            replica,
        }
    }

    /// Records activity at `at` (real use if `active`) to be written by the next flush.
    /// Returns whether the backlog is full enough that the caller should flush now.
    pub fn defer(&self, session_id: SessionId, at: DateTime<Utc>, active: bool) -> bool {
        let touch = Touch {
            session_id,
            seen_at: at,
            active_at: active.then_some(at),
        };
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        merge(&mut pending, touch);
        pending.len() >= MAX_PENDING
    }

    /// Whether the last flush found `session`'s user stored within the user granularity of it,
    /// so activity on it may be deferred whatever this replica's copy of the session says
    /// (see `PresencePolicy::may_defer`).
    pub fn vouches(&self, session: SessionId) -> bool {
        self.vouched
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&session)
    }

    fn take_pending(&self) -> Vec<Touch> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *pending).into_values().collect()
    }

    /// Puts back touches a failed flush could not write, keeping the later times of each.
    fn restore(&self, touches: Vec<Touch>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for touch in touches {
            merge(&mut pending, touch);
        }
    }

    /// Writes the deferred activity to `pool` (the users `writes` says, when their stored
    /// times lag by `granularity.users`; session rows when theirs lag by
    /// `granularity.sessions`), with this replica's promise that everything it saw before
    /// the flush began is stored within the user granularity (which the sweep waits for); touches not written are kept for the next
    /// flush. Runs even with nothing pending, to renew the promise. On failure
    /// (PostgreSQL down) every touch is kept: nothing is lost while the process lives,
    /// and the stale promise keeps the sweep from taking users whose activity is still
    /// here. Returns the users written, `None` if it could not write.
    pub async fn flush(
        &self,
        pool: &DbPool,
        granularity: FlushGranularity,
        writes: UserWrites,
    ) -> Option<Vec<UserId>> {
        let _one_at_a_time = self.flushing.lock().await;
        let flushed_through = presence_model::clock::now();
        let touches = self.take_pending();
        let count = touches.len();
        let replica = self.replica.clone();
        let pool = pool.clone();
        let result = web::block(move || {
            let written = pool
                .get()
                .map_err(presence_model::Error::from)
                .and_then(|mut conn| {
                    flushes::flush_last_seen(
                        &mut conn,
                        &replica,
                        flushed_through,
                        &touches,
                        granularity,
                        writes,
                    )
                    .map_err(Into::into)
                });
            (written, touches)
        })
        .await;
        match result {
            Ok((Ok(flushed), touches)) => {
                log::debug!(
                    "flushed activity of {count} sessions ({} users written, {} kept)",
                    flushed.written.len(),
                    flushed.kept.len()
                );
                let kept: HashSet<SessionId> = flushed.kept.into_iter().collect();
                self.restore(
                    touches
                        .into_iter()
                        .filter(|touch| kept.contains(&touch.session_id))
                        .collect(),
                );
                *self.vouched.write().unwrap_or_else(|e| e.into_inner()) =
                    flushed.vouched.into_iter().collect();
                Some(flushed.written)
            }
            Ok((Err(e), touches)) => {
                log::error!("could not write the activity of {count} sessions, will retry: {e}");
                self.restore(touches);
                None
            }
            Err(e) => {
                log::error!("activity flush did not run: {e}");
                None
            }
        }
    }

    /// The last flush of a replica stopping gracefully (every user with newer activity
    /// written), then its promise withdrawn so it no longer holds the sweep back.
    pub async fn flush_and_forget(&self, pool: &DbPool, granularity: FlushGranularity) {
        self.flush(pool, granularity, UserWrites::All).await;
        let (pool, replica) = (pool.clone(), self.replica.clone());
        let forgotten = web::block(move || {
            let mut conn = pool.get().map_err(presence_model::Error::from)?;
            flushes::forget_replica(&mut conn, &replica).map_err(presence_model::Error::from)
        })
        .await;
        if !matches!(forgotten, Ok(Ok(()))) {
            log::warn!("could not withdraw this replica's flush promise; it lapses after a window");
        }
    }
}

/// Keeps one touch per session: the latest sighting and the latest use.
fn merge(pending: &mut HashMap<SessionId, Touch>, touch: Touch) {
    let kept = pending.entry(touch.session_id).or_insert(touch);
    kept.seen_at = kept.seen_at.max(touch.seen_at);
    kept.active_at = kept.active_at.max(touch.active_at);
}

/// Flushes `buffer` every `period` until the server stops, writing the users due at the
/// granularity in force at each flush, telling `wrote` the users each flush wrote.
pub async fn flush_periodically(
    buffer: Arc<ActivityBuffer>,
    pool: DbPool,
    period: Duration,
    granularity: impl Fn() -> FlushGranularity,
    wrote: impl Fn(&[UserId]),
) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Some(users) = buffer.flush(&pool, granularity(), UserWrites::Due).await {
            wrote(&users);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn both(granularity: TimeDelta) -> FlushGranularity {
        FlushGranularity {
            users: granularity,
            sessions: granularity,
        }
    }

    fn sorted(mut touches: Vec<Touch>) -> Vec<(i64, DateTime<Utc>, Option<DateTime<Utc>>)> {
        touches.sort_unstable_by_key(|t| t.session_id);
        touches
            .into_iter()
            .map(|t| (t.session_id.0, t.seen_at, t.active_at))
            .collect()
    }

    #[test]
    fn deferred_activity_is_one_entry_per_session_whatever_the_requests() {
        let activity = ActivityBuffer::new("test".to_owned());
        let start = Utc::now();
        let ms = TimeDelta::milliseconds;
        for n in 0..10_000 {
            // Session 0 is only ever idle; the others are used on every other request.
            activity.defer(SessionId(n % 3), start + ms(n), n % 3 != 0 && n % 2 == 0);
        }
        assert_eq!(
            sorted(activity.take_pending()),
            vec![
                (0, start + ms(9_999), None),
                (1, start + ms(9_997), Some(start + ms(9_994))),
                (2, start + ms(9_998), Some(start + ms(9_998))),
            ]
        );
        assert!(activity.take_pending().is_empty());
    }

    #[test]
    fn a_failed_flush_loses_nothing() {
        let activity = ActivityBuffer::new("test".to_owned());
        let t = Utc::now();
        activity.defer(SessionId(1), t, true);
        let taken = activity.take_pending();
        activity.defer(SessionId(1), t + TimeDelta::seconds(1), false);
        activity.defer(SessionId(2), t, false);
        activity.restore(taken);
        assert_eq!(
            sorted(activity.take_pending()),
            vec![(1, t + TimeDelta::seconds(1), Some(t)), (2, t, None)]
        );
    }

    /// Its own database, a user logged in once: the session's id.
    fn logged_in(db: &presence_model::testing::TestDatabase) -> SessionId {
        use presence_model::testing::{TIMINGS, register};
        let user = register(db, "ada");
        let mut conn = db.pool().get().unwrap();
        presence_model::users::open_session(&mut conn, TIMINGS, user)
            .unwrap()
            .unwrap()
            .session_id
    }

    #[actix_web::test]
    async fn a_flush_writes_what_was_deferred_and_promises_it() {
        let db = presence_model::testing::TestDatabase::new();
        let session = logged_in(&db);
        let activity = ActivityBuffer::new("replica-a".to_owned());
        let later = Utc::now() + TimeDelta::seconds(30);
        activity.defer(session, later, true);
        assert!(
            activity
                .flush(db.pool(), both(TimeDelta::zero()), UserWrites::Due)
                .await
                .is_some()
        );
        let micros = |sql: &str| db.query_i64(sql);
        assert_eq!(
            micros(&format!(
                "SELECT (extract(epoch FROM last_seen) * 1e6)::bigint AS n FROM sessions \
                 WHERE id = {session}"
            )),
            later.timestamp_micros()
        );
        assert_eq!(
            micros(
                "SELECT count(*) AS n FROM activity_flushes WHERE replica = 'replica-a' \
                 AND flushed_through >= now() - interval '1 minute'"
            ),
            1
        );
        assert!(activity.take_pending().is_empty());
        activity
            .flush_and_forget(db.pool(), both(TimeDelta::zero()))
            .await;
        assert_eq!(
            micros("SELECT count(*) AS n FROM activity_flushes"),
            0,
            "a replica that stops withdraws its promise"
        );
    }

    #[actix_web::test]
    async fn a_touch_not_yet_due_stays_for_the_next_flush_and_its_session_is_vouched_for() {
        let db = presence_model::testing::TestDatabase::new();
        let session = logged_in(&db);
        let activity = ActivityBuffer::new("replica-c".to_owned());
        let granularity = both(TimeDelta::seconds(60));
        let stored =
            || db.query_i64("SELECT (extract(epoch FROM last_seen) * 1e6)::bigint AS n FROM users");
        let at_login = stored();
        let later = Utc::now() + TimeDelta::seconds(1);
        activity.defer(session, later, true);
        // Stored at the login, a moment ago: not due.
        let written = activity
            .flush(db.pool(), granularity, UserWrites::Due)
            .await;
        assert_eq!(written, Some(vec![]));
        assert_eq!(stored(), at_login);
        assert!(activity.vouches(session));
        assert_eq!(
            sorted(activity.take_pending()),
            vec![(session.0, later, Some(later))]
        );
        // Kept, it is written once due, or by a flush that writes everything.
        activity.defer(session, later, true);
        db.execute("UPDATE users SET last_seen = now() - interval '61 seconds'");
        let written = activity
            .flush(db.pool(), granularity, UserWrites::Due)
            .await
            .unwrap();
        assert_eq!(written.len(), 1);
        assert_eq!(stored(), later.timestamp_micros());
        assert!(activity.take_pending().is_empty());
        let even_later = later + TimeDelta::seconds(1);
        activity.defer(session, even_later, false);
        activity
            .flush(db.pool(), granularity, UserWrites::All)
            .await
            .unwrap();
        assert_eq!(stored(), even_later.timestamp_micros());
        assert!(activity.take_pending().is_empty());
    }

    #[actix_web::test]
    async fn a_flush_that_cannot_reach_postgres_keeps_everything_for_the_next() {
        // Nothing listens on port 1.
        let unreachable = presence_model::db::build_pool(
            "postgres://postgres@127.0.0.1:1/none",
            1,
            std::time::Duration::from_millis(200),
        );
        let activity = ActivityBuffer::new("replica-b".to_owned());
        let t = Utc::now();
        activity.defer(SessionId(7), t, true);
        assert!(
            activity
                .flush(&unreachable, both(TimeDelta::zero()), UserWrites::Due)
                .await
                .is_none()
        );
        assert_eq!(sorted(activity.take_pending()), vec![(7, t, Some(t))]);
    }
}
