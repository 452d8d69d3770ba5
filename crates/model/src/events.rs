//! The presence history: every transition, appended by the worker.

use diesel::pg::PgConnection;
use diesel::prelude::*;

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Text, Timestamptz};

use crate::OnlineStatus;
use crate::jobs::{ChangeReason, PresenceChanged};
use crate::schema::{presence_events, users};

/// Appends `changes`; returns how many were new. A redelivered job inserts nothing twice.
///
/// One statement whatever the batch size: the columns travel as five arrays and
/// `unnest` turns them back into rows, which is much cheaper than thousands of bind
/// parameters for a sweep's batch.
pub fn record_presence_changes(
    conn: &mut PgConnection,
    changes: &[PresenceChanged],
) -> QueryResult<usize> {
    let user_ids: Vec<i64> = changes.iter().map(|c| c.user_id).collect();
    let froms: Vec<OnlineStatus> = changes.iter().map(|c| c.from).collect();
    let tos: Vec<OnlineStatus> = changes.iter().map(|c| c.to).collect();
    let reasons: Vec<ChangeReason> = changes.iter().map(|c| c.reason).collect();
    let ats: Vec<DateTime<Utc>> = changes.iter().map(|c| c.at).collect();
    diesel::sql_query(
        "INSERT INTO presence_events (user_id, from_status, to_status, reason, at) \
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind::<Array<BigInt>, _>(user_ids)
    .bind::<Array<Text>, _>(froms)
    .bind::<Array<Text>, _>(tos)
    .bind::<Array<Text>, _>(reasons)
    .bind::<Array<Timestamptz>, _>(ats)
    .execute(conn)
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
