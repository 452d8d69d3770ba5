//! The presence history: every transition, appended by the worker.

use diesel::pg::PgConnection;
use diesel::prelude::*;

use crate::jobs::PresenceChanged;
use crate::schema::{presence_events, users};

/// Rows per INSERT: 5 parameters a row stays far below PostgreSQL's 65,535.
const ROWS_PER_INSERT: usize = 5000;

/// Appends `changes`; returns how many were new. A redelivered job inserts nothing twice.
pub fn record_presence_changes(
    conn: &mut PgConnection,
    changes: &[PresenceChanged],
) -> QueryResult<usize> {
    let mut inserted = 0;
    for chunk in changes.chunks(ROWS_PER_INSERT) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|change| {
                (
                    presence_events::user_id.eq(change.user_id),
                    presence_events::from_status.eq(change.from),
                    presence_events::to_status.eq(change.to),
                    presence_events::reason.eq(change.reason),
                    presence_events::at.eq(change.at),
                )
            })
            .collect();
        inserted += diesel::insert_into(presence_events::table)
            .values(rows)
            .on_conflict_do_nothing()
            .execute(conn)?;
    }
    Ok(inserted)
}

/// A user's transitions, newest first; `None` if there is no such user.
pub fn presence_history(
    conn: &mut PgConnection,
    user_id: i64,
    limit: i64,
) -> QueryResult<Option<Vec<PresenceChanged>>> {
    let exists: bool =
        diesel::select(diesel::dsl::exists(users::table.find(user_id))).get_result(conn)?;
    if !exists {
        return Ok(None);
    }
    presence_events::table
        .filter(presence_events::user_id.eq(user_id))
        .order((presence_events::at.desc(), presence_events::id.desc()))
        .limit(limit)
        .select((
            presence_events::user_id,
            presence_events::from_status,
            presence_events::to_status,
            presence_events::at,
            presence_events::reason,
        ))
        .load(conn)
        .map(Some)
}
