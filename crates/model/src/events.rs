//! The presence history and its outbox: every transition is a `presence_events` row,
//! inserted in the transaction that makes it, and published from there.
//!
//! Publishing is driven by the rows, never by the request that made the change: the
//! worker publishes whatever is unpublished, in id order, when a job nudges it and on a
//! timer. So a Redis outage, a lost job or a killed process delays a published
//! transition; none can lose it.

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use serde::{Deserialize, Serialize};

use crate::schema::{presence_events, users};
use crate::{Error, OnlineStatus};

crate::text_enum::text_enum! {
    /// What caused a transition.
    pub enum ChangeReason {
        Login = "login",
        Logout = "logout",
        Heartbeat = "heartbeat",
        Activity = "activity",
        Sweep = "sweep",
    }
}

/// One user's online status changed: a `presence_events` row, as published on Redis and
/// returned by the history endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Queryable, Selectable)]
#[diesel(table_name = presence_events, check_for_backend(diesel::pg::Pg))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PresenceChanged {
    /// Increases with every transition; a user's transitions happened in id order.
    pub id: i64,
    pub user_id: i64,
    #[diesel(column_name = from_status)]
    pub from: OnlineStatus,
    #[diesel(column_name = to_status)]
    pub to: OnlineStatus,
    pub at: DateTime<Utc>,
    pub reason: ChangeReason,
}

/// Inserts one transition into the outbox; called by the presence writes, in their
/// transaction.
pub(crate) fn record(
    conn: &mut PgConnection,
    user_id: i64,
    from: OnlineStatus,
    to: OnlineStatus,
    reason: ChangeReason,
    at: DateTime<Utc>,
) -> QueryResult<PresenceChanged> {
    diesel::insert_into(presence_events::table)
        .values((
            presence_events::user_id.eq(user_id),
            presence_events::from_status.eq(from),
            presence_events::to_status.eq(to),
            presence_events::reason.eq(reason),
            presence_events::at.eq(at),
        ))
        .returning(PresenceChanged::as_returning())
        .get_result(conn)
}

/// Held by the one publisher at work across all worker replicas, so events leave in id
/// order: two publishers interleaving batches could reorder one user's transitions.
const PUBLISH_LOCK_KEY: i64 = 0x7072_6573_7075_6273; // "prespubs"

/// Publishes the oldest unpublished transitions, at most `batch` of them, in id order,
/// and marks them published; returns how many. A second replica calling this meanwhile
/// waits for the first, then publishes what is left.
///
/// `publish` runs inside the transaction: if it fails (Redis down), nothing is marked and
/// the same rows are published next time. If the process dies after publishing but
/// before the commit, they are published again: delivery is at least once, and each
/// event carries its `id` so subscribers can drop a repeat.
pub fn publish_pending(
    conn: &mut PgConnection,
    batch: i64,
    publish: impl FnOnce(&[PresenceChanged]) -> Result<(), String>,
) -> Result<usize, Error> {
    conn.transaction(|conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<BigInt, _>(PUBLISH_LOCK_KEY)
            .execute(conn)?;
        let events: Vec<PresenceChanged> = presence_events::table
            .filter(presence_events::published_at.is_null())
            .order(presence_events::id)
            .limit(batch)
            .select(PresenceChanged::as_select())
            .load(conn)?;
        if events.is_empty() {
            return Ok(0);
        }
        publish(&events).map_err(Error::Publish)?;
        let ids: Vec<i64> = events.iter().map(|event| event.id).collect();
        diesel::update(presence_events::table.filter(presence_events::id.eq_any(&ids)))
            .set(presence_events::published_at.eq(diesel::dsl::now))
            .execute(conn)?;
        Ok(events.len())
    })
}

/// The transitions not yet published: how many, and when the oldest was recorded.
pub fn unpublished_backlog(conn: &mut PgConnection) -> QueryResult<(i64, Option<DateTime<Utc>>)> {
    presence_events::table
        .filter(presence_events::published_at.is_null())
        .select((
            diesel::dsl::count_star(),
            diesel::dsl::min(presence_events::recorded_at),
        ))
        .get_result(conn)
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
        .order(presence_events::id.desc())
        .limit(limit)
        .select(PresenceChanged::as_select())
        .load(conn)
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_subscribers_expect() {
        let change = PresenceChanged {
            id: 3,
            user_id: 7,
            from: OnlineStatus::Offline,
            to: OnlineStatus::Online,
            at: DateTime::parse_from_rfc3339("2024-01-15T10:30:45.123456Z")
                .unwrap()
                .into(),
            reason: ChangeReason::Login,
        };
        let json = serde_json::to_value(&change).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": 3, "user_id": 7, "from": "offline", "to": "online",
                "at": "2024-01-15T10:30:45.123456Z", "reason": "login"
            })
        );
        let back: PresenceChanged = serde_json::from_value(json).unwrap();
        assert_eq!(back, change);
    }
}
