//! The inactivity sweep, run once per schedule tick across all worker replicas.

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;

use crate::Error;
use crate::db::clock_timestamp;
use crate::events::PresenceChanged;
use crate::presence;
use crate::schema::sweep_runs;
use crate::status::Presence;

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

/// A sweep this process executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepRun {
    pub tick_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    /// The transitions it recorded.
    pub changes: Vec<PresenceChanged>,
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
/// The timings are the ones stored in `settings`, shared with the API.
///
/// Claiming the tick (a unique row in `sweep_runs`), sweeping and recording the
/// transitions in the outbox happen in one transaction.
/// A replica that reaches the same tick waits on the unique index until the first commits
/// and then skips it; if the first fails, its claim rolls back with it and the tick can
/// still be run by a retry or another replica.
pub fn run_sweep(
    conn: &mut PgConnection,
    tick_at: DateTime<Utc>,
    replica: &str,
) -> Result<Option<SweepRun>, Error> {
    let timings = crate::settings::timings(conn)?;
    Ok(crate::db::transaction(conn, |conn| {
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
            changes: presence::sweep(conn, timings)?,
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
