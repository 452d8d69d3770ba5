//! What a user is shown: the read views, one rule for every reader.
//!
//! Shown presence is one of `online`, `away`, `dnd`, `offline`, decided by one rule in SQL
//! (`presence_of`, migration `000009`): offline unless connected; then a manual away or
//! dnd that has not ended; then online while the user was active within the away
//! timeout, away after. Everyone but the user and admins is shown `presence_public`
//! instead, in which an invisible user is exactly a user who logged out when they went
//! invisible: offline, `last_seen` frozen then, no custom status (others see a custom
//! status only while its user is connected). Both views are read in one query
//! ([`shown_columns!`]); [`ShownRow`] gives each viewer theirs.

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::sql_types::{Array, BigInt, Interval, Nullable, Text, Timestamptz};
use diesel::{OptionalExtension, QueryResult, QueryableByName, RunQueryDsl, sql_query};
use serde::Serialize;

use crate::error::ValidationError;
use crate::settings::Timings;
use crate::views::{AdminStatus, OwnStatus, PublicStatus};
use crate::vocabulary::{Availability, Presence};

/// The arguments of `presence_of` and `presence_public` for the `users` row in scope,
/// `$1` being the window and `$2` the away timeout, as of `$at`.
macro_rules! presence_args {
    ($at:literal) => {
        concat!(
            "online_status, last_seen, active_at, availability, availability_until, $1, $2, ",
            $at
        )
    };
}

/// The columns of a [`ShownRow`] for the `users` row in scope: both views, as of `$at`
/// (`now()` for every read; the sweep's own time for the sweep).
macro_rules! shown_columns {
    ($at:literal) => {
        concat!(
            "id, presence_of(",
            $crate::shown::presence_args!($at),
            ") AS presence, presence_public(",
            $crate::shown::presence_args!($at),
            ") AS public_presence, last_seen, \
             CASE WHEN availability = 'invisible' THEN invisible_since ELSE last_seen END \
               AS public_last_seen, \
             CASE WHEN availability_until <= ",
            $at,
            " THEN 'auto' ELSE availability END \
               AS availability, \
             CASE WHEN availability_until <= ",
            $at,
            " THEN NULL ELSE availability_until END \
               AS availability_until, \
             CASE WHEN status_expires_at <= ",
            $at,
            " THEN NULL ELSE status_text END \
               AS status_text, \
             CASE WHEN status_expires_at <= ",
            $at,
            " THEN NULL ELSE status_emoji END \
               AS status_emoji, \
             CASE WHEN status_expires_at <= ",
            $at,
            " THEN NULL ELSE status_expires_at END \
               AS status_expires_at"
        )
    };
}
pub(crate) use {presence_args, shown_columns};

/// One user's status in both views, as [`shown_columns!`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct ShownRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    presence: Presence,
    #[diesel(sql_type = Text)]
    pub(crate) public_presence: Presence,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_seen: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    public_last_seen: Option<DateTime<Utc>>,
    #[diesel(sql_type = Text)]
    pub(crate) availability: Availability,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub(crate) availability_until: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    status_text: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    status_emoji: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub(crate) status_expires_at: Option<DateTime<Utc>>,
}

impl ShownRow {
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
            status_text: self.status_text.clone().filter(|_| custom),
            status_emoji: self.status_emoji.clone().filter(|_| custom),
            dnd_until: self
                .availability_until
                .filter(|_| presence == Presence::Dnd),
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
    user_id: i64,
) -> QueryResult<Option<ShownRow>> {
    sql_query(concat!(
        "SELECT ",
        shown_columns!("now()"),
        " FROM users WHERE id = $3"
    ))
    .bind::<Interval, _>(timings.window())
    .bind::<Interval, _>(timings.away_after())
    .bind::<BigInt, _>(user_id)
    .get_result(conn)
    .optional()
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
    ids: &[i64],
) -> QueryResult<Vec<ShownRow>> {
    sql_query(concat!(
        "SELECT shown.* FROM unnest($3::bigint[]) WITH ORDINALITY AS asked(id, n) \
         JOIN LATERAL (SELECT ",
        shown_columns!("now()"),
        " FROM users WHERE users.id = asked.id) AS shown ON true ORDER BY asked.n"
    ))
    .bind::<Interval, _>(timings.window())
    .bind::<Interval, _>(timings.away_after())
    .bind::<Array<BigInt>, _>(ids)
    .load(conn)
}

/// Every user's status, in id order: the snapshot of an admin's stream of everyone.
pub fn all_shown_statuses(conn: &mut PgConnection, timings: Timings) -> QueryResult<Vec<ShownRow>> {
    sql_query(concat!(
        "SELECT ",
        shown_columns!("now()"),
        " FROM users ORDER BY id"
    ))
    .bind::<Interval, _>(timings.window())
    .bind::<Interval, _>(timings.away_after())
    .load(conn)
}

/// How many users are shown each presence but offline, as everyone but admins sees it
/// (an invisible user is not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, QueryableByName)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PresenceCounts {
    /// online + away + dnd: everyone connected (what older clients read as "online").
    #[diesel(sql_type = BigInt)]
    pub count: i64,
    #[diesel(sql_type = BigInt)]
    pub online: i64,
    #[diesel(sql_type = BigInt)]
    pub away: i64,
    #[diesel(sql_type = BigInt)]
    pub dnd: i64,
}

/// The counts by presence. Only connected users are read (the partial index of online
/// users by `last_seen`), so it costs in proportion to them.
pub fn presence_counts(conn: &mut PgConnection, timings: Timings) -> QueryResult<PresenceCounts> {
    sql_query(concat!(
        "SELECT count(*) AS count, \
           count(*) FILTER (WHERE p = 'online') AS online, \
           count(*) FILTER (WHERE p = 'away') AS away, \
           count(*) FILTER (WHERE p = 'dnd') AS dnd \
         FROM (SELECT presence_public(",
        presence_args!("now()"),
        ") AS p FROM users \
           WHERE presence_shown_online(online_status, last_seen, $1)) AS connected \
         WHERE p <> 'offline'"
    ))
    .bind::<Interval, _>(timings.window())
    .bind::<Interval, _>(timings.away_after())
    .get_result(conn)
}

/// How many users have each presence, as admins see it (an invisible user by their true
/// presence): the operator page's counts. Only connected users are classified; the rest
/// are offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, QueryableByName)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PresenceTotals {
    #[diesel(sql_type = BigInt)]
    pub online: i64,
    #[diesel(sql_type = BigInt)]
    pub away: i64,
    #[diesel(sql_type = BigInt)]
    pub dnd: i64,
    #[diesel(sql_type = BigInt)]
    pub offline: i64,
}

pub fn presence_totals(conn: &mut PgConnection, timings: Timings) -> QueryResult<PresenceTotals> {
    sql_query(concat!(
        "SELECT count(*) FILTER (WHERE p = 'online') AS online, \
           count(*) FILTER (WHERE p = 'away') AS away, \
           count(*) FILTER (WHERE p = 'dnd') AS dnd, \
           (SELECT count(*) FROM users) - count(*) FILTER (WHERE p <> 'offline') AS offline \
         FROM (SELECT presence_of(",
        presence_args!("now()"),
        ") AS p FROM users \
           WHERE presence_shown_online(online_status, last_seen, $1)) AS connected"
    ))
    .bind::<Interval, _>(timings.window())
    .bind::<Interval, _>(timings.away_after())
    .get_result(conn)
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
            id: 7,
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
        assert_eq!((public.status_text, public.status_emoji), (None, None));
        let admin = invisible.shown_to_admins();
        assert_eq!(
            (admin.status.presence, admin.invisible),
            (Presence::Online, true)
        );
        assert_eq!(admin.status.status_text.as_deref(), Some("lunch"));
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
