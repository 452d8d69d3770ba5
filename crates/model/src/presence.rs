//! Automatic presence: the writes that connect, disconnect and mark activity, and the
//! sweep. What a user is *shown* is decided in [`crate::status`].
//!
//! `users.online_status` is a stored flag: the user is *connected*. Login and activity set
//! it, logout and the inactivity sweep clear it; readers never see it online once
//! `last_seen` is older than the window, so if the sweep stops running they are still
//! right (the SQL function `presence_shown_online`, migration `000007`). `active_at` is
//! the latest real use of the app on a connected session: a heartbeat may say the page
//! sits idle (`{"active": false}`), any other request is use.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::pg::PgConnection;
use diesel::sql_types::{Array, BigInt, Interval, Nullable, Text, Timestamptz};
use diesel::{QueryResult, QueryableByName, RunQueryDsl, sql_query};

use crate::events::{Causes, ChangeReason, PresenceChanged};
use crate::settings::Timings;

crate::text_enum::text_enum! {
    /// Connected or not: the stored flag, and what clients that know two states are shown.
    pub enum OnlineStatus {
        Online = "online",
        Offline = "offline",
    }
}

/// A user's connection and activity right after a presence write, with the transition it
/// recorded if what others are shown changed.
#[derive(Debug, Clone)]
pub struct PresenceUpdate {
    pub user_id: i64,
    pub stored_status: OnlineStatus,
    pub last_seen: Option<DateTime<Utc>>,
    pub active_at: Option<DateTime<Utc>>,
    /// The outbox row: inserted in the same transaction as the write.
    pub change: Option<PresenceChanged>,
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
    user_id: i64,
) -> QueryResult<Option<OnlineStatus>> {
    use crate::schema::users;
    use diesel::prelude::*;
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
    user_id: i64,
    connection: Connectivity,
    reason: ChangeReason,
) -> QueryResult<PresenceUpdate> {
    #[derive(QueryableByName)]
    struct Written {
        #[diesel(sql_type = Text)]
        online_status: OnlineStatus,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        last_seen: Option<DateTime<Utc>>,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        active_at: Option<DateTime<Utc>>,
    }
    let written: Written = match connection {
        Connectivity::Connected { active } => sql_query(
            "UPDATE users SET online_status = 'online', last_seen = clock_timestamp(), \
               active_at = CASE WHEN $2 THEN clock_timestamp() ELSE active_at END, \
               changed_at = now() \
             WHERE id = $1 RETURNING online_status, last_seen, active_at",
        )
        .bind::<BigInt, _>(user_id)
        .bind::<diesel::sql_types::Bool, _>(active),
        Connectivity::Disconnected => sql_query(
            "UPDATE users SET online_status = 'offline', last_seen = clock_timestamp(), \
               changed_at = now() \
             WHERE id = $1 RETURNING online_status, last_seen, active_at",
        )
        .bind::<BigInt, _>(user_id)
        .bind::<diesel::sql_types::Bool, _>(false),
        Connectivity::Unchanged => sql_query(
            "UPDATE users SET active_at = (SELECT max(active_at) FROM sessions \
               WHERE user_id = $1 AND revoked_at IS NULL AND last_seen >= now() - $3), \
               changed_at = now() \
             WHERE id = $1 RETURNING online_status, last_seen, active_at",
        )
        .bind::<BigInt, _>(user_id)
        .bind::<diesel::sql_types::Bool, _>(false),
    }
    .bind::<Interval, _>(timings.window())
    .get_result(conn)?;
    let change =
        crate::events::record_changes(conn, timings, &[user_id], None, Causes::only(reason))?.pop();
    Ok(PresenceUpdate {
        user_id,
        stored_status: written.online_status,
        last_seen: written.last_seen,
        active_at: written.active_at,
        change,
    })
}

/// Marks the user connected and active as of now (`None` for an unknown id), recording
/// the transition with `reason` if others are shown a change.
pub fn mark_user_online(
    conn: &mut PgConnection,
    timings: Timings,
    user_id: i64,
    reason: ChangeReason,
) -> QueryResult<Option<PresenceUpdate>> {
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
) -> QueryResult<Option<(LiveSession, PresenceUpdate)>> {
    let token_hash = crate::sessions::hash_token(token);
    crate::db::transaction(conn, |conn| {
        let Some(session) = crate::sessions::find_live(conn, &token_hash, session_ttl)? else {
            return Ok(None);
        };
        if lock_user(conn, session.user_id)?.is_none() {
            return Ok(None);
        }
        if !crate::sessions::touch(conn, session.id, active)? {
            return Ok(None);
        }
        let connected = Connectivity::Connected { active };
        let update = write_presence(conn, timings, session.user_id, connected, reason)?;
        let live = find_live_session(conn, &token_hash, session_ttl)?;
        Ok(live.map(|live| (live, update)))
    })
}

/// The inactivity sweep, as of `at`: the earlier of now less `unheard` (the recent time
/// in which nothing could be heard, see [`crate::sweeps::unheard_time`]) and the oldest
/// promise of the API replicas that reported within the last window (see
/// [`flush_last_seen`]), so activity a replica holds but could not write yet (PostgreSQL
/// was down, say) never gets its user moved; a replica silent for a whole window is
/// presumed gone.
///
/// 1. A connected user's `active_at` falls back to the latest use on a session still
///    connected: a device closed without logging out stops counting as use once it is
///    silent for a window (slack of one session granularity for rows written lazily).
/// 2. Users silent for a window are disconnected.
/// 3. Manual and custom statuses whose end has come are ended (`expiry`).
/// 4. Every user others are told is not offline gets a transition if what they are shown
///    changed: `sweep` to offline, `idle` to away.
///
/// Returns the transitions recorded.
pub fn sweep(
    conn: &mut PgConnection,
    timings: Timings,
    unheard: TimeDelta,
) -> QueryResult<Vec<PresenceChanged>> {
    #[derive(QueryableByName)]
    struct At {
        #[diesel(sql_type = Timestamptz)]
        at: DateTime<Utc>,
    }
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let window = timings.window();
    let At { at } = sql_query(
        "SELECT LEAST(now() - $2, (SELECT min(flushed_through) FROM activity_flushes \
                                   WHERE reported_at > now() - $1)) AS at",
    )
    .bind::<Interval, _>(window)
    .bind::<Interval, _>(unheard)
    .get_result(conn)?;
    sql_query(
        "UPDATE users u SET active_at = connected.active_at, changed_at = now() \
         FROM (SELECT s.user_id, max(s.active_at) AS active_at \
               FROM users c JOIN sessions s ON s.user_id = c.id \
               WHERE c.online_status = 'online' AND s.revoked_at IS NULL \
                 AND s.last_seen >= $2 - $1 \
               GROUP BY s.user_id) AS connected \
         WHERE u.id = connected.user_id AND u.active_at > connected.active_at + $3",
    )
    .bind::<Interval, _>(window)
    .bind::<Timestamptz, _>(at)
    .bind::<Interval, _>(timings.session_granularity())
    .execute(conn)?;
    sql_query(
        // Shown offline already (by the window), so no `changed_at`: nothing an admin is
        // shown changes.
        "UPDATE users SET online_status = 'offline' \
         WHERE online_status = 'online' AND last_seen < $2 - $1",
    )
    .bind::<Interval, _>(window)
    .bind::<Timestamptz, _>(at)
    .execute(conn)?;
    let mut changes = crate::status::expire_statuses(conn, timings)?;
    let told: Vec<Id> =
        sql_query("SELECT id FROM users WHERE published_presence <> 'offline' ORDER BY id")
            .load(conn)?;
    let ids: Vec<i64> = told.into_iter().map(|row| row.id).collect();
    let causes = Causes {
        presence: None,
        custom: ChangeReason::Expiry,
    };
    changes.extend(crate::events::record_changes(
        conn,
        timings,
        &ids,
        Some(at),
        causes,
    )?);
    Ok(changes)
}

/// What an authenticated request counts as, declared by its route: the one rule of what
/// is activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountsAs {
    /// The app's periodic heartbeat: connection, and use unless its body says the page
    /// is idle; recorded as `heartbeat`.
    Heartbeat,
    /// Any other use of the app: activity, recorded as `activity`.
    Activity,
    /// Ends the session (logout): never activity, so it can never bring a user online, and
    /// a user the sweep took offline who logs out makes no transition at all.
    Nothing,
}

impl CountsAs {
    /// What a transition caused by this request is recorded as; `None` when the request is
    /// not activity.
    pub fn reason(self) -> Option<ChangeReason> {
        match self {
            Self::Heartbeat => Some(ChangeReason::Heartbeat),
            Self::Activity => Some(ChangeReason::Activity),
            Self::Nothing => None,
        }
    }

    /// Whether the request is real use of the app (it keeps the user from being away):
    /// any activity but a heartbeat whose body says `{"active": false}`.
    pub fn is_use(self, declared_active: Option<bool>) -> bool {
        match self {
            Self::Heartbeat => declared_active.unwrap_or(true),
            Self::Activity => true,
            Self::Nothing => false,
        }
    }
}

/// The time of activity happening now, by the database's clock (see [`crate::clock`]), at
/// the precision PostgreSQL stores (microseconds), so a time the API answers from memory
/// equals the one it later reads back.
pub fn activity_time() -> DateTime<Utc> {
    use chrono::SubsecRound;
    crate::clock::now().trunc_subsecs(6)
}

/// A live session, looked up by its token without writing anything, with what decides
/// whether its activity may be deferred: what an API process caches to authenticate
/// requests.
#[derive(Debug, Clone, PartialEq, Eq, diesel::Queryable)]
pub struct LiveSession {
    pub session_id: i64,
    pub user_id: i64,
    pub is_admin: bool,
    /// The user's connected flag.
    pub stored_status: OnlineStatus,
    pub last_seen: Option<DateTime<Utc>>,
    pub active_at: Option<DateTime<Utc>>,
}

/// Finds the live session whose token hashes to `token_hash` (see
/// [`crate::sessions::hash_token`]): not revoked, used within `session_ttl`.
///
/// This runs on every session-cache miss, so it is written with diesel's query builder:
/// its SQL is fixed, and diesel keeps it prepared per connection (a `sql_query` would be
/// parsed and planned again each time, which costs more than running it).
pub fn find_live_session(
    conn: &mut PgConnection,
    token_hash: &[u8],
    session_ttl: TimeDelta,
) -> QueryResult<Option<LiveSession>> {
    use crate::schema::{sessions, users};
    use diesel::dsl::now;
    use diesel::prelude::*;

    sessions::table
        .inner_join(users::table)
        .filter(sessions::token_hash.eq(token_hash))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::last_seen.ge(now.into_sql::<Timestamptz>() - session_ttl))
        .select((
            sessions::id,
            users::id,
            users::is_admin,
            users::online_status,
            users::last_seen,
            users::active_at,
        ))
        .first(conn)
        .optional()
}

/// Deferred activity of one session: seen at `seen_at`, really used at `active_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    pub session_id: i64,
    pub seen_at: DateTime<Utc>,
    pub active_at: Option<DateTime<Utc>>,
}

/// Writes deferred activity: `touches`, at most one per session, taken by `replica` at
/// `flushed_through`, and records that promise in `activity_flushes` in the same
/// transaction (see [`sweep`]).
///
/// Each user gets the latest `last_seen` and `active_at` of their touched sessions, unless
/// a write since left later ones; the flag is never changed here, so a flush cannot bring
/// anyone online (activity is only deferred when it changes nothing others are shown).
/// Revoked sessions are skipped. A session row is only rewritten once its stored times lag
/// by `session_granularity`: they serve the session TTL, "is another session live?" and
/// the sweep's fall-back of `active_at`, which need no finer grain, and skipping those
/// writes halves the rows a flush writes. Users are written before sessions, the lock
/// order of every presence write. Returns the number of users written.
pub fn flush_last_seen(
    conn: &mut PgConnection,
    replica: &str,
    flushed_through: DateTime<Utc>,
    touches: &[Touch],
    session_granularity: TimeDelta,
) -> QueryResult<usize> {
    let ids: Vec<i64> = touches.iter().map(|t| t.session_id).collect();
    let seen: Vec<DateTime<Utc>> = touches.iter().map(|t| t.seen_at).collect();
    let active: Vec<Option<DateTime<Utc>>> = touches.iter().map(|t| t.active_at).collect();
    crate::db::transaction(conn, |conn| {
        sql_query(
            "INSERT INTO activity_flushes (replica, flushed_through) VALUES ($1, $2) \
             ON CONFLICT (replica) DO UPDATE \
             SET flushed_through = excluded.flushed_through, reported_at = now()",
        )
        .bind::<Text, _>(replica)
        .bind::<Timestamptz, _>(flushed_through)
        .execute(conn)?;
        if ids.is_empty() {
            return Ok(0);
        }
        let users = sql_query(
            "WITH latest AS ( \
               SELECT s.user_id, max(t.seen_at) AS seen_at, max(t.active_at) AS active_at \
               FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[]) \
                 AS t(session_id, seen_at, active_at) \
               JOIN sessions s ON s.id = t.session_id WHERE s.revoked_at IS NULL \
               GROUP BY s.user_id) \
             UPDATE users u SET last_seen = GREATEST(u.last_seen, latest.seen_at), \
               active_at = GREATEST(u.active_at, latest.active_at), changed_at = now() \
             FROM latest \
             WHERE u.id = latest.user_id AND (u.last_seen IS NULL OR u.last_seen < latest.seen_at \
               OR u.active_at IS NULL OR u.active_at < latest.active_at)",
        )
        .bind::<Array<BigInt>, _>(&ids)
        .bind::<Array<Timestamptz>, _>(&seen)
        .bind::<Array<Nullable<Timestamptz>>, _>(&active)
        .execute(conn)?;
        sql_query(
            "UPDATE sessions s SET last_seen = GREATEST(s.last_seen, t.seen_at), \
               active_at = GREATEST(s.active_at, t.active_at) \
             FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[]) \
               AS t(session_id, seen_at, active_at) \
             WHERE s.id = t.session_id AND s.revoked_at IS NULL \
               AND (t.seen_at - s.last_seen >= $4 OR t.active_at - s.active_at >= $4)",
        )
        .bind::<Array<BigInt>, _>(&ids)
        .bind::<Array<Timestamptz>, _>(&seen)
        .bind::<Array<Nullable<Timestamptz>>, _>(&active)
        .bind::<Interval, _>(session_granularity)
        .execute(conn)?;
        Ok(users)
    })
}

/// A replica stopping gracefully, its last activity written: it no longer holds the sweep
/// back.
pub fn forget_replica(conn: &mut PgConnection, replica: &str) -> QueryResult<()> {
    sql_query("DELETE FROM activity_flushes WHERE replica = $1")
        .bind::<Text, _>(replica)
        .execute(conn)
        .map(drop)
}

/// This machine's (or container's) host name.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A name unique to this process and start, `role-host-pid-nonce`, for the rows and
/// queues a replica owns. A restarted container has the same host name and pid, so the
/// nonce makes every start distinct.
pub fn replica_name(role: &str) -> String {
    let host = host_name();
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{role}-{host}-{}-{nonce:08x}", std::process::id())
}
