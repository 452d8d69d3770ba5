//! What the worker deletes so that tables stop growing with time: sessions nobody can use
//! any more, old sweep runs, and the operator page's samples past their day. Each call deletes one bounded batch in its own short
//! statement, oldest first, so a purge never holds many row locks or a long transaction;
//! the worker repeats it until a batch comes back short.

use chrono::TimeDelta;
use diesel::dsl::now;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::Timestamptz;

use crate::ids::SessionId;
use crate::schema::{presence_samples, sessions, sweep_runs};

/// A purge: deletes at most a batch (the last argument) of rows older than a retention.
pub type Purge = fn(&mut PgConnection, TimeDelta, i64) -> QueryResult<usize>;

/// Deletes at most `batch` sessions that can never be used again and are older than
/// `retention`: revoked `retention` ago, or unused for the longest session TTL an API
/// replica records (`settings::record_session_ttl`) and `retention` more. Revoked rows are
/// kept that long because a replica catching up on revocations it missed reads them.
/// Returns how many went.
pub fn purge_sessions(
    conn: &mut PgConnection,
    retention: TimeDelta,
    batch: i64,
) -> QueryResult<usize> {
    let cutoff = now.into_sql::<Timestamptz>() - retention;
    let revoked = sessions::table
        .select(sessions::id)
        .filter(sessions::revoked_at.lt(cutoff.nullable()))
        .order(sessions::revoked_at)
        .limit(batch)
        .load::<SessionId>(conn)?;
    let mut gone =
        diesel::delete(sessions::table.filter(sessions::id.eq_any(&revoked))).execute(conn)?;
    let Some(ttl) = crate::settings::longest_session_ttl(conn)? else {
        return Ok(gone);
    };
    let unused_since = cutoff - TimeDelta::seconds(ttl.into());
    let expired = sessions::table
        .select(sessions::id)
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::last_seen.lt(unused_since))
        .order(sessions::last_seen)
        .limit(batch - gone as i64)
        .load::<SessionId>(conn)?;
    gone += diesel::delete(
        sessions::table
            .filter(sessions::id.eq_any(&expired))
            // Used since it was selected: it stays.
            .filter(sessions::last_seen.lt(unused_since)),
    )
    .execute(conn)?;
    Ok(gone)
}

/// Deletes at most `batch` sweep runs started longer ago than `retention`; returns how
/// many went. (A run's row is what makes its tick run once across replicas; a tick that
/// old never comes again.)
pub fn purge_sweep_runs(
    conn: &mut PgConnection,
    retention: TimeDelta,
    batch: i64,
) -> QueryResult<usize> {
    let cutoff = now.into_sql::<Timestamptz>() - retention;
    let old = sweep_runs::table
        .select(sweep_runs::id)
        .filter(sweep_runs::started_at.lt(cutoff))
        .order(sweep_runs::started_at)
        .limit(batch)
        .load::<i64>(conn)?;
    diesel::delete(sweep_runs::table.filter(sweep_runs::id.eq_any(&old))).execute(conn)
}

/// Deletes at most `batch` of the operator page's samples older than `retention`; returns
/// how many went.
pub fn purge_samples(
    conn: &mut PgConnection,
    retention: TimeDelta,
    batch: i64,
) -> QueryResult<usize> {
    let cutoff = now.into_sql::<Timestamptz>() - retention;
    let old = presence_samples::table
        .select(presence_samples::at)
        .filter(presence_samples::at.lt(cutoff))
        .order(presence_samples::at)
        .limit(batch)
        .load::<chrono::DateTime<chrono::Utc>>(conn)?;
    diesel::delete(presence_samples::table.filter(presence_samples::at.eq_any(&old))).execute(conn)
}
