//! The admins' list of users: pages by id, filters on the truth, and the exact changes
//! poll (`changed_since`).

use chrono::{DateTime, TimeDelta, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Interval, Timestamptz};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::error::ValidationError;
use crate::ids::UserId;
use crate::schema::users;
use crate::settings::Timings;
use crate::shown::ShownRow;
use crate::shown::{connected_now, true_presence};
use crate::sql::{lower, presence_went_offline_since};
use crate::users::{Account, USERNAME_MAX_CHARS, UserRecord, username_char};
use crate::views::AdminStatus;
use crate::vocabulary::{OnlineStatus, Presence};
use diesel::dsl::now;

/// A user in the admins' list: their account and the status admins are shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListedUser {
    #[serde(flatten)]
    pub account: Account,
    #[serde(flatten)]
    pub status: AdminStatus,
}

impl ListedUser {
    pub fn id(&self) -> UserId {
        self.status.status.id
    }
}

/// Which users to list: a page of them in id order.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Only users connected (`online`) or not, as admins are shown.
    pub status: Option<OnlineStatus>,
    /// Only users with this presence, as admins are shown.
    pub presence: Option<Presence>,
    /// Only users whose name starts with this, whatever the case.
    pub name_prefix: Option<String>,
    /// Only users whose shown status changed at or after then: a previous page's `as_of`.
    pub changed_since: Option<DateTime<Utc>>,
    /// Only users with a greater id: the cursor of the previous page.
    pub after_id: Option<UserId>,
    pub limit: i64,
}

/// A page of users, and the time to ask for changes since next time.
#[derive(Debug, Clone)]
pub struct UserPage {
    pub users: Vec<ListedUser>,
    pub as_of: DateTime<Utc>,
    /// Where the next page starts, if there is another row.
    pub next_after_id: Option<UserId>,
}

/// How far before the read a page's `as_of` is put when the database hides other roles'
/// transactions from ours (see [`poll_time`]).
pub const CHANGED_SINCE_SLACK: TimeDelta = TimeDelta::seconds(5);

/// The `as_of` of a page about to be read: the start of the oldest transaction open in
/// this database, or now. A write's `changed_at` is its transaction's start, so every
/// write the page cannot see (still open, or committed after the page's snapshot) has a
/// `changed_at` at or after it, and the next poll finds it. The cost is repeats: a user
/// written while a transaction older than the read was open comes back once more, the
/// slack being the longest transaction then open (writes are short; a sweep of many users
/// is the longest). Only if the database hides other roles' sessions from this one
/// (without `pg_read_all_stats`) does it fall back to [`CHANGED_SINCE_SLACK`] before now.
fn poll_time(conn: &mut PgConnection) -> QueryResult<DateTime<Utc>> {
    #[derive(QueryableByName)]
    struct AsOf {
        #[diesel(sql_type = Timestamptz)]
        as_of: DateTime<Utc>,
    }
    // `pg_stat_activity` is a system view, outside the schema.
    diesel::sql_query(
        "SELECT CASE WHEN bool_or(query = '<insufficient privilege>') THEN now() - $1 \
                ELSE least(now(), min(xact_start)) END AS as_of \
         FROM pg_stat_activity \
         WHERE datname = current_database() AND backend_type = 'client backend'",
    )
    .bind::<Interval, _>(CHANGED_SINCE_SLACK)
    .get_result::<AsOf>(conn)
    .map(|row| row.as_of)
}

/// Users ordered by id, filtered by `query` on the truth, as admins are shown them. A
/// changes query (`changed_since`) returns the users whose shown status changed since
/// then: written (`changed_at`, which only writes that change what admins are shown
/// move), or moved by time alone with no write: connected users whose `last_seen` crossed
/// the window's edge or whose `active_at` crossed the away edge (the partial indexes of
/// connected users), and manual or custom statuses that reached their end. It costs in
/// proportion to the changes.
pub fn list_users(
    conn: &mut PgConnection,
    timings: Timings,
    query: &UserQuery,
) -> Result<UserPage, Error> {
    // The search is a name prefix (the API calls it `search`): no longer than a name.
    if query
        .name_prefix
        .as_ref()
        .is_some_and(|prefix| prefix.chars().count() > USERNAME_MAX_CHARS)
    {
        return Err(Error::Invalid(ValidationError::new(
            "search",
            format!("must be at most {USERNAME_MAX_CHARS} characters long"),
        )));
    }
    // A name prefix no username can start with matches nothing (and a NUL in it could
    // not even be sent to PostgreSQL).
    let impossible = query
        .name_prefix
        .as_deref()
        .is_some_and(|prefix| !prefix.chars().all(username_char));
    // The time first, then the rows (a later statement, so a later snapshot).
    let as_of = poll_time(conn)?;
    if impossible {
        return Ok(UserPage {
            users: Vec::new(),
            as_of,
            next_after_id: None,
        });
    }
    let window = timings.window();
    let away_after = timings.away_after();
    let connected = || connected_now(window);
    let shown = || true_presence(window, away_after, None);
    let mut rows = users::table
        .select((UserRecord::as_select(), now.into_sql::<Timestamptz>()))
        .filter(users::id.gt(query.after_id.unwrap_or(UserId(0))))
        .order(users::id)
        // One more than a page: whether there is a next page.
        .limit(query.limit.saturating_add(1))
        .into_boxed();
    if let Some(since) = query.changed_since {
        rows = rows.filter(
            users::changed_at
                .ge(since)
                .or(presence_went_offline_since(
                    users::online_status,
                    users::last_seen,
                    window,
                    since,
                ))
                .or(users::online_status
                    .eq(OnlineStatus::Online)
                    .and(users::active_at.ge(since - away_after))
                    .and(
                        users::active_at
                            .lt((now.into_sql::<Timestamptz>() - away_after).nullable()),
                    ))
                .or(users::availability_until.between(since, now))
                .or(users::status_expires_at.between(since, now)),
        );
    }
    // Only a connected user can be shown anything but offline: the partial index of
    // connected users answers the other filters.
    match query.status {
        Some(OnlineStatus::Online) => {
            rows = rows.filter(connected().and(shown().ne(Presence::Offline)));
        }
        Some(OnlineStatus::Offline) => rows = rows.filter(shown().eq(Presence::Offline)),
        None => {}
    }
    match query.presence {
        Some(Presence::Offline) => rows = rows.filter(shown().eq(Presence::Offline)),
        Some(presence) => rows = rows.filter(connected().and(shown().eq(presence))),
        None => {}
    }
    if let Some(prefix) = &query.name_prefix {
        rows = rows.filter(lower(users::username).like(like_prefix(prefix)));
    }
    let mut rows: Vec<(UserRecord, DateTime<Utc>)> = rows.load(conn)?;
    let more = rows.len() > usize::try_from(query.limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(query.limit).unwrap_or(usize::MAX));
    let next_after_id = more
        .then(|| rows.last().map(|(record, _)| record.facts.id))
        .flatten();
    let users = rows
        .into_iter()
        .map(|(record, at)| ListedUser {
            account: record.account,
            status: ShownRow::from_facts(&record.facts, timings, at).shown_to_admins(),
        })
        .collect();
    Ok(UserPage {
        users,
        as_of,
        next_after_id,
    })
}

/// A `LIKE` pattern matching names that start with `prefix` (lowercased), its wildcards
/// escaped.
fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_prefixes_match_literally() {
        assert_eq!(like_prefix("Al"), "al%");
        assert_eq!(like_prefix("a_b%"), "a\\_b\\%%");
    }
}
