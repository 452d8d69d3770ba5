//! The manual status a user sets (availability, custom text and emoji): validated and
//! written under the user's lock. Their ends are `status_ends`.

use chrono::{DateTime, Utc};

use diesel::pg::PgConnection;
use diesel::prelude::*;

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
