//! The admins' list of users: pages by id, filters on the truth, and the exact changes
//! poll (`changed_since`).

use chrono::{DateTime, TimeDelta, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Interval, Nullable, Text, Timestamptz};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::error::ValidationError;
use crate::settings::Timings;
use crate::shown::shown_columns;
use crate::users::{Account, USERNAME_MAX_CHARS, UserRow, username_char};
use crate::views::AdminStatus;
use crate::vocabulary::{OnlineStatus, Presence};

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
    pub fn id(&self) -> i64 {
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
    pub after_id: Option<i64>,
    pub limit: i64,
}

/// A page of users, and the time to ask for changes since next time.
#[derive(Debug, Clone)]
pub struct UserPage {
    pub users: Vec<ListedUser>,
    pub as_of: DateTime<Utc>,
    /// Where the next page starts, if there is another row.
    pub next_after_id: Option<i64>,
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
    let mut rows: Vec<UserRow> = diesel::sql_query(concat!(
        "SELECT username, is_admin, created_at, ",
        shown_columns!("now()"),
        " FROM users WHERE id > $3 AND ($4::timestamptz IS NULL \
           OR changed_at >= $4::timestamptz \
           OR presence_went_offline_since(online_status, last_seen, $1, $4::timestamptz) \
           OR (online_status = 'online' AND active_at >= $4::timestamptz - $2 \
               AND active_at < now() - $2) \
           OR availability_until BETWEEN $4::timestamptz AND now() \
           OR status_expires_at BETWEEN $4::timestamptz AND now()) \
         AND ($6::text IS NULL OR $6 = 'offline' \
              OR presence_shown_online(online_status, last_seen, $1)) \
         AND ($6::text IS NULL \
              OR (presence_of(",
        crate::shown::presence_args!("now()"),
        ") <> 'offline') = ($6 = 'online')) \
         AND ($7::text IS NULL OR $7 = 'offline' \
              OR presence_shown_online(online_status, last_seen, $1)) \
         AND ($7::text IS NULL OR presence_of(",
        crate::shown::presence_args!("now()"),
        ") = $7) \
         AND ($8::text IS NULL OR lower(username) LIKE $8) \
         ORDER BY id LIMIT $5"
    ))
    .bind::<Interval, _>(timings.window())
    .bind::<Interval, _>(timings.away_after())
    .bind::<diesel::sql_types::BigInt, _>(query.after_id.unwrap_or(0))
    .bind::<Nullable<Timestamptz>, _>(query.changed_since)
    // One more than a page: whether there is a next page.
    .bind::<diesel::sql_types::BigInt, _>(query.limit.saturating_add(1))
    .bind::<Nullable<Text>, _>(query.status)
    .bind::<Nullable<Text>, _>(query.presence)
    .bind::<Nullable<Text>, _>(query.name_prefix.as_deref().map(like_prefix))
    .load(conn)?;
    let more = rows.len() > usize::try_from(query.limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(query.limit).unwrap_or(usize::MAX));
    let next_after_id = more.then(|| rows.last().map(|row| row.shown.id)).flatten();
    let users = rows
        .iter()
        .map(|row| ListedUser {
            account: row.account(),
            status: row.shown.shown_to_admins(),
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
