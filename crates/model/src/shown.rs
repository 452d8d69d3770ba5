//! What a user is shown: the read views, one rule for every reader.
//!
//! Shown presence is one of `online`, `away`, `dnd`, `offline`, decided by one rule
//! ([`UserFacts::presence_at`], also the SQL function `presence_of` of migration `000009`
//! that filters and counts): offline unless connected; then a manual away or dnd that has
//! not ended; then online while the user was active within the away timeout, away after.
//! Everyone but the user and admins is shown the public presence instead, in which an
//! invisible user is exactly a user who logged out when they went invisible: offline,
//! `last_seen` frozen then, no custom status (others see a custom status only while its
//! user is connected). Reads load a user's facts with the time of the read
//! ([`facts_at`]); [`ShownRow`] gives each viewer theirs.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::dsl::{AsExprOf, auto_type};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Interval, Nullable, Timestamptz};

use crate::error::ValidationError;
use crate::facts::{FactColumns, UserFacts, fact_columns, has_ended};
use crate::ids::UserId;
use crate::schema::users;
use crate::settings::Timings;
use crate::sql::{coalesce, presence_of, presence_public, presence_shown_online};
use crate::views::{AdminStatus, OwnStatus, PublicStatus, StatusDetails};
use crate::vocabulary::{Availability, Presence};
use diesel::dsl::now;

/// `at`, or the start of the transaction.
#[auto_type]
fn at_or_now(at: Option<DateTime<Utc>>) -> _ {
    let at: AsExprOf<Option<DateTime<Utc>>, Nullable<Timestamptz>> =
        at.into_sql::<Nullable<Timestamptz>>();
    coalesce(at, now)
}

/// Whether the `users` row in scope is connected now: within the window (the partial
/// index of connected users answers it).
#[auto_type]
pub(crate) fn connected_now(window: TimeDelta) -> _ {
    let window: AsExprOf<TimeDelta, Interval> = window.into_sql::<Interval>();
    presence_shown_online(users::online_status, users::last_seen, window)
}

/// The presence of the `users` row in scope as it and admins are shown it, as of `at`
/// (now if `None`).
#[auto_type]
pub(crate) fn true_presence(
    window: TimeDelta,
    away_after: TimeDelta,
    at: Option<DateTime<Utc>>,
) -> _ {
    let window: AsExprOf<TimeDelta, Interval> = window.into_sql::<Interval>();
    let away_after: AsExprOf<TimeDelta, Interval> = away_after.into_sql::<Interval>();
    let at: at_or_now = at_or_now(at);
    presence_of(
        users::online_status,
        users::last_seen,
        users::active_at,
        users::availability,
        users::availability_until,
        window,
        away_after,
        at,
    )
}

/// The presence of the `users` row in scope as everyone else is shown it, as of `at`
/// (now if `None`).
#[auto_type]
pub(crate) fn public_presence(
    window: TimeDelta,
    away_after: TimeDelta,
    at: Option<DateTime<Utc>>,
) -> _ {
    let window: AsExprOf<TimeDelta, Interval> = window.into_sql::<Interval>();
    let away_after: AsExprOf<TimeDelta, Interval> = away_after.into_sql::<Interval>();
    let at: at_or_now = at_or_now(at);
    presence_public(
        users::online_status,
        users::last_seen,
        users::active_at,
        users::availability,
        users::availability_until,
        window,
        away_after,
        at,
    )
}

/// A user's facts with the time they are read at: `at`, or the start of the
/// transaction (the sweep reads as of its own time).
pub(crate) fn facts_at(at: Option<DateTime<Utc>>) -> (FactColumns, at_or_now) {
    (fact_columns(), at_or_now(at))
}

/// One user's status in both views, as of a time: a manual status or a custom status
/// that has reached its end is shown ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownRow {
    pub id: UserId,
    presence: Presence,
    pub(crate) public_presence: Presence,
    last_seen: Option<DateTime<Utc>>,
    public_last_seen: Option<DateTime<Utc>>,
    pub(crate) availability: Availability,
    pub(crate) availability_until: Option<DateTime<Utc>>,
    status_text: Option<String>,
    status_emoji: Option<String>,
    pub(crate) status_expires_at: Option<DateTime<Utc>>,
}

impl ShownRow {
    /// What `facts` show at `at`, under `timings`.
    pub fn from_facts(facts: &UserFacts, timings: Timings, at: DateTime<Utc>) -> Self {
        let presence = facts.presence_at(timings, at);
        let public_presence = facts.public_presence_at(timings, at);
        let availability_ended = has_ended(facts.availability_until, at);
        let status_ended = has_ended(facts.status_expires_at, at);
        Self {
            id: facts.id,
            presence,
            public_presence,
            last_seen: facts.last_seen,
            // An invisible user's `last_seen` is frozen, for others, when they went
            // invisible.
            public_last_seen: if facts.availability == Availability::Invisible {
                facts.invisible_since
            } else {
                facts.last_seen
            },
            availability: if availability_ended {
                Availability::Auto
            } else {
                facts.availability
            },
            availability_until: facts.availability_until.filter(|_| !availability_ended),
            status_text: facts.status_text.clone().filter(|_| !status_ended),
            status_emoji: facts.status_emoji.clone().filter(|_| !status_ended),
            status_expires_at: facts.status_expires_at.filter(|_| !status_ended),
        }
    }

    /// The true status, or the public one, in the public shape.
    fn status(&self, truth: bool) -> PublicStatus {
        let (presence, last_seen) = if truth {
            (self.presence, self.last_seen)
        } else {
            (self.public_presence, self.public_last_seen)
        };
        // Others see a custom status only while the user is connected, so a user who
        // logged out and an invisible one look the same.
        let custom = truth || presence != Presence::Offline;
        PublicStatus {
            id: self.id,
            presence,
            online_status: presence.online_status(),
            last_seen,
            details: StatusDetails {
                status_text: self.status_text.clone().filter(|_| custom),
                status_emoji: self.status_emoji.clone().filter(|_| custom),
                dnd_until: self
                    .availability_until
                    .filter(|_| presence == Presence::Dnd),
            },
        }
    }

    /// What everyone but admins and the user is shown.
    pub fn shown_to_others(&self) -> PublicStatus {
        self.status(false)
    }

    /// What admins are shown.
    pub fn shown_to_admins(&self) -> AdminStatus {
        AdminStatus {
            status: self.status(true),
            invisible: self.availability == Availability::Invisible,
        }
    }

    /// What the user is shown of themselves.
    pub fn shown_to_self(&self) -> OwnStatus {
        OwnStatus {
            status: self.status(true),
            availability: self.availability,
            availability_until: self.availability_until,
            status_expires_at: self.status_expires_at,
        }
    }
}

/// One user's status in both views; `None` for an unknown id.
pub fn shown_status(
    conn: &mut PgConnection,
    timings: Timings,
    user_id: UserId,
) -> QueryResult<Option<ShownRow>> {
    let read: Option<(UserFacts, DateTime<Utc>)> = users::table
        .find(user_id)
        .select(facts_at(None))
        .get_result(conn)
        .optional()?;
    Ok(read.map(|(facts, at)| ShownRow::from_facts(&facts, timings, at)))
}

/// The facts of `ids`, unknown ids left out, in no order: what a replica caches.
pub fn user_facts(conn: &mut PgConnection, ids: &[UserId]) -> QueryResult<Vec<UserFacts>> {
    users::table
        .filter(users::id.eq_any(ids))
        .select(fact_columns())
        .load(conn)
}

/// The most ids one bulk lookup (or one stream) may ask for.
pub const MAX_BULK_IDS: usize = 500;

/// A bulk lookup, or a stream, asks for 1 to [`MAX_BULK_IDS`] users.
pub fn check_bulk_ids(count: usize) -> Result<(), ValidationError> {
    if (1..=MAX_BULK_IDS).contains(&count) {
        Ok(())
    } else {
        Err(ValidationError::new(
            "ids",
            format!("must hold 1 to {MAX_BULK_IDS} ids, not {count}"),
        ))
    }
}

/// The statuses of `ids`, in the order asked (an id asked twice is answered twice), in one
/// query; unknown ids are left out.
pub fn shown_statuses(
    conn: &mut PgConnection,
    timings: Timings,
    ids: &[UserId],
) -> QueryResult<Vec<ShownRow>> {
    let read: Vec<(UserFacts, DateTime<Utc>)> = users::table
        .filter(users::id.eq_any(ids))
        .select(facts_at(None))
        .load(conn)?;
    let by_id: std::collections::HashMap<UserId, ShownRow> = read
        .into_iter()
        .map(|(facts, at)| (facts.id, ShownRow::from_facts(&facts, timings, at)))
        .collect();
    Ok(ids.iter().filter_map(|id| by_id.get(id).cloned()).collect())
}

/// Every user's status, in id order: the snapshot of an admin's stream of everyone.
pub fn all_shown_statuses(conn: &mut PgConnection, timings: Timings) -> QueryResult<Vec<ShownRow>> {
    let read: Vec<(UserFacts, DateTime<Utc>)> = users::table
        .order(users::id)
        .select(facts_at(None))
        .load(conn)?;
    Ok(read
        .into_iter()
        .map(|(facts, at)| ShownRow::from_facts(&facts, timings, at))
        .collect())
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::vocabulary::OnlineStatus;

    fn row(availability: Availability) -> ShownRow {
        let t = DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z")
            .unwrap()
            .into();
        ShownRow {
            id: UserId(7),
            presence: Presence::Online,
            public_presence: if availability == Availability::Invisible {
                Presence::Offline
            } else {
                Presence::Online
            },
            last_seen: Some(t + TimeDelta::minutes(5)),
            public_last_seen: Some(t),
            availability,
            availability_until: None,
            status_text: Some("lunch".into()),
            status_emoji: Some("🍜".into()),
            status_expires_at: None,
        }
    }

    #[test]
    fn an_invisible_user_is_shown_to_others_as_logged_out() {
        let invisible = row(Availability::Invisible);
        let public = invisible.shown_to_others();
        assert_eq!(public.presence, Presence::Offline);
        assert_eq!(public.online_status, OnlineStatus::Offline);
        assert_eq!(public.last_seen, invisible.public_last_seen);
        assert_eq!(public.details, StatusDetails::default());
        let admin = invisible.shown_to_admins();
        assert_eq!(
            (admin.status.presence, admin.invisible),
            (Presence::Online, true)
        );
        assert_eq!(admin.status.details.status_text.as_deref(), Some("lunch"));
        let own = invisible.shown_to_self();
        assert_eq!(
            (own.status.presence, own.availability),
            (Presence::Online, Availability::Invisible)
        );
    }

    #[test]
    fn every_view_sends_every_field() {
        let visible = row(Availability::Auto);
        let keys = |value: serde_json::Value| -> Vec<String> {
            value.as_object().unwrap().keys().cloned().collect()
        };
        let public = [
            "dnd_until",
            "id",
            "last_seen",
            "online_status",
            "presence",
            "status_emoji",
            "status_text",
        ];
        assert_eq!(
            keys(serde_json::to_value(visible.shown_to_others()).unwrap()),
            public
        );
        let mut admin = public.to_vec();
        admin.push("invisible");
        admin.sort_unstable();
        assert_eq!(
            keys(serde_json::to_value(visible.shown_to_admins()).unwrap()),
            admin
        );
        let mut own = public.to_vec();
        own.extend(["availability", "availability_until", "status_expires_at"]);
        own.sort_unstable();
        assert_eq!(
            keys(serde_json::to_value(visible.shown_to_self()).unwrap()),
            own
        );
    }
}
