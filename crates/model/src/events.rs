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
use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::facts::UserFacts;
use crate::ids::{EventId, Revision, UserId};
use crate::schema::{event_publication, presence_events, users};
use crate::settings::Timings;
use crate::shown::{ShownRow, facts_at};
use crate::views::{PublicStatus, StatusDetails};
use crate::vocabulary::{ChangeReason, Presence};

/// What everyone but the user and admins is shown of one user changed: a
/// `presence_events` row, as published on Redis and returned by the history endpoint. It
/// carries the status shown after the change, so a subscriber needs no lookup.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Queryable, QueryableByName, Selectable,
)]
#[diesel(table_name = presence_events, check_for_backend(diesel::pg::Pg))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transition {
    /// Increases with every transition; a user's transitions happened in id order.
    pub id: EventId,
    pub user_id: UserId,
    #[diesel(column_name = from_status)]
    pub from: Presence,
    #[diesel(column_name = to_status)]
    pub to: Presence,
    pub at: DateTime<Utc>,
    pub reason: ChangeReason,
    pub last_seen: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub details: StatusDetails,
    /// Its place in the order transitions are published in (what a stream's `Last-Event-ID`
    /// counts); `None` until it is being published.
    #[serde(default)]
    pub revision: Option<Revision>,
}

impl Transition {
    /// The user's status object after this change, as everyone but admins and the user
    /// is shown it.
    pub fn status(&self) -> PublicStatus {
        PublicStatus {
            id: self.user_id,
            presence: self.to,
            online_status: self.to.online_status(),
            last_seen: self.last_seen,
            details: self.details.clone(),
        }
    }
}

/// What caused the changes a write may record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Causes {
    /// The reason of a change of presence; `None` when time caused it (the sweep, an
    /// end): `sweep` to offline, `idle` from online to away, `expiry` otherwise.
    pub presence: Option<ChangeReason>,
    /// The reason when only the custom status or the dnd end changed.
    pub custom: ChangeReason,
}

impl Causes {
    /// A write whose every change has one reason.
    pub(crate) fn only(reason: ChangeReason) -> Self {
        Self {
            presence: Some(reason),
            custom: reason,
        }
    }
}

/// What others were last told of a user (the `published_*` columns), in the terms of
/// what they are shown now: the two are compared. Not `last_seen`, which moves with
/// every request; others are told it with each change.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
struct Told {
    #[diesel(column_name = published_presence)]
    presence: Presence,
    #[diesel(column_name = published_details)]
    details: StatusDetails,
}

impl Told {
    /// Whether others were told `status` already.
    fn matches(&self, status: &PublicStatus) -> bool {
        self.presence == status.presence && self.details == status.details
    }
}

/// Records, for each of `user_ids`, a transition if what others are shown of them (as of
/// `at`, or now) differs from what they were last told, and remembers it as told. Called
/// in the transaction of every presence write, after the write; locks the rows in id
/// order. What others are shown is [`ShownRow::shown_to_others`], so an
/// invisible user's transitions are exactly a logged-out user's.
pub(crate) fn record_changes(
    conn: &mut PgConnection,
    timings: Timings,
    user_ids: &[UserId],
    at: Option<DateTime<Utc>>,
    causes: Causes,
) -> QueryResult<Vec<Transition>> {
    let (facts, read_at) = facts_at(at);
    let rows: Vec<(UserFacts, DateTime<Utc>, Told)> = users::table
        .filter(users::id.eq_any(user_ids))
        .order(users::id)
        .for_update()
        .select((facts, read_at, Told::as_select()))
        .load(conn)?;
    let mut changed = TransitionRows::default();
    for (facts, at, told) in rows {
        let now = ShownRow::from_facts(&facts, timings, at).shown_to_others();
        if told.matches(&now) {
            continue;
        }
        let reason = if now.presence == told.presence {
            causes.custom
        } else {
            causes.presence.unwrap_or(match now.presence {
                // Silence, whatever else ended meanwhile.
                Presence::Offline => ChangeReason::Sweep,
                Presence::Away if told.presence == Presence::Online => ChangeReason::Idle,
                Presence::Online | Presence::Away | Presence::Dnd => ChangeReason::Expiry,
            })
        };
        changed.push(told.presence, reason, now);
    }
    if changed.user_ids.is_empty() {
        return Ok(Vec::new());
    }
    // One round trip for every change: rows from `unnest`, updating `users` and inserting
    // the events in one statement, which the DSL cannot say.
    diesel::sql_query(
        "WITH changed AS ( \
           SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], \
                                $5::timestamptz[], $6::jsonb[]) \
             AS c(user_id, from_status, to_status, reason, last_seen, details)), \
         told AS ( \
           UPDATE users u \
           SET published_presence = c.to_status, published_details = c.details \
           FROM changed c WHERE u.id = c.user_id) \
         INSERT INTO presence_events (user_id, from_status, to_status, reason, at, last_seen, \
                                      details) \
         SELECT user_id, from_status, to_status, reason, clock_timestamp(), last_seen, \
                details FROM changed ORDER BY user_id \
         RETURNING *",
    )
    .bind::<Array<BigInt>, _>(&changed.user_ids)
    .bind::<Array<Text>, _>(&changed.from)
    .bind::<Array<Text>, _>(&changed.to)
    .bind::<Array<Text>, _>(&changed.reasons)
    .bind::<Array<Nullable<Timestamptz>>, _>(&changed.last_seen)
    .bind::<Array<Nullable<Jsonb>>, _>(&changed.details)
    .load(conn)
}

/// What telling others that a user is offline writes (`users.published_*`): the presence,
/// and no details (see [`ShownRow::shown_to_others`]). For the sweep's statement, which
/// tells many at once in SQL; kept beside [`Told`].
pub(crate) const TOLD_OFFLINE: &str = "published_presence = 'offline', published_details = NULL";

/// The transitions to record, column by column (bound as arrays).
#[derive(Default)]
struct TransitionRows {
    user_ids: Vec<UserId>,
    from: Vec<Presence>,
    to: Vec<Presence>,
    reasons: Vec<ChangeReason>,
    last_seen: Vec<Option<DateTime<Utc>>>,
    details: Vec<StatusDetails>,
}

impl TransitionRows {
    fn push(&mut self, from: Presence, reason: ChangeReason, now: PublicStatus) {
        self.user_ids.push(now.id);
        self.from.push(from);
        self.to.push(now.presence);
        self.reasons.push(reason);
        self.last_seen.push(now.last_seen);
        self.details.push(now.details);
    }
}

/// Held by the one publisher at work across all worker replicas, so events leave in id
/// order: two publishers interleaving batches could reorder one user's transitions.
const PUBLISH_LOCK_KEY: i64 = 0x7072_6573_7075_6273; // "prespubs"

/// Publishes the oldest unpublished transitions, at most `batch` of them; returns how
/// many. A second replica calling this meanwhile waits for the first, then publishes what
/// is left.
///
/// Two transactions, each under the publisher's lock. The first gives the oldest rows
/// without one their revisions, in id order, and commits: a stream that sees a revision
/// on Redis can always read it (and everything before it) from PostgreSQL, which is what
/// makes resuming and snapshots gapless. The second sends the rows numbered past the
/// publisher's cursor (`event_publication.sent_through`), in revision order, and moves
/// the cursor past them. If `publish` fails (Redis down), or the process dies between the
/// two commits, the same rows are sent again, with the same revisions, so a subscriber
/// drops the repeat by revision: delivery is at least once.
///
/// Each row is written once (its revision) and the cursor once per batch; the rows to
/// send are found from the cursor on the revision index, so a batch costs the same after
/// a million events as after one.
pub fn publish_pending(
    conn: &mut PgConnection,
    batch: i64,
    publish: impl FnOnce(&[Transition]) -> Result<(), String>,
) -> Result<usize, Error> {
    conn.transaction(|conn| {
        lock_publisher(conn)?;
        // UPDATE … FROM the oldest rows numbered by `nextval` in id order, which the DSL
        // cannot say. The id range lets the planner find the rows by index in every
        // partition rather than hash the whole backlog once per batch.
        diesel::sql_query(
            "WITH oldest AS MATERIALIZED ( \
               SELECT id FROM presence_events WHERE revision IS NULL ORDER BY id LIMIT $1), \
             numbered AS MATERIALIZED ( \
               SELECT id, nextval('presence_revision') AS revision FROM oldest) \
             UPDATE presence_events e \
             SET revision = numbered.revision, revision_at = now() \
             FROM numbered \
             WHERE e.id = numbered.id AND e.revision IS NULL \
               AND e.id BETWEEN (SELECT min(id) FROM oldest) AND (SELECT max(id) FROM oldest)",
        )
        .bind::<BigInt, _>(batch)
        .execute(conn)
    })?;
    conn.transaction(|conn| {
        lock_publisher(conn)?;
        let sent_through: Revision = event_publication::table
            .select(event_publication::sent_through)
            .get_result(conn)?;
        let events: Vec<Transition> = presence_events::table
            .filter(presence_events::revision.gt(sent_through))
            .order(presence_events::revision)
            .limit(batch)
            .select(Transition::as_select())
            .load(conn)?;
        let Some(last) = events.last().and_then(|event| event.revision) else {
            return Ok(0);
        };
        publish(&events).map_err(Error::Publish)?;
        diesel::update(event_publication::table)
            .set(event_publication::sent_through.eq(last))
            .execute(conn)?;
        Ok(events.len())
    })
}

fn lock_publisher(conn: &mut PgConnection) -> QueryResult<()> {
    diesel::select(crate::sql::pg_advisory_xact_lock(PUBLISH_LOCK_KEY))
        .execute(conn)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_subscribers_expect() {
        let change = Transition {
            id: EventId(3),
            user_id: UserId(7),
            from: Presence::Offline,
            to: Presence::Online,
            at: DateTime::parse_from_rfc3339("2024-01-15T10:30:45.123456Z")
                .unwrap()
                .into(),
            reason: ChangeReason::Login,
            last_seen: None,
            details: StatusDetails {
                status_text: Some("lunch".into()),
                ..StatusDetails::default()
            },
            revision: Some(Revision(5)),
        };
        let json = serde_json::to_value(&change).unwrap();
        let mut expected = serde_json::json!({
            "id": 3, "user_id": 7, "from": "offline", "to": "online",
            "at": "2024-01-15T10:30:45.123456Z", "reason": "login",
            "last_seen": null, "revision": 5
        });
        // Beside them, every field of the details as the public status sends them (whose
        // names `shown.rs` pins).
        let details = serde_json::to_value(&change.details).unwrap();
        let fields = expected.as_object_mut().unwrap();
        fields.extend(details.as_object().unwrap().clone());
        assert_eq!(json, expected);
        assert_eq!(json["status_text"], "lunch");
        let back: Transition = serde_json::from_value(json).unwrap();
        assert_eq!(back, change);
    }
}
