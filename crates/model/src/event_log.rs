//! The event log's partitions. `presence_events` is partitioned by the time of the
//! transition (migration 000015), so that it stays the size of its retention: the worker
//! makes the partitions ahead of time, a width each, and drops whole ones once they are
//! older than the retention, with no `DELETE` and no dead rows left to vacuum. New rows
//! only touch the newest partition's indexes.
//!
//! What this bounds, and what it costs readers: a user's history and a resume reach back
//! as far as the retention and no further. A resume from a revision that went with a
//! dropped partition is refused ([`crate::feed::ResumeRefused::TooOld`]) and the stream
//! starts from a snapshot, as a resume past its reach always did.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;

use crate::schema::event_partitions;

/// Partitions made ahead of the current one: a worker that misses a few maintenance
/// rounds still finds them made.
const PARTITIONS_AHEAD: i32 = 2;

/// Makes the partitions that `at` and the next [`PARTITIONS_AHEAD`] widths need; returns
/// how many it made (none when they exist). Several workers may call it at once.
pub fn prepare_partitions(
    conn: &mut PgConnection,
    at: DateTime<Utc>,
    width: TimeDelta,
) -> QueryResult<i32> {
    diesel::select(crate::sql::prepare_event_partitions(
        at,
        width,
        width * PARTITIONS_AHEAD,
    ))
    .get_result(conn)
}

/// Retention: drops the partitions that ended before `before` (once a `grace` has passed
/// since they were found so, and never one that still holds a transition to publish), and
/// deletes up to `batch` rows older than `before` from the default partition (rows that
/// found no partition made); returns the partitions dropped.
pub fn drop_partitions(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    grace: TimeDelta,
    batch: i64,
) -> QueryResult<i32> {
    diesel::select(crate::sql::drop_event_partitions(before, grace, batch)).get_result(conn)
}

/// What one round of [`keep`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    pub dropped: i32,
    /// The partitions left (the default one aside).
    pub partitions: i64,
}

/// The worker's round of maintenance, as of the database's clock (which stamps `at`, so
/// a worker whose clock is off still makes the partitions the writes need): makes those
/// of now and the next widths, then applies the retention `keep`.
pub fn keep(
    conn: &mut PgConnection,
    width: TimeDelta,
    keep: TimeDelta,
    grace: TimeDelta,
    batch: i64,
) -> QueryResult<Kept> {
    let now: DateTime<Utc> =
        diesel::select(diesel::dsl::now.into_sql::<diesel::sql_types::Timestamptz>())
            .get_result(conn)?;
    prepare_partitions(conn, now, width)?;
    let dropped = drop_partitions(conn, now - keep, grace, batch)?;
    Ok(Kept {
        dropped,
        partitions: partition_count(conn)?,
    })
}

/// How many partitions the log has (the default one aside): what stays flat while the
/// retention holds.
pub fn partition_count(conn: &mut PgConnection) -> QueryResult<i64> {
    event_partitions::table.count().get_result(conn)
}
