//! Session rows: one per device or tab, each with its own bearer token; found, touched,
//! created and capped here, ended in [`crate::sessions`].
//!
//! A token is 256 random bits, URL-safe base64. Only its SHA-256 is stored: a fast hash is
//! enough for a secret this long, and a leaked table holds no usable token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::Timestamptz;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::ids::{SessionId, UserId};
use crate::schema::sessions;
use crate::views::LiveSession;

/// A freshly issued bearer token. Its `Debug` hides the value so it never reaches a log.
pub struct SessionToken(String);

impl SessionToken {
    pub(crate) fn generate() -> Result<Self, Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// SHA-256 of a bearer token: how sessions are stored, and how to key a cache of them
/// without keeping the tokens themselves.
pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[derive(Debug, Clone, Copy, Queryable)]
pub(crate) struct Session {
    pub(crate) id: SessionId,
    pub(crate) user_id: UserId,
}

pub(crate) fn create(
    conn: &mut PgConnection,
    user_id: UserId,
    token: &SessionToken,
) -> QueryResult<SessionId> {
    diesel::insert_into(sessions::table)
        .values((
            sessions::user_id.eq(user_id),
            sessions::token_hash.eq(hash_token(token.expose())),
        ))
        .returning(sessions::id)
        .get_result(conn)
}

/// The live session whose token hashes to `token_hash`: not revoked, used within `ttl`.
/// Reads without locking: callers lock the user's row next, then [`touch`] the session,
/// which checks again that it is not revoked.
pub(crate) fn find_live(
    conn: &mut PgConnection,
    token_hash: &[u8],
    ttl: TimeDelta,
) -> QueryResult<Option<Session>> {
    let cutoff = diesel::dsl::now.into_sql::<diesel::sql_types::Timestamptz>() - ttl;
    sessions::table
        .filter(sessions::token_hash.eq(token_hash))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::last_seen.ge(cutoff))
        .select((sessions::id, sessions::user_id))
        .first(conn)
        .optional()
}

/// Marks the session as seen now (and really used, if `active`), unless it was revoked
/// meanwhile; returns whether it was.
pub(crate) fn touch(
    conn: &mut PgConnection,
    session_id: SessionId,
    active: bool,
) -> QueryResult<bool> {
    let target = sessions::table
        .find(session_id)
        .filter(sessions::revoked_at.is_null());
    let now = diesel::dsl::now;
    let rows = if active {
        diesel::update(target)
            .set((sessions::last_seen.eq(now), sessions::active_at.eq(now)))
            .execute(conn)?
    } else {
        diesel::update(target)
            .set(sessions::last_seen.eq(now))
            .execute(conn)?
    };
    Ok(rows == 1)
}

/// Finds the live session whose token hashes to `token_hash` (see
/// [`hash_token`]): not revoked, used within `session_ttl`.
pub fn find_live_session(
    conn: &mut PgConnection,
    token_hash: &[u8],
    session_ttl: TimeDelta,
) -> QueryResult<Option<LiveSession>> {
    let found = find_live_sessions(conn, &[token_hash.to_vec()], session_ttl)?;
    Ok(found.into_iter().next().map(|(_, live)| live))
}

/// The live sessions among `token_hashes`, each with its hash, as [`find_live_session`]
/// finds one: a replica that thousands of clients reach at once (a reconnect storm after
/// another replica died) looks their sessions up a batch at a time, not one query each.
///
/// This runs on every session-cache miss, so it is written with diesel's query builder:
/// its SQL is fixed (`= ANY($1)` whatever the count), and diesel keeps it prepared per
/// connection (a `sql_query` would be parsed and planned again each time, which costs
/// more than running it).
pub fn find_live_sessions(
    conn: &mut PgConnection,
    token_hashes: &[Vec<u8>],
    session_ttl: TimeDelta,
) -> QueryResult<Vec<(Vec<u8>, LiveSession)>> {
    use crate::schema::{sessions, users};
    use diesel::dsl::now;
    use diesel::prelude::*;

    sessions::table
        .inner_join(users::table)
        .filter(sessions::token_hash.eq_any(token_hashes))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::last_seen.ge(now.into_sql::<Timestamptz>() - session_ttl))
        .select((
            sessions::token_hash,
            (
                sessions::id,
                users::id,
                users::is_admin,
                users::online_status,
                users::last_seen,
                users::active_at,
            ),
        ))
        .load(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_url_safe_and_distinct() {
        let a = SessionToken::generate().unwrap();
        let b = SessionToken::generate().unwrap();
        assert_eq!(a.expose().len(), 43);
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a.expose(), b.expose());
        assert_eq!(format!("{a:?}"), "SessionToken(<redacted>)");
    }

    #[test]
    fn stores_sha256_of_token() {
        assert_eq!(hash_token("abc").len(), 32);
        assert_ne!(hash_token("abc"), hash_token("abd"));
    }
}
