//! The ends of manual and custom statuses: which are coming (for the jobs that end them
//! on time), and ending those whose time has come.

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{Interval, Nullable, Text, Timestamptz};

use crate::events::Transition;
use crate::ids::UserId;
use crate::schema::users;
use crate::settings::Timings;
use crate::vocabulary::{Availability, ChangeReason};

/// The times of the manual and custom status ends within `horizon` from now (each
/// second once): what the expiry queue must hold jobs for. Served by the partial indexes
/// on both end columns.
pub fn ends_within(
    conn: &mut PgConnection,
    horizon: chrono::TimeDelta,
) -> QueryResult<Vec<DateTime<Utc>>> {
    #[derive(QueryableByName)]
    struct End {
        #[diesel(sql_type = Timestamptz)]
        at: DateTime<Utc>,
    }
    // A union of two indexed ranges, truncated to the second: more than the DSL says.
    let ends: Vec<End> = sql_query(
        "SELECT DISTINCT date_trunc('second', at) AS at FROM ( \
           SELECT availability_until AS at FROM users \
           WHERE availability_until > now() AND availability_until <= now() + $1 \
           UNION ALL SELECT status_expires_at FROM users \
           WHERE status_expires_at > now() AND status_expires_at <= now() + $1) AS ends",
    )
    .bind::<Interval, _>(horizon)
    .load(conn)?;
    Ok(ends.into_iter().map(|end| end.at).collect())
}

/// How long until the next manual or custom status end before `before`, by the
/// database's clock (zero for one already due and not yet ended); `None` if there is
/// none.
pub fn time_to_next_end(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
) -> QueryResult<Option<std::time::Duration>> {
    #[derive(QueryableByName)]
    struct Wait {
        #[diesel(sql_type = Nullable<diesel::sql_types::Double>)]
        secs: Option<f64>,
    }
    // A union of two indexed minimums, as seconds from now: more than the DSL says.
    let Wait { secs } = sql_query(
        "SELECT extract(epoch FROM min(at) - now())::float8 AS secs FROM ( \
           SELECT min(availability_until) AS at FROM users WHERE availability_until < $1 \
           UNION ALL SELECT min(status_expires_at) FROM users WHERE status_expires_at < $1 \
         ) AS ends",
    )
    .bind::<Timestamptz, _>(before)
    .get_result(conn)?;
    Ok(secs.map(|secs| std::time::Duration::from_secs_f64(secs.max(0.0))))
}

/// Ends every manual status and custom status whose time has come, and records what
/// others are shown change (reason `expiry`). Run by the job scheduled for each end, and
/// by every sweep in case a job was lost; a second run finds nothing to do. Returns the
/// transitions recorded.
pub fn expire_statuses(conn: &mut PgConnection, timings: Timings) -> QueryResult<Vec<Transition>> {
    use diesel::dsl::{case_when, now};
    crate::db::transaction(conn, |conn| {
        let availability_ended = users::availability_until.le(now);
        let status_ended = || users::status_expires_at.le(now);
        // Locked in id order first, as every write of many users' rows is.
        let due: Vec<UserId> = users::table
            .filter(availability_ended.or(status_ended()))
            .order(users::id)
            .select(users::id)
            .for_update()
            .load(conn)?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<UserId> = diesel::update(users::table.filter(users::id.eq_any(&due)))
            .set((
                users::availability.eq(case_when::<_, _, Text>(
                    availability_ended,
                    Availability::Auto,
                )
                .otherwise(users::availability)),
                users::availability_until.eq(case_when::<_, _, Nullable<Timestamptz>>(
                    availability_ended,
                    None::<DateTime<Utc>>,
                )
                .otherwise(users::availability_until)),
                users::status_text.eq(case_when::<_, _, Nullable<Text>>(
                    status_ended(),
                    None::<String>,
                )
                .otherwise(users::status_text)),
                users::status_emoji.eq(case_when::<_, _, Nullable<Text>>(
                    status_ended(),
                    None::<String>,
                )
                .otherwise(users::status_emoji)),
                users::status_expires_at.eq(case_when::<_, _, Nullable<Timestamptz>>(
                    status_ended(),
                    None::<DateTime<Utc>>,
                )
                .otherwise(users::status_expires_at)),
                users::changed_at.eq(now),
            ))
            .returning(users::id)
            .get_results(conn)?;
        // Time caused these: a user who also went silent is recorded `sweep`.
        let causes = crate::events::Causes {
            presence: None,
            custom: ChangeReason::Expiry,
        };
        crate::events::record_changes(conn, timings, &ids, None, causes)
    })
}
