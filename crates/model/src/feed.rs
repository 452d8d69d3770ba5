//! What streams and readers take from the published history: the snapshot a stream
//! starts from, the changes it resumes with, the backlog, and a user's history.

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::Timestamptz;

use crate::events::Transition;
use crate::ids::{Revision, UserId};
use crate::schema::{event_publication, presence_events, users};
use crate::settings::Timings;
use crate::shown::ShownRow;

/// What a stream starts from: the statuses of some users and the revision they are as
/// of. Changes with a greater revision come after it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub revision: Revision,
    pub users: Vec<ShownRow>,
}

/// The statuses of `user_ids` (every user if `None`), and the latest revision, read in one
/// repeatable-read transaction so the two agree.
pub fn snapshot(
    conn: &mut PgConnection,
    timings: Timings,
    user_ids: Option<&[UserId]>,
) -> QueryResult<Snapshot> {
    conn.build_transaction()
        .repeatable_read()
        .read_only()
        .run(|conn| {
            let revision = latest_revision(conn)?;
            let users = match user_ids {
                Some(ids) => crate::shown::shown_statuses(conn, timings, ids)?,
                None => crate::shown::all_shown_statuses(conn, timings)?,
            };
            Ok(Snapshot { revision, users })
        })
}

/// The greatest revision given so far (0 before any).
pub fn latest_revision(conn: &mut PgConnection) -> QueryResult<Revision> {
    presence_events::table
        .select(diesel::dsl::max(presence_events::revision))
        .get_result::<Option<Revision>>(conn)
        .map(|latest| latest.unwrap_or(Revision(0)))
}

/// Why a resume was refused: a snapshot is due instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeRefused {
    /// The revision is older than what resuming reaches back to, or than what the log
    /// still holds (a change after it went with a dropped partition).
    TooOld,
    /// The revision was never given.
    Unknown,
    /// More changes than a snapshot would hold.
    TooMany,
}

/// The changes published after `after` to `user_ids` (every user if `None`), in revision
/// order, if the stream can resume from there: the first revision after it was given
/// within `reach`, and at most `max` changes follow. The caller keeps the latest of each
/// user.
pub fn changes_since(
    conn: &mut PgConnection,
    after: Revision,
    user_ids: Option<&[UserId]>,
    reach: chrono::TimeDelta,
    max: i64,
) -> QueryResult<Result<Vec<Transition>, ResumeRefused>> {
    conn.build_transaction()
        .repeatable_read()
        .read_only()
        .run(|conn| {
            if after > latest_revision(conn)? {
                return Ok(Err(ResumeRefused::Unknown));
            }
            let dropped_through: Revision = event_publication::table
                .select(event_publication::dropped_through)
                .get_result(conn)?;
            if after < dropped_through {
                // Some change after it went with a dropped partition (`event_log`).
                return Ok(Err(ResumeRefused::TooOld));
            }
            let reach_start = diesel::dsl::now.into_sql::<Timestamptz>() - reach;
            let too_old: Option<bool> = presence_events::table
                .filter(presence_events::revision.gt(after))
                .order(presence_events::revision)
                .select(presence_events::revision_at.lt(reach_start.nullable()))
                .first::<Option<bool>>(conn)
                .optional()?
                .map(|too_old| too_old.unwrap_or(false));
            if too_old == Some(true) {
                return Ok(Err(ResumeRefused::TooOld));
            }
            let mut query = presence_events::table
                .filter(presence_events::revision.gt(after))
                .order(presence_events::revision)
                .limit(max + 1)
                .select(Transition::as_select())
                .into_boxed();
            if let Some(ids) = user_ids {
                query = query.filter(presence_events::user_id.eq_any(ids));
            }
            let changes = query.load(conn)?;
            if changes.len() as i64 > max {
                return Ok(Err(ResumeRefused::TooMany));
            }
            Ok(Ok(changes))
        })
}

/// The transitions not yet published: how many, and when the oldest was recorded.
pub fn unpublished_backlog(conn: &mut PgConnection) -> QueryResult<(i64, Option<DateTime<Utc>>)> {
    unpublished_events::table
        .select((
            diesel::dsl::count_star(),
            diesel::dsl::min(unpublished_events::recorded_at),
        ))
        .get_result(conn)
}

diesel::table! {
    /// The view of migration 000014: the events without a revision, and those numbered
    /// past the publisher's cursor (one definition for the worker, tests and benchmarks).
    unpublished_events (id) {
        id -> Int8,
        recorded_at -> Timestamptz,
    }
}

/// A user's transitions, newest first; `None` if there is no such user.
pub fn presence_history(
    conn: &mut PgConnection,
    user_id: UserId,
    limit: i64,
) -> QueryResult<Option<Vec<Transition>>> {
    let exists: bool =
        diesel::select(diesel::dsl::exists(users::table.find(user_id))).get_result(conn)?;
    if !exists {
        return Ok(None);
    }
    presence_events::table
        .filter(presence_events::user_id.eq(user_id))
        .order(presence_events::id.desc())
        .limit(limit)
        .select(Transition::as_select())
        .load(conn)
        .map(Some)
}
