//! Who is online: the presence rules of the service, and all their SQL.
//!
//! `users.online_status` is a stored flag: login and activity set it, logout and the
//! inactivity sweep clear it. What anyone is *shown* is that flag, but never "online" once
//! `last_seen` is older than the presence window: if the sweep stops running, readers are
//! still right. That rule is written once, as the SQL function `presence_shown_online`
//! (migration `000007`), and every read uses it: through `shown_online!` in SQL text and its
//! diesel binding in the query builder.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::pg::PgConnection;
use diesel::sql_types::{Array, BigInt, Interval, Nullable, Text, Timestamptz};
use diesel::{OptionalExtension, QueryResult, QueryableByName, RunQueryDsl, sql_query};
use serde::Serialize;

use crate::events::{ChangeReason, PresenceChanged};
use crate::users::User;

/// SQL for "this user is shown online", with the window bound as `$1`.
macro_rules! shown_online {
    () => {
        "presence_shown_online(online_status, last_seen, $1)"
    };
}

diesel::define_sql_function!(
    /// The shown-online rule (the SQL function of migration `000007`).
    fn presence_shown_online(status: Text, last_seen: Nullable<Timestamptz>, presence_window: Interval) -> Nullable<Bool>
);

/// The shown `online_status` column; `$1` is the window.
macro_rules! shown_status {
    () => {
        concat!(
            "CASE WHEN ",
            $crate::presence::shown_online!(),
            " THEN 'online' ELSE 'offline' END AS online_status"
        )
    };
}
/// The user columns as readers see them; `$1` is the window.
macro_rules! shown_user_columns {
    () => {
        concat!(
            "id, username, is_admin, ",
            $crate::presence::shown_status!(),
            ", last_seen, created_at"
        )
    };
}
pub(crate) use {shown_online, shown_status, shown_user_columns};

crate::text_enum::text_enum! {
    /// Online or offline: the stored flag, and what readers are shown.
    pub enum OnlineStatus {
        Online = "online",
        Offline = "offline",
    }
}

/// A user row right after a presence write, with the transition it recorded if the flag
/// changed.
#[derive(Debug, Clone)]
pub struct PresenceUpdate {
    pub user: User,
    /// The outbox row of the transition: inserted in the same transaction as the write.
    pub change: Option<PresenceChanged>,
}

/// One user's presence as the status endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, QueryableByName)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserStatus {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub online_status: OnlineStatus,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_seen: Option<DateTime<Utc>>,
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

/// Sets `online_status` and `last_seen` on a user locked by [`lock_user`] (whose flag was
/// `previous`), and records the transition in the outbox if the flag changes.
pub(crate) fn write_presence(
    conn: &mut PgConnection,
    user_id: i64,
    previous: OnlineStatus,
    status: OnlineStatus,
    reason: ChangeReason,
) -> QueryResult<PresenceUpdate> {
    use crate::schema::users;
    use diesel::dsl::now;
    use diesel::prelude::*;
    let user: User = diesel::update(users::table.find(user_id))
        .set((
            users::online_status.eq(status),
            users::last_seen.eq(crate::db::clock_timestamp().nullable()),
            users::changed_at.eq(now),
        ))
        .returning(User::as_returning())
        .get_result(conn)?;
    let change = match (previous != status, user.last_seen) {
        (true, Some(at)) => Some(crate::events::record(
            conn, user_id, previous, status, reason, at,
        )?),
        _ => None,
    };
    Ok(PresenceUpdate { user, change })
}

/// Marks the user online as of now (`None` for an unknown id), recording the transition
/// with `reason` if they were offline.
pub fn mark_user_online(
    conn: &mut PgConnection,
    user_id: i64,
    reason: ChangeReason,
) -> QueryResult<Option<PresenceUpdate>> {
    crate::db::transaction(conn, |conn| {
        let Some(previous) = lock_user(conn, user_id)? else {
            return Ok(None);
        };
        write_presence(conn, user_id, previous, OnlineStatus::Online, reason).map(Some)
    })
}

/// Authenticates the session holding `token` and records activity on it at once: it
/// refreshes `last_seen` of the session and of its user, and brings the user back online
/// (a transition with `reason`) if the sweep had marked them offline.
///
/// Returns the session id and the write, or `None` when the token is unknown, revoked, or
/// unused for longer than `session_ttl`. The user's row is locked before the session is
/// touched, as logout locks it, so a request racing a logout either finishes before the
/// revocation or is refused: a revoked token never brings its user back online.
pub fn record_activity(
    conn: &mut PgConnection,
    token: &str,
    session_ttl: TimeDelta,
    reason: ChangeReason,
) -> QueryResult<Option<(i64, PresenceUpdate)>> {
    let token_hash = crate::sessions::hash_token(token);
    crate::db::transaction(conn, |conn| {
        let Some(session) = crate::sessions::find_live(conn, &token_hash, session_ttl)? else {
            return Ok(None);
        };
        let Some(previous) = lock_user(conn, session.user_id)? else {
            return Ok(None);
        };
        if !crate::sessions::touch(conn, session.id)? {
            return Ok(None);
        }
        let update = write_presence(
            conn,
            session.user_id,
            previous,
            OnlineStatus::Online,
            reason,
        )?;
        Ok(Some((session.id, update)))
    })
}

/// The inactivity sweep: marks offline every online user silent for longer than
/// `window`, records each transition in the outbox, and returns their ids. The complement
/// of `shown_online!`, written as a range on `last_seen` so it is an index scan on the
/// partial index of online users.
///
/// "Silent" is judged against what the API replicas have written: the window is counted
/// back from the oldest `flushed_through` of the replicas that reported within the last
/// window (see [`flush_last_seen`]), or from now if that is earlier. Activity a replica
/// holds but could not write yet (PostgreSQL was down, say) never gets its user swept;
/// a replica silent for a whole window is presumed gone and no longer holds the sweep
/// back.
pub fn mark_inactive_users_offline(
    conn: &mut PgConnection,
    window: TimeDelta,
) -> QueryResult<Vec<i64>> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        user_id: i64,
    }
    let ids: Vec<Id> = sql_query(
        "WITH swept AS ( \
           UPDATE users SET online_status = 'offline', changed_at = now() \
           WHERE online_status = 'online' AND last_seen < LEAST(now(), ( \
             SELECT min(flushed_through) FROM activity_flushes \
             WHERE reported_at > now() - $1)) - $1 \
           RETURNING id) \
         INSERT INTO presence_events (user_id, from_status, to_status, reason, at) \
         SELECT id, 'online', 'offline', 'sweep', now() FROM swept RETURNING user_id",
    )
    .bind::<Interval, _>(window)
    .load(conn)?;
    Ok(ids.into_iter().map(|row| row.user_id).collect())
}

/// How many users are shown online now.
pub fn get_online_users_count(conn: &mut PgConnection, window: TimeDelta) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        count: i64,
    }
    let row: Count = sql_query(concat!(
        "SELECT count(*) AS count FROM users WHERE ",
        shown_online!()
    ))
    .bind::<Interval, _>(window)
    .get_result(conn)?;
    Ok(row.count)
}

/// One user's shown status, or `None` for an unknown id.
pub fn get_user_online_status(
    conn: &mut PgConnection,
    user_id: i64,
    window: TimeDelta,
) -> QueryResult<Option<UserStatus>> {
    sql_query(concat!(
        "SELECT id, ",
        shown_status!(),
        ", last_seen FROM users WHERE id = $2"
    ))
    .bind::<Interval, _>(window)
    .bind::<BigInt, _>(user_id)
    .get_result(conn)
    .optional()
}

/// What an authenticated request counts as, declared by its route: the one rule of what
/// is activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountsAs {
    /// The app's periodic heartbeat: activity, recorded as `heartbeat`.
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
}

/// The time of activity happening now, at the precision PostgreSQL stores (microseconds),
/// so a time the API answers from memory equals the one it later reads back.
pub fn activity_time() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

/// A live session, looked up by its token without writing anything, with its user as
/// shown and the stored flag: what an API process caches to authenticate requests.
#[derive(Debug, Clone)]
pub struct LiveSession {
    pub session_id: i64,
    pub stored_status: OnlineStatus,
    pub user: User,
}

/// Finds the live session whose token hashes to `token_hash` (see
/// [`crate::sessions::hash_token`]): not revoked, used within `session_ttl`.
///
/// This runs on every session-cache miss, so it is written with diesel's query builder:
/// its SQL is fixed, and diesel keeps it prepared per connection (a `sql_query` would be
/// parsed and planned again each time, which costs more than running it). The shown
/// status is the same rule, through the diesel binding of `presence_shown_online`.
pub fn find_live_session(
    conn: &mut PgConnection,
    token_hash: &[u8],
    window: TimeDelta,
    session_ttl: TimeDelta,
) -> QueryResult<Option<LiveSession>> {
    use crate::schema::{sessions, users};
    use diesel::dsl::now;
    use diesel::prelude::*;

    let shown_online = presence_shown_online(
        users::online_status,
        users::last_seen,
        window.into_sql::<Interval>(),
    );
    #[derive(Queryable)]
    struct Row {
        session_id: i64,
        stored_status: OnlineStatus,
        shown_online: Option<bool>,
        id: i64,
        username: String,
        is_admin: bool,
        last_seen: Option<DateTime<Utc>>,
        created_at: DateTime<Utc>,
    }
    let row: Option<Row> = sessions::table
        .inner_join(users::table)
        .filter(sessions::token_hash.eq(token_hash))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::last_seen.ge(now.into_sql::<Timestamptz>() - session_ttl))
        .select((
            sessions::id,
            users::online_status,
            shown_online,
            users::id,
            users::username,
            users::is_admin,
            users::last_seen,
            users::created_at,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(|row| LiveSession {
        session_id: row.session_id,
        stored_status: row.stored_status,
        user: User {
            id: row.id,
            username: row.username,
            is_admin: row.is_admin,
            online_status: if row.shown_online == Some(true) {
                OnlineStatus::Online
            } else {
                OnlineStatus::Offline
            },
            last_seen: row.last_seen,
            created_at: row.created_at,
        },
    }))
}

/// Writes deferred activity: `touches` are (session id, when), at most one per session,
/// taken by `replica` at `flushed_through`, and records that promise in
/// `activity_flushes` in the same transaction (see [`mark_inactive_users_offline`]).
///
/// Each user gets the latest `last_seen` of their touched sessions, unless a write since
/// (a logout, say) left a later one; the flag is never changed here, so a flush cannot
/// bring anyone online. Revoked sessions are skipped. A session row is only rewritten
/// once its stored `last_seen` lags by `session_granularity`: its `last_seen` serves the
/// session TTL and "is another session live?", which need no finer grain, and skipping
/// those writes halves the rows a flush writes. Users are written before sessions, the
/// lock order of every presence write. Returns the number of users written.
pub fn flush_last_seen(
    conn: &mut PgConnection,
    replica: &str,
    flushed_through: DateTime<Utc>,
    touches: &[(i64, DateTime<Utc>)],
    session_granularity: TimeDelta,
) -> QueryResult<usize> {
    let (ids, ats): (Vec<i64>, Vec<DateTime<Utc>>) = touches.iter().copied().unzip();
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
               SELECT s.user_id, max(t.at) AS at \
               FROM unnest($1::bigint[], $2::timestamptz[]) AS t(session_id, at) \
               JOIN sessions s ON s.id = t.session_id WHERE s.revoked_at IS NULL \
               GROUP BY s.user_id) \
             UPDATE users u SET last_seen = latest.at, changed_at = now() FROM latest \
             WHERE u.id = latest.user_id AND (u.last_seen IS NULL OR u.last_seen < latest.at)",
        )
        .bind::<Array<BigInt>, _>(&ids)
        .bind::<Array<Timestamptz>, _>(&ats)
        .execute(conn)?;
        sql_query(
            "UPDATE sessions s SET last_seen = t.at \
             FROM unnest($1::bigint[], $2::timestamptz[]) AS t(session_id, at) \
             WHERE s.id = t.session_id AND s.revoked_at IS NULL AND t.at - s.last_seen >= $3",
        )
        .bind::<Array<BigInt>, _>(&ids)
        .bind::<Array<Timestamptz>, _>(&ats)
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

/// A name unique to this process and start, `role-host-pid-nonce`, for the rows and
/// queues a replica owns. A restarted container has the same host name and pid, so the
/// nonce makes every start distinct.
pub fn replica_name(role: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{role}-{host}-{}-{nonce:08x}", std::process::id())
}
