//! The manual status a user sets (availability, custom text and emoji) and their ends:
//! validated, written under the user's lock, and ended on time.

use chrono::{DateTime, Utc};

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{Interval, Nullable, Text, Timestamptz};

use crate::error::ValidationError;
use crate::events::Transition;
use crate::ids::UserId;
use crate::schema::users;
use crate::settings::Timings;
use crate::shown::shown_status;
use crate::sql::{clock_timestamp, coalesce};
use crate::views::OwnStatus;
use crate::vocabulary::{Availability, ChangeReason, Presence};

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
pub enum Update<T> {
    #[default]
    Keep,
    Set(T),
}

impl<T> Update<T> {
    /// The value to write, if any.
    pub fn as_set(&self) -> Option<&T> {
        match self {
            Self::Keep => None,
            Self::Set(value) => Some(value),
        }
    }
}

/// The columns of `users` a manual status write sets; `None` keeps a column.
#[derive(AsChangeset)]
#[diesel(table_name = users)]
struct ManualColumns<'a> {
    availability: Option<Availability>,
    availability_until: Option<Option<DateTime<Utc>>>,
    status_text: Option<Option<&'a str>>,
    status_emoji: Option<Option<&'a str>>,
    status_expires_at: Option<Option<DateTime<Utc>>>,
}

/// What a user asks to change of their manual status; fields left out keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The availability, with when it ends (`None`: never; only for away and dnd).
    pub availability: Update<(Availability, Option<DateTime<Utc>>)>,
    pub text: Update<Option<String>>,
    pub emoji: Update<Option<String>>,
    pub text_expires_at: Update<Option<DateTime<Utc>>>,
}

impl StatusUpdate {
    /// Refuses what cannot be stored, naming the field: an end for `auto` or `invisible`,
    /// an end or expiry not in the future or more than [`MAX_END_AHEAD`] away, text or
    /// emoji too long or holding control characters or bidirectional overrides.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), ValidationError> {
        if let Update::Set((availability, Some(until))) = &self.availability {
            if matches!(availability, Availability::Auto | Availability::Invisible) {
                return Err(ValidationError::new(
                    "until",
                    format!("is only for away and dnd, not {}", availability.as_str()),
                ));
            }
            check_end("until", *until, now)?;
        }
        if let Update::Set(Some(expires)) = &self.text_expires_at {
            check_end("text_expires_at", *expires, now)?;
        }
        for (field, value, max) in [
            ("text", &self.text, STATUS_TEXT_MAX_CHARS),
            ("emoji", &self.emoji, STATUS_EMOJI_MAX_CHARS),
        ] {
            if let Update::Set(Some(value)) = value {
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
pub struct StatusWritten {
    pub status: OwnStatus,
    pub transition: Option<Transition>,
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
    user_id: UserId,
    change: &StatusUpdate,
) -> Result<Option<StatusWritten>, crate::Error> {
    change.validate(crate::presence::activity_time())?;
    Ok(crate::db::transaction(conn, |conn| {
        if crate::presence::lock_user(conn, user_id)?.is_none() {
            return Ok(None);
        }
        let Some(before) = shown_status(conn, timings, user_id)? else {
            return Ok(None);
        };
        let availability = match &change.availability {
            Update::Set((availability, _)) => Some(*availability),
            Update::Keep => None,
        };
        let write = ManualColumns {
            availability,
            availability_until: match &change.availability {
                Update::Set((_, until)) => Some(*until),
                Update::Keep => None,
            },
            status_text: change.text.as_set().map(Option::as_deref),
            status_emoji: change.emoji.as_set().map(Option::as_deref),
            status_expires_at: change.text_expires_at.as_set().copied(),
        };
        // Going invisible freezes what others see of `last_seen` then (kept if already
        // invisible); any other availability thaws it.
        let freeze = (availability == Some(Availability::Invisible)).then(|| {
            users::invisible_since
                .eq(coalesce(users::invisible_since, clock_timestamp()).nullable())
        });
        let thaw = availability
            .filter(|availability| *availability != Availability::Invisible)
            .map(|_| users::invisible_since.eq(None::<DateTime<Utc>>));
        diesel::update(users::table.find(user_id))
            .set((write, freeze, thaw, users::changed_at.eq(diesel::dsl::now)))
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
        Ok(Some(StatusWritten {
            status: after.shown_to_self(),
            transition: change,
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

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn status_changes_are_validated_by_field() {
        let now = Utc::now();
        let field = |change: StatusUpdate| change.validate(now).map_err(|e| e.field);
        assert_eq!(
            field(StatusUpdate {
                availability: Update::Set((Availability::Auto, Some(now + TimeDelta::hours(1)))),
                ..Default::default()
            }),
            Err("until")
        );
        assert_eq!(
            field(StatusUpdate {
                availability: Update::Set((Availability::Dnd, Some(now - TimeDelta::seconds(1)))),
                ..Default::default()
            }),
            Err("until")
        );
        assert_eq!(
            field(StatusUpdate {
                text: Update::Set(Some("x".repeat(101))),
                ..Default::default()
            }),
            Err("text")
        );
        assert_eq!(
            field(StatusUpdate {
                emoji: Update::Set(Some("x".repeat(33))),
                ..Default::default()
            }),
            Err("emoji")
        );
        assert_eq!(
            field(StatusUpdate {
                text: Update::Set(Some("a\0b".into())),
                ..Default::default()
            }),
            Err("text")
        );
        assert_eq!(
            field(StatusUpdate {
                availability: Update::Set((Availability::Dnd, Some(now + TimeDelta::hours(1)))),
                text: Update::Set(Some("x".repeat(100))),
                ..Default::default()
            }),
            Ok(())
        );
    }
}
