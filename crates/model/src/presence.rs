//! Automatic presence: the writes that connect, disconnect and mark activity (deferred
//! activity is written by [`crate::flushes`]). What a user is *shown* is decided in
//! [`crate::shown`].
//!
//! `users.online_status` is a stored flag: the user is *connected*. Login and activity set
//! it, logout and the inactivity sweep clear it; readers never see it online once
//! `last_seen` is older than the window, so if the sweep stops running they are still
//! right (the SQL function `presence_shown_online`, migration `000007`). `active_at` is
//! the latest real use of the app on a connected session: a heartbeat may say the page
//! sits idle (`{"active": false}`), any other request is use.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::dsl::{case_when, max, now};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::Timestamptz;

use crate::events::{Causes, Transition};
use crate::ids::UserId;
use crate::schema::{sessions, users};
use crate::settings::Timings;
use crate::sql::clock_timestamp;
use crate::views::LiveSession;
use crate::vocabulary::{ChangeReason, OnlineStatus};

/// A user's connection and activity right after a presence write, with the transition it
/// recorded if what others are shown changed.
#[derive(Debug, Clone)]
pub struct PresenceWritten {
    pub user_id: UserId,
    pub stored_status: OnlineStatus,
    pub last_seen: Option<DateTime<Utc>>,
    pub active_at: Option<DateTime<Utc>>,
    /// The outbox row: inserted in the same transaction as the write.
    pub transition: Option<Transition>,
}

/// Locks the user's row until the transaction ends and returns their stored flag (`None`
/// for an unknown id).
///
/// Every transaction that changes a user's presence takes this lock *first*, before it
/// touches their sessions: one lock order everywhere, so two of them never deadlock, and
/// every statement after it sees what the previous holder committed (under READ
/// COMMITTED each statement takes a fresh snapshot). That is what makes two logouts at
/// once see each other's revocation, and a request racing a logout see the revocation.
pub(crate) fn lock_user(
    conn: &mut PgConnection,
    user_id: UserId,
) -> QueryResult<Option<OnlineStatus>> {
    users::table
        .find(user_id)
        .select(users::online_status)
        .for_update()
        .get_result(conn)
        .optional()
}

/// What a presence write does to the user's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connectivity {
    /// Connected now (login, activity): the flag set, `last_seen` now.
    Connected { active: bool },
    /// The last connected session closed (logout): the flag cleared, `last_seen` now.
    Disconnected,
    /// Another session is still connected (logout of one of several): only `active_at`
    /// follows the sessions left.
    Unchanged,
}

/// Writes the user's connection on a row locked by [`lock_user`], then records what others
/// are now shown if it changed, with `reason`.
pub(crate) fn write_presence(
    conn: &mut PgConnection,
    timings: Timings,
    user_id: UserId,
    connection: Connectivity,
    reason: ChangeReason,
) -> QueryResult<PresenceWritten> {
    let user = diesel::update(users::table.find(user_id));
    let written = (users::online_status, users::last_seen, users::active_at);
    let (stored_status, last_seen, active_at): (OnlineStatus, _, _) = match connection {
        Connectivity::Connected { active } => user
            .set((
                users::online_status.eq(OnlineStatus::Online),
                users::last_seen.eq(clock_timestamp().nullable()),
                users::active_at.eq(case_when(
                    active.into_sql::<diesel::sql_types::Bool>(),
                    clock_timestamp().nullable(),
                )
                .otherwise(users::active_at)),
                users::changed_at.eq(now),
            ))
            .returning(written)
            .get_result(conn)?,
        Connectivity::Disconnected => user
            .set((
                users::online_status.eq(OnlineStatus::Offline),
                users::last_seen.eq(clock_timestamp().nullable()),
                users::changed_at.eq(now),
            ))
            .returning(written)
            .get_result(conn)?,
        Connectivity::Unchanged => {
            let connected_sessions = sessions::table
                .filter(sessions::user_id.eq(user_id))
                .filter(sessions::revoked_at.is_null())
                .filter(sessions::last_seen.ge(now.into_sql::<Timestamptz>() - timings.window()));
            user.set((
                users::active_at.eq(connected_sessions
                    .select(max(sessions::active_at))
                    .single_value()),
                users::changed_at.eq(now),
            ))
            .returning(written)
            .get_result(conn)?
        }
    };
    let change =
        crate::events::record_changes(conn, timings, &[user_id], None, Causes::only(reason))?.pop();
    Ok(PresenceWritten {
        user_id,
        stored_status,
        last_seen,
        active_at,
        transition: change,
    })
}

/// Marks the user connected and active as of now (`None` for an unknown id), recording
/// the transition with `reason` if others are shown a change.
pub fn mark_user_online(
    conn: &mut PgConnection,
    timings: Timings,
    user_id: UserId,
    reason: ChangeReason,
) -> QueryResult<Option<PresenceWritten>> {
    crate::db::transaction(conn, |conn| {
        if lock_user(conn, user_id)?.is_none() {
            return Ok(None);
        }
        let connected = Connectivity::Connected { active: true };
        write_presence(conn, timings, user_id, connected, reason).map(Some)
    })
}

/// Authenticates the session holding `token` and records activity on it at once: it
/// refreshes `last_seen` of the session and of its user (and `active_at` if `active`),
/// and records a transition with `reason` if others are shown a change (the user was
/// offline or away, say).
///
/// Returns the session and the write, or `None` when the token is unknown, revoked, or
/// unused for longer than `session_ttl`. The user's row is locked before the session is
/// touched, as logout locks it, so a request racing a logout either finishes before the
/// revocation or is refused: a revoked token never brings its user back online.
pub fn record_activity(
    conn: &mut PgConnection,
    timings: Timings,
    token: &str,
    session_ttl: TimeDelta,
    reason: ChangeReason,
    active: bool,
) -> QueryResult<Option<(LiveSession, PresenceWritten)>> {
    let token_hash = crate::tokens::hash_token(token);
    crate::db::transaction(conn, |conn| {
        let Some(session) = crate::tokens::find_live(conn, &token_hash, session_ttl)? else {
            return Ok(None);
        };
        if lock_user(conn, session.user_id)?.is_none() {
            return Ok(None);
        }
        if !crate::tokens::touch(conn, session.id, active)? {
            return Ok(None);
        }
        let connected = Connectivity::Connected { active };
        let update = write_presence(conn, timings, session.user_id, connected, reason)?;
        let live = crate::tokens::find_live_session(conn, &token_hash, session_ttl)?;
        Ok(live.map(|live| (live, update)))
    })
}

/// The time of activity happening now, by the database's clock (see [`crate::clock`]), at
/// the precision PostgreSQL stores (microseconds), so a time the API answers from memory
/// equals the one it later reads back.
pub fn activity_time() -> DateTime<Utc> {
    use chrono::SubsecRound;
    crate::clock::now().trunc_subsecs(6)
}
