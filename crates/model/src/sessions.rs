//! Login sessions: one per device or tab, each with its own bearer token.
//!
//! A token is 256 random bits, URL-safe base64. Only its SHA-256 is stored: a fast hash is
//! enough for a secret this long, and a leaked table holds no usable token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::presence::{self, PresenceUpdate};
use crate::schema::sessions;

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
    pub(crate) id: i64,
    pub(crate) user_id: i64,
}

pub(crate) fn create(
    conn: &mut PgConnection,
    user_id: i64,
    token: &SessionToken,
) -> QueryResult<i64> {
    diesel::insert_into(sessions::table)
        .values((
            sessions::user_id.eq(user_id),
            sessions::token_hash.eq(hash_token(token.expose())),
        ))
        .returning(sessions::id)
        .get_result(conn)
}

/// Marks the live session holding `token` as used now (locking its row).
pub(crate) fn touch(
    conn: &mut PgConnection,
    token: &str,
    ttl: TimeDelta,
) -> QueryResult<Option<Session>> {
    let cutoff = diesel::dsl::now.into_sql::<diesel::sql_types::Timestamptz>() - ttl;
    diesel::update(
        sessions::table
            .filter(sessions::token_hash.eq(hash_token(token)))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::last_seen.ge(cutoff)),
    )
    .set(sessions::last_seen.eq(diesel::dsl::now))
    .returning((sessions::id, sessions::user_id))
    .get_result(conn)
    .optional()
}

/// Logout: revokes this session only, then marks the user offline unless another session
/// of theirs was active within `window`. Returns the presence write, if there was one.
pub fn log_out(
    conn: &mut PgConnection,
    session_id: i64,
    window: TimeDelta,
) -> QueryResult<Option<PresenceUpdate>> {
    conn.transaction(|conn| {
        let user_id: Option<i64> = diesel::update(
            sessions::table
                .find(session_id)
                .filter(sessions::revoked_at.is_null()),
        )
        .set(sessions::revoked_at.eq(diesel::dsl::now))
        .returning(sessions::user_id)
        .get_result(conn)
        .optional()?;
        match user_id {
            Some(user_id) => presence::mark_user_offline(conn, user_id, window),
            None => Ok(None),
        }
    })
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
