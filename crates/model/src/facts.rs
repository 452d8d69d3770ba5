//! What the shown-presence rule reads of a user, and the rule itself in Rust.
//!
//! The rule is also the SQL function `presence_of` (migration `000009`), which filters
//! and counts in PostgreSQL; `tests/rule.rs` proves the two agree over generated facts,
//! edges included. Readers compute what a user is shown from these facts at the time
//! they read, so an API replica can keep the facts in memory and still show each edge
//! (offline at the window, away at the away timeout, a manual status at its end) at the
//! moment it comes.

use chrono::{DateTime, Utc};
use diesel::{Queryable, Selectable, SelectableHelper};

use crate::ids::UserId;
use crate::schema::users;
use crate::settings::Timings;
use crate::vocabulary::{Availability, OnlineStatus, Presence};

/// A user's stored presence facts, before any time or viewer is applied.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct UserFacts {
    pub id: UserId,
    /// The stored connection flag (`online_status`).
    #[diesel(column_name = online_status)]
    pub connected: OnlineStatus,
    pub last_seen: Option<DateTime<Utc>>,
    /// The latest real use of the app on a connected session.
    pub active_at: Option<DateTime<Utc>>,
    pub availability: Availability,
    /// When a manual away or dnd ends.
    pub availability_until: Option<DateTime<Utc>>,
    /// When the user went invisible: what others are shown as `last_seen` meanwhile.
    pub invisible_since: Option<DateTime<Utc>>,
    pub status_text: Option<String>,
    pub status_emoji: Option<String>,
    pub status_expires_at: Option<DateTime<Utc>>,
}

/// The columns [`UserFacts`] is read from.
pub(crate) type FactColumns = diesel::dsl::AsSelect<UserFacts, diesel::pg::Pg>;

pub(crate) fn fact_columns() -> FactColumns {
    UserFacts::as_select()
}

/// Whether an end (of a manual status, of a custom status) has come by `at`.
pub fn has_ended(end: Option<DateTime<Utc>>, at: DateTime<Utc>) -> bool {
    end.is_some_and(|end| end <= at)
}

impl UserFacts {
    /// Connected at `at`: stored connected, and seen within the window.
    pub fn connected_at(&self, timings: Timings, at: DateTime<Utc>) -> bool {
        self.connected == OnlineStatus::Online
            && self
                .last_seen
                .is_some_and(|seen| seen >= at - timings.window())
    }

    /// The presence the user and admins are shown at `at` (`presence_of`): offline unless
    /// connected; then a manual away or dnd that has not ended; then online while the
    /// user was active within the away timeout, away after.
    pub fn presence_at(&self, timings: Timings, at: DateTime<Utc>) -> Presence {
        if !self.connected_at(timings, at) {
            return Presence::Offline;
        }
        let manual = match self.availability {
            Availability::Away => Some(Presence::Away),
            Availability::Dnd => Some(Presence::Dnd),
            Availability::Auto | Availability::Invisible => None,
        };
        if let Some(manual) = manual
            && !has_ended(self.availability_until, at)
        {
            return manual;
        }
        if self
            .active_at
            .is_some_and(|active| active >= at - timings.away_after())
        {
            Presence::Online
        } else {
            Presence::Away
        }
    }

    /// The presence everyone else is shown at `at` (`presence_public`): an invisible
    /// user is offline.
    pub fn public_presence_at(&self, timings: Timings, at: DateTime<Utc>) -> Presence {
        if self.availability == Availability::Invisible {
            Presence::Offline
        } else {
            self.presence_at(timings, at)
        }
    }
}
