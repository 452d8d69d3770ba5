//! Accounts: registration, login (which opens a session), admins, and the user as they
//! see themselves.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::Timestamptz;
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::facts::UserFacts;
use crate::ids::{SessionId, UserId};
use crate::presence::{self, Connectivity};
use crate::schema::users;
use crate::sessions;
use crate::settings::Timings;
use crate::shown::ShownRow;
use crate::sql::lower;
use crate::tokens::{self, SessionToken};
use crate::views::OwnStatus;
use crate::vocabulary::ChangeReason;
use crate::{DbPool, Error};

/// A user's account as the API shows it (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Account {
    pub username: String,
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
}

/// The caller themselves: their account and their own status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    #[serde(flatten)]
    pub account: Account,
    #[serde(flatten)]
    pub status: OwnStatus,
}

impl Me {
    pub fn id(&self) -> UserId {
        self.status.status.id
    }
}

/// A user as stored: their account and their presence facts, before a time or a viewer
/// is applied (what an API replica caches for `/me`).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct UserRecord {
    #[diesel(embed)]
    pub account: Account,
    #[diesel(embed)]
    pub facts: UserFacts,
}

impl UserRecord {
    /// What the user's facts show at `at`, to every kind of viewer.
    pub fn shown_at(&self, timings: Timings, at: DateTime<Utc>) -> ShownRow {
        ShownRow::from_facts(&self.facts, timings, at)
    }

    /// The user as they are shown themselves at `at`.
    pub fn me(&self, timings: Timings, at: DateTime<Utc>) -> Me {
        Me {
            account: self.account.clone(),
            status: self.shown_at(timings, at).shown_to_self(),
        }
    }
}

/// A user as they are shown themselves; `None` for an unknown id.
pub fn me(conn: &mut PgConnection, timings: Timings, user_id: UserId) -> QueryResult<Option<Me>> {
    let read: Option<(UserRecord, DateTime<Utc>)> = users::table
        .find(user_id)
        .select((
            UserRecord::as_select(),
            diesel::dsl::now.into_sql::<Timestamptz>(),
        ))
        .get_result(conn)
        .optional()?;
    Ok(read.map(|(record, at)| record.me(timings, at)))
}

/// The records of `ids`, unknown ids left out, in no order: what a replica caches.
pub fn user_records(conn: &mut PgConnection, ids: &[UserId]) -> QueryResult<Vec<UserRecord>> {
    users::table
        .filter(users::id.eq_any(ids))
        .select(UserRecord::as_select())
        .load(conn)
}

pub const USERNAME_MAX_CHARS: usize = 150;
pub const PASSWORD_MIN_CHARS: usize = 8;
/// Long enough for any passphrase, short enough that hashing it is no denial of service.
pub const PASSWORD_MAX_CHARS: usize = 1024;

/// 3–150 letters, digits and `@ . + - _` (Django's rule, which the frontend already follows).
/// Whether `c` may appear in a username.
pub(crate) fn username_char(c: char) -> bool {
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
) -> Result<Me, Error> {
    validate_username(username)?;
    validate_password(password)?;
    if username_taken(&mut *pool.get()?, username)? {
        return Err(Error::UsernameTaken);
    }
    let password_hash = hash_password(password)?;
    let mut conn = pool.get()?;
    let id: UserId = diesel::insert_into(users::table)
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
    me(&mut conn, timings, id)?.ok_or(Error::UnknownUser(id))
}

/// A successful login: the new session's token, the user as they see themselves, and
/// what others were told.
#[derive(Debug)]
pub struct LoggedIn {
    pub token: SessionToken,
    pub session_id: SessionId,
    pub user: Me,
    pub presence: presence::PresenceWritten,
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
    let found: Option<(UserId, String)> = users::table
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
            (UserId(0), false)
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
    user_id: UserId,
) -> Result<Option<LoggedIn>, Error> {
    let token = SessionToken::generate()?;
    crate::db::transaction(conn, |conn| {
        if presence::lock_user(conn, user_id)?.is_none() {
            return Ok(None);
        }
        let session_id = tokens::create(conn, user_id, &token)?;
        sessions::revoke_beyond_limit(conn, user_id)?;
        let connected = Connectivity::Connected { active: true };
        let update =
            presence::write_presence(conn, timings, user_id, connected, ChangeReason::Login)?;
        let user = me(conn, timings, user_id)?;
        Ok(user.map(|user| (session_id, user, update)))
    })
    .map(|opened| {
        opened.map(|(session_id, user, update)| LoggedIn {
            token,
            session_id,
            user,
            presence: update,
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
) -> Result<(UserId, bool), Error> {
    validate_username(username)?;
    let promoted: Option<UserId> =
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

#[cfg(test)]
mod tests {
    use super::*;

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
