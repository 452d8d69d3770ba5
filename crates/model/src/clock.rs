//! This process's reading of the database's clock.
//!
//! Presence is decided by comparing times an API process stamps (deferred activity, its
//! promise to the sweep, "is this end in the future?") with times PostgreSQL stamps
//! (`now()` in every write and read). An API whose clock runs behind would stamp a
//! heartbeat as older than it is and show its user offline. So each process measures how
//! far the database's clock is from its own ([`observe`], on a round trip it makes anyway)
//! and [`now`] is the database's time, read off the local clock.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

/// The database's clock minus this process's, in microseconds.
static OFFSET_MICROS: AtomicI64 = AtomicI64::new(0);

/// The database's time now, as well as this process knows it.
pub fn now() -> DateTime<Utc> {
    Utc::now() + offset()
}

/// How far the database's clock is ahead of this process's (negative: behind).
pub fn offset() -> TimeDelta {
    TimeDelta::microseconds(OFFSET_MICROS.load(Ordering::Relaxed))
}

/// Adopts `database_now`, read by a round trip sent at `sent` and answered at `received`
/// (this process's clock): the database read its clock about halfway. Returns the offset.
pub fn observe(
    sent: DateTime<Utc>,
    database_now: DateTime<Utc>,
    received: DateTime<Utc>,
) -> TimeDelta {
    let midpoint = sent + (received - sent) / 2;
    let offset = database_now - midpoint;
    OFFSET_MICROS.store(offset.num_microseconds().unwrap_or(0), Ordering::Relaxed);
    offset
}

/// Reads the database's clock on `conn` and adopts it (see [`observe`]).
pub fn calibrate(conn: &mut diesel::PgConnection) -> diesel::QueryResult<TimeDelta> {
    use diesel::prelude::*;
    let sent = Utc::now();
    let database_now: DateTime<Utc> =
        diesel::select(crate::sql::clock_timestamp()).get_result(conn)?;
    Ok(observe(sent, database_now, Utc::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_is_the_database_time_less_the_round_trips_midpoint() {
        let sent = Utc::now();
        let received = sent + TimeDelta::milliseconds(20);
        let database_now = sent + TimeDelta::milliseconds(10) - TimeDelta::seconds(8);
        assert_eq!(
            observe(sent, database_now, received),
            TimeDelta::seconds(-8)
        );
        let drift = now() - Utc::now() + TimeDelta::seconds(8);
        assert!(drift.abs() < TimeDelta::milliseconds(50), "{drift}");
        observe(sent, sent + TimeDelta::milliseconds(10), received);
        assert_eq!(offset(), TimeDelta::zero());
    }
}
