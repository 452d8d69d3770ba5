//! The flush of deferred activity: what API replicas heard of busy users and did not write
//! at once (see `PresencePolicy::may_defer`), written in one set-based statement, with
//! each replica's promise to the sweep.
//!
//! A user's row is written only once their stored `last_seen` or `active_at` lags by the
//! user granularity (`PresencePolicy::user_granularity`: 90 s at a 120 s window and a
//! 10 s flush), a session row once its times lag by the session granularity (half the
//! window): at a heartbeat every 30 s, about one row write per user every 80 s instead of
//! one per heartbeat. A touch not written yet stays with the replica for its next flush,
//! so the stored times never lag by more than the granularity and a flush interval,
//! which the policy keeps inside the window and the away timeout: the sweep, and everyone
//! reading the stored times, still see the user as they are; only the `last_seen` others
//! are shown is up to that coarse.

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{Array, BigInt, Bool, Interval, Nullable, Timestamptz};

use crate::ids::{SessionId, UserId};
use crate::policy::FlushGranularity;

/// Deferred activity of one session: seen at `seen_at`, really used at `active_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    pub session_id: SessionId,
    pub seen_at: DateTime<Utc>,
    pub active_at: Option<DateTime<Utc>>,
}

/// Which users a flush writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserWrites {
    /// Those whose stored times lag by the user granularity: the periodic flush.
    Due,
    /// Every user with newer activity: a replica stopping, or its backlog full.
    All,
}

/// What a flush did with its touches.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Flushed {
    /// The users whose rows it wrote.
    pub written: Vec<UserId>,
    /// The sessions whose activity is newer than what is stored and was not due: the
    /// replica keeps them for its next flush.
    pub kept: Vec<SessionId>,
    /// The sessions whose user's stored `last_seen` is, after the flush, within the user
    /// granularity of it: activity on them may be deferred however old the replica's
    /// copy of that `last_seen` is (see `PresencePolicy::may_defer`).
    pub vouched: Vec<SessionId>,
}

/// Writes deferred activity: `touches`, at most one per session, taken by `replica` at
/// `flushed_through`, and records that promise in `activity_flushes` in the same
/// transaction (see [`crate::sweeps::sweep`]): everything the replica saw before it is
/// written, or stored within the user granularity of it.
///
/// Each user written gets the latest `last_seen` and `active_at` of their touched
/// sessions, unless a write since left later ones; the flag is never changed here, so a
/// flush cannot bring anyone online (activity is only deferred when it changes nothing
/// others are shown). Revoked sessions are skipped. A session row is rewritten once its
/// stored times lag by the session granularity: they serve the session TTL, "is another
/// session live?" and the sweep's fall-back of `active_at`. Users are written before
/// sessions, the lock order of every presence write.
pub fn flush_last_seen(
    conn: &mut PgConnection,
    replica: &str,
    flushed_through: DateTime<Utc>,
    touches: &[Touch],
    granularity: FlushGranularity,
    writes: UserWrites,
) -> QueryResult<Flushed> {
    #[derive(QueryableByName)]
    struct Outcome {
        #[diesel(sql_type = BigInt)]
        session_id: SessionId,
        #[diesel(sql_type = BigInt)]
        user_id: UserId,
        #[diesel(sql_type = Bool)]
        written: bool,
        #[diesel(sql_type = Bool)]
        kept: bool,
        #[diesel(sql_type = Bool)]
        vouched: bool,
    }
    let ids: Vec<SessionId> = touches.iter().map(|t| t.session_id).collect();
    let seen: Vec<DateTime<Utc>> = touches.iter().map(|t| t.seen_at).collect();
    let active: Vec<Option<DateTime<Utc>>> = touches.iter().map(|t| t.active_at).collect();
    let all = writes == UserWrites::All;
    crate::db::transaction(conn, |conn| {
        use crate::schema::activity_flushes::dsl as flushes;
        diesel::insert_into(flushes::activity_flushes)
            .values((
                flushes::replica.eq(replica),
                flushes::flushed_through.eq(flushed_through),
            ))
            .on_conflict(flushes::replica)
            .do_update()
            .set((
                flushes::flushed_through.eq(diesel::upsert::excluded(flushes::flushed_through)),
                flushes::reported_at.eq(diesel::dsl::now),
            ))
            .execute(conn)?;
        if ids.is_empty() {
            return Ok(Flushed::default());
        }
        // UPDATE … FROM `unnest` of the buffered touches, in a data-modifying WITH whose
        // outcome per session is selected after it, which the DSL cannot say.
        let outcomes: Vec<Outcome> = sql_query(
            "WITH touched AS ( \
               SELECT t.session_id, s.user_id, t.seen_at, t.active_at \
               FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[]) \
                 AS t(session_id, seen_at, active_at) \
               JOIN sessions s ON s.id = t.session_id WHERE s.revoked_at IS NULL), \
             latest AS ( \
               SELECT user_id, max(seen_at) AS seen_at, max(active_at) AS active_at \
               FROM touched GROUP BY user_id), \
             written AS ( \
               UPDATE users u SET last_seen = GREATEST(u.last_seen, latest.seen_at), \
                 active_at = GREATEST(u.active_at, latest.active_at), changed_at = now() \
               FROM latest \
               WHERE u.id = latest.user_id \
                 AND (u.last_seen IS NULL \
                   OR (u.last_seen < latest.seen_at AND ($4 OR u.last_seen <= now() - $5)) \
                   OR (latest.active_at IS NOT NULL AND (u.active_at IS NULL \
                     OR (u.active_at < latest.active_at AND ($4 OR u.active_at <= now() - $5))))) \
               RETURNING u.id, u.last_seen) \
             SELECT t.session_id, t.user_id, w.id IS NOT NULL AS written, \
               w.id IS NULL AND (t.seen_at > coalesce(u.last_seen, '-infinity') \
                 OR t.active_at > coalesce(u.active_at, '-infinity')) IS TRUE AS kept, \
               coalesce(w.last_seen, u.last_seen) > now() - $5 IS TRUE AS vouched \
             FROM touched t JOIN users u ON u.id = t.user_id \
             LEFT JOIN written w ON w.id = t.user_id",
        )
        .bind::<Array<BigInt>, _>(&ids)
        .bind::<Array<Timestamptz>, _>(&seen)
        .bind::<Array<Nullable<Timestamptz>>, _>(&active)
        .bind::<Bool, _>(all)
        .bind::<Interval, _>(granularity.users)
        .load(conn)?;
        // The same, for the sessions.
        sql_query(
            "UPDATE sessions s SET last_seen = GREATEST(s.last_seen, t.seen_at), \
               active_at = GREATEST(s.active_at, t.active_at) \
             FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[]) \
               AS t(session_id, seen_at, active_at) \
             WHERE s.id = t.session_id AND s.revoked_at IS NULL \
               AND (t.seen_at - s.last_seen >= $4 OR t.active_at - s.active_at >= $4)",
        )
        .bind::<Array<BigInt>, _>(&ids)
        .bind::<Array<Timestamptz>, _>(&seen)
        .bind::<Array<Nullable<Timestamptz>>, _>(&active)
        .bind::<Interval, _>(granularity.sessions)
        .execute(conn)?;
        let mut flushed = Flushed::default();
        for outcome in outcomes {
            if outcome.written {
                flushed.written.push(outcome.user_id);
            }
            if outcome.kept {
                flushed.kept.push(outcome.session_id);
            }
            if outcome.vouched {
                flushed.vouched.push(outcome.session_id);
            }
        }
        flushed.written.sort_unstable();
        flushed.written.dedup();
        Ok(flushed)
    })
}

/// A replica stopping gracefully, its last activity written: it no longer holds the sweep
/// back.
pub fn forget_replica(conn: &mut PgConnection, replica: &str) -> QueryResult<()> {
    use crate::schema::activity_flushes;
    diesel::delete(activity_flushes::table.find(replica))
        .execute(conn)
        .map(drop)
}
