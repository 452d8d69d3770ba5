//! The inactivity sweep, run once per schedule tick across all worker replicas.

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;

use crate::Error;
use crate::db::clock_timestamp;
use crate::presence;
use crate::schema::sweep_runs;

/// A sweep this process executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepRun {
    pub tick_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub user_ids: Vec<i64>,
}

/// Runs the sweep for `tick_at` as `replica` unless some replica already has: `None` then. The window
/// is the one stored in `settings`, shared with the API.
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
    conn.transaction(|conn| {
        let window = crate::settings::window(conn)?;
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
        let user_ids = presence::mark_inactive_users_offline(conn, window)?;
        diesel::update(sweep_runs::table.find(run_id))
            .set((
                sweep_runs::finished_at.eq(clock_timestamp().nullable()),
                sweep_runs::users_marked_offline
                    .eq(i32::try_from(user_ids.len()).unwrap_or(i32::MAX)),
            ))
            .execute(conn)?;
        Ok(Some(SweepRun {
            tick_at,
            started_at,
            user_ids,
        }))
    })
}
