//! Users: registration, login, admins, and the user rows readers see.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use chrono::{DateTime, TimeDelta, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Bool, Interval, Nullable, Text, Timestamptz};
use serde::Serialize;

use crate::error::ValidationError;
use crate::events::ChangeReason;
use crate::presence::{self, Connectivity, OnlineStatus};
use crate::schema::users;
use crate::sessions::{self, SessionToken};
use crate::settings::Timings;
use crate::status::{Presence, ShownRow, UserStatus, Viewer, shown_columns};
use crate::{DbPool, Error};

/// A user as the API shows them: the account (never the password hash) and the status
/// object as the viewer is shown it (see [`crate::status`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub username: String,
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
    #[serde(flatten)]
    pub status: UserStatus,
}

/// A user row as read, before a viewer is known.
#[derive(Debug, Clone, QueryableByName)]
pub struct UserRow {
    #[diesel(sql_type = Text)]
    username: String,
    #[diesel(sql_type = Bool)]
    is_admin: bool,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(embed)]
    shown: ShownRow,
}

impl UserRow {
    pub fn shown_to(&self, viewer: Viewer) -> User {
        User {
            username: self.username.clone(),
            is_admin: self.is_admin,
            created_at: self.created_at,
            status: self.shown.shown_to(viewer),
        }
    }
}

/// One user, as `viewer` is shown them; `None` for an unknown id.
pub fn user(
    conn: &mut PgConnection,
    timings: Timings,
    user_id: i64,
    viewer: Viewer,
) -> QueryResult<Option<User>> {
    let row: Option<UserRow> = diesel::sql_query(concat!(
        "SELECT username, is_admin, created_at, ",
        shown_columns!("now()"),
        " FROM users WHERE id = $3"
    ))
    .bind::<Interval, _>(timings.window())
    .bind::<Interval, _>(timings.away_after())
    .bind::<diesel::sql_types::BigInt, _>(user_id)
    .get_result(conn)
    .optional()?;
    Ok(row.map(|row| row.shown_to(viewer)))
}

pub const USERNAME_MAX_CHARS: usize = 150;
pub const PASSWORD_MIN_CHARS: usize = 8;
/// Long enough for any passphrase, short enough that hashing it is no denial of service.
pub const PASSWORD_MAX_CHARS: usize = 1024;

/// 3–150 letters, digits and `@ . + - _` (Django's rule, which the frontend already follows).
/// Whether `c` may appear in a username.
fn username_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "@.+-_".contains(c)
}

pub fn validate_username(username: &str) -> Result<(), ValidationError> {
    let chars = username.chars().count();
    if !(3..=USERNAME_MAX_CHARS).contains(&chars) {
        return Err(ValidationError::new(
            "username",
            format!("must be 3 to {USERNAME_MAX_CHARS} characters long"),
        ));
    }
    if !username.chars().all(username_char) {
        return Err(ValidationError::new(
            "username",
            "may contain only letters, digits and @ . + - _",
        ));
    }
    Ok(())
}

pub fn validate_password(password: &str) -> Result<(), ValidationError> {
    let chars = password.chars().count();
    if chars < PASSWORD_MIN_CHARS {
        return Err(ValidationError::new(
            "password",
            format!("must be at least {PASSWORD_MIN_CHARS} characters long"),
        ));
    }
    if chars > PASSWORD_MAX_CHARS {
        return Err(ValidationError::new(
            "password",
            format!("must be at most {PASSWORD_MAX_CHARS} characters long"),
        ));
    }
    Ok(())
}

/// Argon2id with the crate's defaults (m=19456 KiB, t=2, p=1), as a PHC string.
fn hash_password(password: &str) -> Result<String, Error> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| Error::PasswordHash(e.to_string()))
}

fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// Verified against when the username is unknown, so that a wrong username costs the same
/// time as a wrong password and response times do not reveal which usernames exist.
static UNKNOWN_USER_HASH: LazyLock<Option<String>> =
    LazyLock::new(|| hash_password("not-a-real-password").ok());

diesel::define_sql_function!(fn lower(x: Text) -> Text);

fn username_taken(conn: &mut PgConnection, username: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        users::table.filter(lower(users::username).eq(lower(username))),
    ))
    .get_result(conn)
}

/// Creates a user. A taken name is refused before the password is hashed (hashing is the
/// expensive part; the unique index still settles a race), and no pool connection is held
/// while hashing.
pub fn register(
    pool: &DbPool,
    timings: Timings,
    username: &str,
    password: &str,
) -> Result<User, Error> {
    validate_username(username)?;
    validate_password(password)?;
    if username_taken(&mut *pool.get()?, username)? {
        return Err(Error::UsernameTaken);
    }
    let password_hash = hash_password(password)?;
    let mut conn = pool.get()?;
    let id: i64 = diesel::insert_into(users::table)
        .values((
            users::username.eq(username),
            users::password_hash.eq(password_hash),
        ))
        .returning(users::id)
        .get_result(&mut conn)
        .map_err(|e| match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                Error::UsernameTaken
            }
            e => Error::from(e),
        })?;
    let viewer = Viewer {
        user_id: id,
        is_admin: false,
    };
    user(&mut conn, timings, id, viewer)?.ok_or(Error::UnknownUser(id))
}

/// A successful login: the new session's token, the user as they see themselves, and
/// what others were told.
#[derive(Debug)]
pub struct LoggedIn {
    pub token: SessionToken,
    pub session_id: i64,
    pub user: User,
    pub update: presence::PresenceUpdate,
}

/// Checks the password, opens a session and marks the user online.
///
/// Unknown usernames and wrong passwords fail alike, in about the same time. No pool
/// connection is held while the password hash is checked (~50 ms by design).
pub fn log_in(
    pool: &DbPool,
    timings: Timings,
    username: &str,
    password: &str,
) -> Result<LoggedIn, Error> {
    validate_username(username)?;
    let found: Option<(i64, String)> = users::table
        .filter(lower(users::username).eq(lower(username)))
        .select((users::id, users::password_hash))
        .first(&mut pool.get()?)
        .optional()?;
    let (user_id, verified) = match &found {
        Some((id, hash)) => (*id, verify_password(password, hash)),
        None => {
            if let Some(hash) = UNKNOWN_USER_HASH.as_deref() {
                verify_password(password, hash);
            }
            (0, false)
        }
    };
    if !verified {
        return Err(Error::InvalidCredentials);
    }
    open_session(&mut *pool.get()?, timings, user_id)?.ok_or(Error::InvalidCredentials)
}

/// The second half of a login, once the password is verified: opens a session and marks
/// the user online, in one transaction that locks the user's row first. `None` if the user
/// was deleted meanwhile.
///
/// Locking first matters: inserting the session takes a share lock on the user row (its
/// foreign key), and a share lock held while waiting to upgrade it is how two logins of
/// one user deadlocked.
pub fn open_session(
    conn: &mut PgConnection,
    timings: Timings,
    user_id: i64,
) -> Result<Option<LoggedIn>, Error> {
    let token = SessionToken::generate()?;
    let viewer = Viewer {
        user_id,
        is_admin: false,
    };
    crate::db::transaction(conn, |conn| {
        if presence::lock_user(conn, user_id)?.is_none() {
            return Ok(None);
        }
        let session_id = sessions::create(conn, user_id, &token)?;
        sessions::revoke_beyond_limit(conn, user_id)?;
        let connected = Connectivity::Connected { active: true };
        let update =
            presence::write_presence(conn, timings, user_id, connected, ChangeReason::Login)?;
        let user = user(conn, timings, user_id, viewer)?;
        Ok(user.map(|user| (session_id, user, update)))
    })
    .map(|opened| {
        opened.map(|(session_id, user, update)| LoggedIn {
            token,
            session_id,
            user,
            update,
        })
    })
    .map_err(Into::into)
}

/// Makes `username` an admin, creating the user with `password` if there is none.
/// Returns the user id and whether the user was created (an existing password is kept).
pub fn create_or_promote_admin(
    pool: &DbPool,
    username: &str,
    password: &str,
) -> Result<(i64, bool), Error> {
    validate_username(username)?;
    let promoted: Option<i64> =
        diesel::update(users::table.filter(lower(users::username).eq(lower(username))))
            .set(users::is_admin.eq(true))
            .returning(users::id)
            .get_result(&mut pool.get()?)
            .optional()?;
    if let Some(id) = promoted {
        return Ok((id, false));
    }
    validate_password(password)?;
    let password_hash = hash_password(password)?;
    let id = diesel::insert_into(users::table)
        .values((
            users::username.eq(username),
            users::password_hash.eq(password_hash),
            users::is_admin.eq(true),
        ))
        .returning(users::id)
        .get_result(&mut pool.get()?)?;
    Ok((id, true))
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
    /// Only users whose shown status or `last_seen` may have changed since then.
    pub changed_since: Option<DateTime<Utc>>,
    /// Only users with a greater id: the cursor of the previous page.
    pub after_id: Option<i64>,
    pub limit: i64,
}

/// A page of users, and the database time it was read at (the `changed_since` to ask
/// for next time).
#[derive(Debug, Clone)]
pub struct UserPage {
    pub users: Vec<User>,
    pub as_of: DateTime<Utc>,
    /// Where the next page starts, if this one is full.
    pub next_after_id: Option<i64>,
}

/// How far before `changed_since` a changes query looks: a write that committed after the
/// previous page was read can carry a `changed_at` a little older than that page's
/// `as_of` (its transaction started first). Rows seen twice are harmless; missed are not.
pub const CHANGED_SINCE_SLACK: TimeDelta = TimeDelta::seconds(5);

/// Users ordered by id, filtered by `query` on the truth (this is the admins' list), as
/// `viewer` is shown them. A changes query (`changed_since`) costs in proportion to
/// the changes: it reads the `changed_at` index, plus the users whom time alone moved
/// since then, with no write at all: connected users whose `last_seen` crossed the
/// window's edge or whose `active_at` crossed the away edge (the partial indexes of
/// connected users), and manual or custom statuses that ended.
pub fn list_users(
    conn: &mut PgConnection,
    timings: Timings,
    viewer: Viewer,
    query: &UserQuery,
) -> QueryResult<UserPage> {
    // A name prefix no username can start with matches nothing (and a NUL in it could
    // not even be sent to PostgreSQL).
    let impossible = query
        .name_prefix
        .as_deref()
        .is_some_and(|prefix| !prefix.chars().all(username_char));
    conn.transaction(|conn| {
        if impossible {
            let as_of =
                diesel::select(diesel::dsl::now.into_sql::<Timestamptz>()).get_result(conn)?;
            return Ok(UserPage {
                users: Vec::new(),
                as_of,
                next_after_id: None,
            });
        }
        let rows: Vec<UserRow> = diesel::sql_query(concat!(
            "SELECT username, is_admin, created_at, ",
            shown_columns!("now()"),
            " FROM users WHERE id > $3 AND ($4::timestamptz IS NULL \
               OR changed_at > $4::timestamptz - $6 \
               OR presence_went_offline_since(online_status, last_seen, $1, \
                                              $4::timestamptz - $6) \
               OR (online_status = 'online' AND active_at >= $4::timestamptz - $6 - $2 \
                   AND active_at < now() - $2) \
               OR availability_until BETWEEN $4::timestamptz - $6 AND now() \
               OR status_expires_at BETWEEN $4::timestamptz - $6 AND now()) \
             AND ($7::text IS NULL OR $7 = 'offline' \
                  OR presence_shown_online(online_status, last_seen, $1)) \
             AND ($7::text IS NULL \
                  OR (presence_of(",
            crate::status::presence_args!("now()"),
            ") <> 'offline') = ($7 = 'online')) \
             AND ($8::text IS NULL OR $8 = 'offline' \
                  OR presence_shown_online(online_status, last_seen, $1)) \
             AND ($8::text IS NULL OR presence_of(",
            crate::status::presence_args!("now()"),
            ") = $8) \
             AND ($9::text IS NULL OR lower(username) LIKE $9) \
             ORDER BY id LIMIT $5"
        ))
        .bind::<Interval, _>(timings.window())
        .bind::<Interval, _>(timings.away_after())
        .bind::<diesel::sql_types::BigInt, _>(query.after_id.unwrap_or(0))
        .bind::<Nullable<Timestamptz>, _>(query.changed_since)
        .bind::<diesel::sql_types::BigInt, _>(query.limit)
        .bind::<Interval, _>(CHANGED_SINCE_SLACK)
        .bind::<Nullable<Text>, _>(query.status)
        .bind::<Nullable<Text>, _>(query.presence)
        .bind::<Nullable<Text>, _>(query.name_prefix.as_deref().map(like_prefix))
        .load(conn)?;
        let users: Vec<User> = rows.iter().map(|row| row.shown_to(viewer)).collect();
        let as_of = diesel::select(diesel::dsl::now.into_sql::<Timestamptz>()).get_result(conn)?;
        let full = i64::try_from(rows.len()).is_ok_and(|n| n == query.limit);
        let next_after_id = full.then(|| rows.last().map(|row| row.shown.id)).flatten();
        Ok(UserPage {
            users,
            as_of,
            next_after_id,
        })
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

    #[test]
    fn usernames_follow_the_rule() {
        for ok in ["abc", "a.b+c-d_e@f", &"x".repeat(150), "ABC123"] {
            assert_eq!(validate_username(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ab",
            "",
            &"x".repeat(151),
            "white space",
            "émile",
            "a/b",
            "a\0b",
        ] {
            assert_eq!(
                validate_username(bad).unwrap_err().field,
                "username",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn passwords_have_bounds() {
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password(&"p".repeat(PASSWORD_MAX_CHARS + 1)).is_err());
    }

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a phc string"));
    }
}
