//! The inactivity sweep: one per schedule tick across replicas (recorded in
//! `sweep_runs`), the time nobody could be heard in (gaps between sweeps, not counted as
//! silence), and the sweep's work itself.

use std::sync::LazyLock;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::dsl::min;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{Array, Interval, Text, Timestamptz};

use crate::Error;
use crate::events::{Causes, TOLD_OFFLINE, Transition};
use crate::ids::UserId;
use crate::schema::{activity_flushes, sweep_runs, users};
use crate::settings::Timings;
use crate::sql::{clock_timestamp, least};
use crate::vocabulary::{ChangeReason, OnlineStatus, Presence};

/// A recorded sweep, as the operator page lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Queryable, Selectable)]
#[diesel(table_name = sweep_runs, check_for_backend(diesel::pg::Pg))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SweepRecord {
    pub tick_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    /// `None` while it runs (or if it failed: its claim then rolled back with it).
    pub finished_at: Option<DateTime<Utc>>,
    pub users_marked_offline: Option<i32>,
    pub swept_by: Option<String>,
}

/// The `limit` latest sweeps, newest first.
pub fn recent_sweeps(conn: &mut PgConnection, limit: i64) -> QueryResult<Vec<SweepRecord>> {
    sweep_runs::table
        .order(sweep_runs::tick_at.desc())
        .limit(limit)
        .select(SweepRecord::as_select())
        .load(conn)
}

/// How much of the recent past nobody could be heard in: silence during an outage is not
/// silence. Every gap between two sweeps (and since the last one) longer than `period`
/// means PostgreSQL, or every worker, was down for the excess; walking back from now, the
/// excesses are added up until a `window` of time in which users could be heard is
/// covered. The sweep counts a user silent only for the time it could have heard them, so
/// an outage of any length takes nobody offline who heartbeats again within a heartbeat
/// interval of the recovery; one who really left is taken a window of heard time after
/// they left, later than without the outage by the outage's length at most.
pub fn unheard_time(
    conn: &mut PgConnection,
    window: TimeDelta,
    period: TimeDelta,
) -> QueryResult<TimeDelta> {
    /// Runs read per round trip; after an outage, the ticks it missed run in a burst.
    const PAGE: i64 = 200;
    /// Runs read at most: past that, what is left unheard is not counted.
    const MOST: usize = 20_000;
    let now: DateTime<Utc> =
        diesel::select(diesel::dsl::now.into_sql::<Timestamptz>()).get_result(conn)?;
    let mut walk = Walk::from(now, window, period);
    let mut read = 0;
    loop {
        let page: Vec<DateTime<Utc>> = sweep_runs::table
            .filter(sweep_runs::finished_at.is_not_null())
            .filter(sweep_runs::started_at.lt(walk.later))
            .order(sweep_runs::started_at.desc())
            .limit(PAGE)
            .select(sweep_runs::started_at)
            .load(conn)?;
        read += page.len();
        let exhausted = page.len() < PAGE as usize || read >= MOST;
        for start in page {
            if walk.step(start) {
                return Ok(walk.unheard);
            }
        }
        if exhausted {
            return Ok(walk.unheard);
        }
    }
}

/// The walk back over the sweeps' start times that [`unheard_time`] makes.
#[derive(Debug, Clone, Copy)]
pub struct Walk {
    /// The start of the later sweep of the gap being looked at (first: now).
    later: DateTime<Utc>,
    heard: TimeDelta,
    unheard: TimeDelta,
    window: TimeDelta,
    period: TimeDelta,
}

impl Walk {
    pub fn from(now: DateTime<Utc>, window: TimeDelta, period: TimeDelta) -> Self {
        Self {
            later: now,
            heard: TimeDelta::zero(),
            unheard: TimeDelta::zero(),
            window,
            period,
        }
    }

    /// Takes the next earlier sweep's start; returns whether a window of heard time is
    /// covered (the walk is over).
    pub fn step(&mut self, start: DateTime<Utc>) -> bool {
        let gap = self.later - start;
        if gap > self.period {
            self.unheard += gap - self.period;
            self.heard += self.period;
        } else {
            self.heard += gap;
        }
        self.later = start;
        self.heard >= self.window
    }

    pub fn unheard(&self) -> TimeDelta {
        self.unheard
    }
}

/// A sweep this process executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepRun {
    pub tick_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    /// The transitions it recorded.
    pub changes: Vec<Transition>,
}

impl SweepRun {
    /// How many users it took offline.
    pub fn users_marked_offline(&self) -> usize {
        self.changes
            .iter()
            .filter(|change| change.to == Presence::Offline)
            .count()
    }
}

/// Runs the sweep for `tick_at` as `replica` unless some replica already has: `None` then.
/// The timings are the ones stored in `settings`, shared with the API; `period` is the
/// time between two ticks, which tells an outage from the schedule (see
/// [`unheard_time`]).
///
/// Claiming the tick (a unique row in `sweep_runs`), sweeping and recording the
/// transitions in the outbox happen in one transaction.
/// A replica that reaches the same tick waits on the unique index until the first commits
/// and then skips it; if the first fails, its claim rolls back with it and the tick can
/// still be run by a retry or another replica.
pub fn run_sweep(
    conn: &mut PgConnection,
    tick_at: DateTime<Utc>,
    period: TimeDelta,
    replica: &str,
) -> Result<Option<SweepRun>, Error> {
    let timings = crate::settings::timings(conn)?;
    Ok(crate::db::transaction(conn, |conn| {
        let unheard = unheard_time(conn, timings.window(), period)?;
        let claimed: Option<(i64, DateTime<Utc>)> = diesel::insert_into(sweep_runs::table)
            .values((
                sweep_runs::tick_at.eq(tick_at),
                sweep_runs::swept_by.eq(replica),
            ))
            .on_conflict(sweep_runs::tick_at)
            .do_nothing()
            .returning((sweep_runs::id, sweep_runs::started_at))
            .get_result(conn)
            .optional()?;
        let Some((run_id, started_at)) = claimed else {
            return Ok(None);
        };
        let run = SweepRun {
            tick_at,
            started_at,
            changes: sweep(conn, timings, unheard)?,
        };
        diesel::update(sweep_runs::table.find(run_id))
            .set((
                sweep_runs::finished_at.eq(clock_timestamp().nullable()),
                sweep_runs::users_marked_offline
                    .eq(i32::try_from(run.users_marked_offline()).unwrap_or(i32::MAX)),
            ))
            .execute(conn)?;
        Ok(Some(run))
    })?)
}

/// The inactivity sweep, as of `at`: the earlier of now less `unheard` (the recent time
/// in which nothing could be heard, see [`crate::sweeps::unheard_time`]) and the oldest
/// promise of the API replicas that reported within the last window (see
/// [`crate::flushes::flush_last_seen`]: what a replica saw before its promise is stored,
/// or stored within the user granularity, inside the window), so activity a replica
/// holds but could not write yet (PostgreSQL was down, say) never gets its user moved; a
/// replica silent for a whole window is presumed gone.
///
/// 1. A connected user's `active_at` falls back to the latest use on a session still
///    connected: a device closed without logging out stops counting as use once it is
///    silent for a window (slack of one session granularity for rows written lazily).
/// 2. Users silent for a window are disconnected.
///    Each gets a `sweep` transition to offline, if others were not told so already, in
///    the same statement ([`disconnect_silent`]).
/// 3. Manual and custom statuses whose end has come are ended (`expiry`).
/// 4. The connected users told online whose activity passed the away timeout get an
///    `idle` transition to away.
///
/// Returns the transitions recorded.
pub fn sweep(
    conn: &mut PgConnection,
    timings: Timings,
    unheard: TimeDelta,
) -> QueryResult<Vec<Transition>> {
    let window = timings.window();
    let now = || diesel::dsl::now.into_sql::<Timestamptz>();
    // The oldest promise of the replicas heard from within the last window.
    let promised = activity_flushes::table
        .filter(activity_flushes::reported_at.gt(now() - window))
        .select(min(activity_flushes::flushed_through))
        .single_value();
    let at: DateTime<Utc> = diesel::select(least(now() - unheard, promised)).get_result(conn)?;
    // UPDATE … FROM an aggregate of the sessions, which the DSL cannot say.
    sql_query(
        "UPDATE users u SET active_at = connected.active_at, changed_at = now() \
         FROM (SELECT s.user_id, max(s.active_at) AS active_at \
               FROM users c JOIN sessions s ON s.user_id = c.id \
               WHERE c.online_status = 'online' AND s.revoked_at IS NULL \
                 AND s.last_seen >= $2 - $1 \
               GROUP BY s.user_id) AS connected \
         WHERE u.id = connected.user_id AND u.active_at > connected.active_at + $3",
    )
    .bind::<Interval, _>(window)
    .bind::<Timestamptz, _>(at)
    .bind::<Interval, _>(timings.session_granularity())
    .execute(conn)?;
    let mut changes = disconnect_silent(conn, at - window)?;
    changes.extend(crate::status_ends::expire_statuses(conn, timings)?);
    // What else time alone changes of what others are shown, besides the ends just
    // expired: a connected user told online goes away once their last activity is older
    // than the away timeout (the partial index of migration 000016). Nothing else moves
    // without a write, and every write records its own change, so a tick reads in
    // proportion to what changes, not to who is online.
    let idle: Vec<UserId> = users::table
        .filter(users::online_status.eq(OnlineStatus::Online))
        .filter(users::published_presence.eq(Presence::Online))
        .filter(
            users::active_at
                .lt(at - timings.away_after())
                .or(users::active_at.is_null()),
        )
        .order(users::id)
        .select(users::id)
        .load(conn)?;
    let causes = Causes {
        presence: None,
        custom: ChangeReason::Expiry,
    };
    changes.extend(crate::events::record_changes(
        conn,
        timings,
        &idle,
        Some(at),
        causes,
    )?);
    Ok(changes)
}

/// Disconnects the users silent since before `silent_before` and records, in the same
/// statement, a `sweep` transition for each whom others were told is not offline; returns
/// the transitions. Others are shown a disconnected user offline, with their public
/// `last_seen` and nothing else: [`crate::shown::ShownRow::shown_to_others`], rendered
/// here in SQL (`tests/rule.rs` holds the two together).
///
/// Each such user's row is written once: disconnected and told in one `UPDATE`, not
/// disconnected, then locked and read, then told (a mass sweep cost 4 to 5 times the bare
/// disconnecting `UPDATE` that way). Joining every presence others may have been told
/// gives each transition the presence it starts from without reading the row again. A
/// row another transaction wrote since the statement began is re-checked on its new
/// version against that join, so a user whose told presence changed meanwhile is passed
/// over until the next tick (that writer recorded its own transition), and one heard
/// meanwhile is not silent.
fn disconnect_silent(
    conn: &mut PgConnection,
    silent_before: DateTime<Utc>,
) -> QueryResult<Vec<Transition>> {
    // UPDATE … FROM, with what it returns inserted in the same statement: more than the
    // DSL says. Built once: what others are told of the offline is the outbox's.
    static STATEMENT: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH gone AS ( \
           UPDATE users u SET online_status = 'offline', {TOLD_OFFLINE} \
           FROM unnest($2::text[]) AS was (told) \
           WHERE u.online_status = 'online' AND u.last_seen < $1 \
             AND u.published_presence = was.told \
           RETURNING u.id, was.told, \
             presence_public_last_seen(u.availability, u.invisible_since, u.last_seen) \
               AS last_seen) \
         INSERT INTO presence_events (user_id, from_status, to_status, reason, at, last_seen) \
         SELECT id, told, 'offline', 'sweep', clock_timestamp(), last_seen FROM gone \
         WHERE told <> 'offline' ORDER BY id \
         RETURNING *"
        )
    });
    sql_query(STATEMENT.as_str())
        .bind::<Timestamptz, _>(silent_before)
        .bind::<Array<Text>, _>(Presence::ALL)
        .load(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    /// What is unheard as of `now`, walking back over runs started at `starts` seconds.
    fn unheard(now: i64, starts: impl IntoIterator<Item = i64>) -> TimeDelta {
        let mut walk = Walk::from(at(now), TimeDelta::seconds(8), TimeDelta::seconds(1));
        for start in starts {
            if walk.step(at(start)) {
                break;
            }
        }
        walk.unheard()
    }

    #[test]
    fn only_gaps_longer_than_the_period_count_and_only_back_to_a_window_of_heard_time() {
        let seconds = TimeDelta::seconds;
        // On schedule: nothing unheard.
        assert_eq!(unheard(20, (0..20).rev()), seconds(0));
        // Runs at 0..=10, then none until 21 (PostgreSQL down), then 21 and 22: 10 s unheard.
        assert_eq!(
            unheard(23, [22, 21].into_iter().chain((0..=10).rev())),
            seconds(10)
        );
        // The ticks missed meanwhile, run in a burst on recovery, hear nothing.
        let burst = std::iter::repeat_n(21, 30);
        assert_eq!(unheard(22, burst.chain((0..=10).rev())), seconds(10));
        // Once a window of heard time has passed since, the outage no longer counts.
        assert_eq!(
            unheard(31, (21..=30).rev().chain((0..=10).rev())),
            seconds(0)
        );
        // No sweep ever: nothing to go by.
        assert_eq!(unheard(5, []), seconds(0));
    }
}
