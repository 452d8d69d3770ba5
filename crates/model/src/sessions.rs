//! Ending sessions: logout, logout everywhere, and the revocations every API replica hears
//! (`NOTIFY` in the ending transaction, `LISTEN` on a connection of its own).

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bytea, Text};

use crate::ids::{SessionId, UserId};
use crate::presence::{self, Connectivity, PresenceWritten};
use crate::schema::sessions;
use crate::settings::Timings;
use crate::vocabulary::ChangeReason;

/// The PostgreSQL channel on which every revocation is announced, in the revoking
/// transaction, with the hex SHA-256 of the token as payload. A NOTIFY is delivered when
/// the transaction commits, to every listening API replica, whatever Redis does.
pub const REVOCATIONS_CHANNEL: &str = "presence_revoked";

/// What a logout did.
#[derive(Debug)]
pub struct LoggedOut {
    /// The user's presence write: offline if no other session of theirs was connected.
    pub presence: PresenceWritten,
}

/// Logout: revokes this session only, announces the revocation on
/// [`REVOCATIONS_CHANNEL`], and marks the user offline unless another session of theirs
/// is connected (seen within the window); then the sessions left decide whether the user
/// is active. `None` if the session does not exist or was already revoked.
///
/// The user's row is locked before the session is revoked (the lock order of every
/// presence write), so of two sessions logging out at once the second sees the first's
/// revocation and takes the user offline.
pub fn log_out(
    conn: &mut PgConnection,
    timings: Timings,
    session_id: SessionId,
) -> QueryResult<Option<LoggedOut>> {
    crate::db::transaction(conn, |conn| {
        let Some(user_id) = sessions::table
            .find(session_id)
            .select(sessions::user_id)
            .first::<UserId>(conn)
            .optional()?
        else {
            return Ok(None);
        };
        if presence::lock_user(conn, user_id)?.is_none() {
            return Ok(None);
        }
        let Some(token_hash) = diesel::update(
            sessions::table
                .find(session_id)
                .filter(sessions::revoked_at.is_null()),
        )
        .set(sessions::revoked_at.eq(diesel::dsl::now))
        .returning(sessions::token_hash)
        .get_result::<Vec<u8>>(conn)
        .optional()?
        else {
            return Ok(None);
        };
        announce_revocations(conn, &[token_hash])?;
        let cutoff =
            diesel::dsl::now.into_sql::<diesel::sql_types::Timestamptz>() - timings.window();
        let another_live: bool = diesel::select(diesel::dsl::exists(
            sessions::table
                .filter(sessions::user_id.eq(user_id))
                .filter(sessions::revoked_at.is_null())
                .filter(sessions::last_seen.ge(cutoff)),
        ))
        .get_result(conn)?;
        let connection = if another_live {
            Connectivity::Unchanged
        } else {
            Connectivity::Disconnected
        };
        let update =
            presence::write_presence(conn, timings, user_id, connection, ChangeReason::Logout)?;
        Ok(Some(LoggedOut { presence: update }))
    })
}

/// Logout everywhere: revokes every session of the user, announces each revocation, and
/// marks the user offline. `None` if the user does not exist.
pub fn log_out_everywhere(
    conn: &mut PgConnection,
    timings: Timings,
    user_id: UserId,
) -> QueryResult<Option<LoggedOut>> {
    crate::db::transaction(conn, |conn| {
        if presence::lock_user(conn, user_id)?.is_none() {
            return Ok(None);
        }
        let revoked: Vec<Vec<u8>> = diesel::update(
            sessions::table
                .filter(sessions::user_id.eq(user_id))
                .filter(sessions::revoked_at.is_null()),
        )
        .set(sessions::revoked_at.eq(diesel::dsl::now))
        .returning(sessions::token_hash)
        .get_results(conn)?;
        announce_revocations(conn, &revoked)?;
        let update = presence::write_presence(
            conn,
            timings,
            user_id,
            Connectivity::Disconnected,
            ChangeReason::Logout,
        )?;
        Ok(Some(LoggedOut { presence: update }))
    })
}

/// The most live sessions a user holds: opening one more revokes the least recently used
/// (a client that logs in on every start and never logs out cannot pile up sessions).
pub const MAX_SESSIONS_PER_USER: i64 = 100;

/// Revokes the user's sessions beyond the [`MAX_SESSIONS_PER_USER`] most recently used,
/// announcing each; in the caller's transaction, with the user's row locked.
pub(crate) fn revoke_beyond_limit(conn: &mut PgConnection, user_id: UserId) -> QueryResult<usize> {
    let beyond: Vec<SessionId> = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::revoked_at.is_null())
        .order((sessions::last_seen.desc(), sessions::id.desc()))
        .offset(MAX_SESSIONS_PER_USER)
        .select(sessions::id)
        .load(conn)?;
    if beyond.is_empty() {
        return Ok(0);
    }
    let revoked: Vec<Vec<u8>> =
        diesel::update(sessions::table.filter(sessions::id.eq_any(&beyond)))
            .set(sessions::revoked_at.eq(diesel::dsl::now))
            .returning(sessions::token_hash)
            .get_results(conn)?;
    announce_revocations(conn, &revoked)?;
    Ok(revoked.len())
}

/// Announces revoked tokens (by hash) on [`REVOCATIONS_CHANNEL`], delivered at commit.
fn announce_revocations(conn: &mut PgConnection, token_hashes: &[Vec<u8>]) -> QueryResult<()> {
    if token_hashes.is_empty() {
        return Ok(());
    }
    // One notification per hash in one round trip: a select from `unnest`, which the DSL
    // cannot say.
    diesel::sql_query("SELECT pg_notify($1, encode(h, 'hex')) FROM unnest($2::bytea[]) AS h")
        .bind::<Text, _>(REVOCATIONS_CHANNEL)
        .bind::<diesel::sql_types::Array<Bytea>, _>(token_hashes)
        .execute(conn)
        .map(drop)
}

pub(crate) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_payloads_decode_as_postgres_encodes_them() {
        assert_eq!(decode_hex("00ff7a"), Some(vec![0, 255, 0x7a]));
        assert_eq!(decode_hex(""), Some(vec![]));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
    }
}
