//! What a user's status is, who is shown what of it, and the manual status a user sets.
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
use serde::{Deserialize, Serialize};

use crate::OnlineStatus;
use crate::error::ValidationError;
use crate::events::{ChangeReason, PresenceChanged};
use crate::settings::Timings;

crate::text_enum::text_enum! {
    /// A user's presence as shown.
    pub enum Presence {
        Online = "online",
        Away = "away",
        Dnd = "dnd",
        Offline = "offline",
    }
}

impl Presence {
    /// What clients that know only online and offline are shown: online while connected.
    pub fn online_status(self) -> OnlineStatus {
        match self {
            Self::Offline => OnlineStatus::Offline,
            Self::Online | Self::Away | Self::Dnd => OnlineStatus::Online,
        }
    }
}

crate::text_enum::text_enum! {
    /// The manual status a user sets; `auto` leaves presence to their activity.
    pub enum Availability {
        Auto = "auto",
        Away = "away",
        Dnd = "dnd",
        Invisible = "invisible",
    }
}

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
            $crate::status::presence_args!($at),
            ") AS presence, presence_public(",
            $crate::status::presence_args!($at),
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
    public_presence: Presence,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_seen: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    public_last_seen: Option<DateTime<Utc>>,
    #[diesel(sql_type = Text)]
    availability: Availability,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    availability_until: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    status_text: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    status_emoji: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    status_expires_at: Option<DateTime<Utc>>,
}

/// A user's status as everyone but admins and the user is shown it: the stream, the
/// status lookups and the published history. An invisible user is shown exactly as a user
/// who logged out. Every field is always sent (`null` when empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicStatus {
    pub id: i64,
    pub presence: Presence,
    /// `online` while the presence is online, away or dnd: for clients that know only two
    /// states.
    pub online_status: OnlineStatus,
    pub last_seen: Option<DateTime<Utc>>,
    pub status_text: Option<String>,
    pub status_emoji: Option<String>,
    /// When a do-not-disturb ends, if it has an end.
    pub dnd_until: Option<DateTime<Utc>>,
}

/// A user's status as admins are shown it (the admins' list): the truth, in the shape
/// of [`PublicStatus`], with whether the user is invisible to everyone else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminStatus {
    #[serde(flatten)]
    pub status: PublicStatus,
    pub invisible: bool,
}

/// A user's status as they are shown it themselves: the truth, with the manual status
/// and the ends only they see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OwnStatus {
    #[serde(flatten)]
    pub status: PublicStatus,
    pub availability: Availability,
    /// When a manual away or dnd ends.
    pub availability_until: Option<DateTime<Utc>>,
    /// When the custom status ends.
    pub status_expires_at: Option<DateTime<Utc>>,
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

/// The most ids one bulk lookup may ask for.
pub const MAX_BULK_IDS: usize = 500;

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

/// The longest custom status text and emoji, in characters.
pub const STATUS_TEXT_MAX_CHARS: usize = 100;
pub const STATUS_EMOJI_MAX_CHARS: usize = 32;

/// How far ahead a manual status or a custom status may be set to end: every end is a
/// scheduled job, so ends far in the future would pile up.
pub const MAX_END_AHEAD: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// Characters a status text or emoji may not hold: control characters (NUL, newlines, the
/// terminal's escape), and the bidirectional embeddings, overrides and isolates that make
/// a text render as another (U+202A–U+202E, U+2066–U+2069).
fn is_forbidden_in_status(c: char) -> bool {
    c.is_control()
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// A change of one field: left out (`Keep`) keeps the stored value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Change<T> {
    #[default]
    Keep,
    Set(T),
}

/// What a user asks to change of their manual status; fields left out keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusChange {
    /// The availability, with when it ends (`None`: never; only for away and dnd).
    pub availability: Change<(Availability, Option<DateTime<Utc>>)>,
    pub text: Change<Option<String>>,
    pub emoji: Change<Option<String>>,
    pub text_expires_at: Change<Option<DateTime<Utc>>>,
}

impl StatusChange {
    /// Refuses what cannot be stored, naming the field: an end for `auto` or `invisible`,
    /// an end or expiry not in the future or more than [`MAX_END_AHEAD`] away, text or
    /// emoji too long or holding control characters or bidirectional overrides.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), ValidationError> {
        if let Change::Set((availability, Some(until))) = &self.availability {
            if matches!(availability, Availability::Auto | Availability::Invisible) {
                return Err(ValidationError::new(
                    "until",
                    format!("is only for away and dnd, not {}", availability.as_str()),
                ));
            }
            check_end("until", *until, now)?;
        }
        if let Change::Set(Some(expires)) = &self.text_expires_at {
            check_end("text_expires_at", *expires, now)?;
        }
        for (field, value, max) in [
            ("text", &self.text, STATUS_TEXT_MAX_CHARS),
            ("emoji", &self.emoji, STATUS_EMOJI_MAX_CHARS),
        ] {
            if let Change::Set(Some(value)) = value {
                if value.chars().count() > max {
                    return Err(ValidationError::new(
                        field,
                        format!("must be at most {max} characters long"),
                    ));
                }
                if value.chars().any(is_forbidden_in_status) {
                    return Err(ValidationError::new(
                        field,
                        "must not contain control characters or bidirectional overrides",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// An end must be in the future, and at most [`MAX_END_AHEAD`] away.
fn check_end(
    field: &'static str,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), ValidationError> {
    if end <= now {
        return Err(ValidationError::new(field, "must be in the future"));
    }
    if end > now + MAX_END_AHEAD {
        return Err(ValidationError::new(
            field,
            format!("must be at most {} days ahead", MAX_END_AHEAD.num_days()),
        ));
    }
    Ok(())
}

/// The outcome of a status change: the user's status (their own view) and what was
/// recorded for others, if anything they are shown changed.
#[derive(Debug, Clone)]
pub struct StatusSet {
    pub status: OwnStatus,
    pub change: Option<PresenceChanged>,
    /// When this status next ends by itself (an availability's `until`, a text's expiry):
    /// the time to schedule its expiry for.
    pub next_expiry: Option<DateTime<Utc>>,
}

/// Sets a user's manual status (`None` for an unknown user). The user's row is locked
/// first, as every presence write does; a transition (reason `manual`, or `status_text`
/// when only the custom status changed) is recorded if what others are shown changes.
/// Going invisible is recorded as a logout would be, and coming back as a login, so
/// nobody else can tell it from one.
pub fn set_status(
    conn: &mut PgConnection,
    timings: Timings,
    user_id: i64,
    change: &StatusChange,
) -> Result<Option<StatusSet>, crate::Error> {
    change.validate(crate::presence::activity_time())?;
    Ok(crate::db::transaction(conn, |conn| {
        if crate::presence::lock_user(conn, user_id)?.is_none() {
            return Ok(None);
        }
        let Some(before) = shown_status(conn, timings, user_id)? else {
            return Ok(None);
        };
        let (availability, until) = match &change.availability {
            Change::Set((availability, until)) => (Some(*availability), *until),
            Change::Keep => (None, None),
        };
        let text = match &change.text {
            Change::Set(text) => Some(text.as_deref()),
            Change::Keep => None,
        };
        let emoji = match &change.emoji {
            Change::Set(emoji) => Some(emoji.as_deref()),
            Change::Keep => None,
        };
        let expires = match &change.text_expires_at {
            Change::Set(expires) => Some(*expires),
            Change::Keep => None,
        };
        sql_query(
            "UPDATE users SET \
               availability = coalesce($2, availability), \
               availability_until = CASE WHEN $2 IS NULL THEN availability_until ELSE $3 END, \
               invisible_since = CASE \
                 WHEN $2 IS NULL THEN invisible_since \
                 WHEN $2 <> 'invisible' THEN NULL \
                 ELSE coalesce(invisible_since, clock_timestamp()) END, \
               status_text = CASE WHEN $4 THEN $5 ELSE status_text END, \
               status_emoji = CASE WHEN $6 THEN $7 ELSE status_emoji END, \
               status_expires_at = CASE WHEN $8 THEN $9 ELSE status_expires_at END, \
               changed_at = now() \
             WHERE id = $1",
        )
        .bind::<BigInt, _>(user_id)
        .bind::<Nullable<Text>, _>(availability)
        .bind::<Nullable<Timestamptz>, _>(until)
        .bind::<diesel::sql_types::Bool, _>(text.is_some())
        .bind::<Nullable<Text>, _>(text.flatten())
        .bind::<diesel::sql_types::Bool, _>(emoji.is_some())
        .bind::<Nullable<Text>, _>(emoji.flatten())
        .bind::<diesel::sql_types::Bool, _>(expires.is_some())
        .bind::<Nullable<Timestamptz>, _>(expires.flatten())
        .execute(conn)?;
        let Some(after) = shown_status(conn, timings, user_id)? else {
            return Ok(None);
        };
        let reason = match (before.public_presence, after.public_presence) {
            (_, Presence::Offline) if after.availability == Availability::Invisible => {
                ChangeReason::Logout
            }
            (Presence::Offline, _) if before.availability == Availability::Invisible => {
                ChangeReason::Login
            }
            (from, to) if from != to => ChangeReason::Manual,
            _ => ChangeReason::StatusText,
        };
        let change = crate::events::record_changes(
            conn,
            timings,
            &[user_id],
            None,
            crate::events::Causes {
                presence: Some(reason),
                custom: ChangeReason::StatusText,
            },
        )?
        .pop();
        let next_expiry = [after.availability_until, after.status_expires_at]
            .into_iter()
            .flatten()
            .min();
        Ok(Some(StatusSet {
            status: after.shown_to_self(),
            change,
            next_expiry,
        }))
    })?)
}

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
pub fn expire_statuses(
    conn: &mut PgConnection,
    timings: Timings,
) -> QueryResult<Vec<PresenceChanged>> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    crate::db::transaction(conn, |conn| {
        let ended: Vec<Id> = sql_query(
            "UPDATE users SET \
               availability = CASE WHEN availability_until <= now() THEN 'auto' \
                                   ELSE availability END, \
               availability_until = CASE WHEN availability_until <= now() THEN NULL \
                                         ELSE availability_until END, \
               status_text = CASE WHEN status_expires_at <= now() THEN NULL \
                                  ELSE status_text END, \
               status_emoji = CASE WHEN status_expires_at <= now() THEN NULL \
                                   ELSE status_emoji END, \
               status_expires_at = CASE WHEN status_expires_at <= now() THEN NULL \
                                        ELSE status_expires_at END, \
               changed_at = now() \
             WHERE id IN (SELECT id FROM users \
                          WHERE availability_until <= now() OR status_expires_at <= now() \
                          ORDER BY id FOR UPDATE) \
             RETURNING id",
        )
        .load(conn)?;
        if ended.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = ended.iter().map(|row| row.id).collect();
        // Time caused these: a user who also went silent is recorded `sweep`.
        let causes = crate::events::Causes {
            presence: None,
            custom: ChangeReason::Expiry,
        };
        crate::events::record_changes(conn, timings, &ids, None, causes)
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

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

    #[test]
    fn status_changes_are_validated_by_field() {
        let now = Utc::now();
        let field = |change: StatusChange| change.validate(now).map_err(|e| e.field);
        assert_eq!(
            field(StatusChange {
                availability: Change::Set((Availability::Auto, Some(now + TimeDelta::hours(1)))),
                ..Default::default()
            }),
            Err("until")
        );
        assert_eq!(
            field(StatusChange {
                availability: Change::Set((Availability::Dnd, Some(now - TimeDelta::seconds(1)))),
                ..Default::default()
            }),
            Err("until")
        );
        assert_eq!(
            field(StatusChange {
                text: Change::Set(Some("x".repeat(101))),
                ..Default::default()
            }),
            Err("text")
        );
        assert_eq!(
            field(StatusChange {
                emoji: Change::Set(Some("x".repeat(33))),
                ..Default::default()
            }),
            Err("emoji")
        );
        assert_eq!(
            field(StatusChange {
                text: Change::Set(Some("a\0b".into())),
                ..Default::default()
            }),
            Err("text")
        );
        assert_eq!(
            field(StatusChange {
                availability: Change::Set((Availability::Dnd, Some(now + TimeDelta::hours(1)))),
                text: Change::Set(Some("x".repeat(100))),
                ..Default::default()
            }),
            Ok(())
        );
    }
}
