//! What an API replica hears of other replicas' writes, over PostgreSQL `LISTEN` on a
//! connection of its own: revoked sessions (announced by `sessions`) and users whose rows
//! were written (announced by the trigger of migration `000012`, whoever wrote them).
//! PostgreSQL is the one place either can happen, so this holds whatever Redis does.

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;

use crate::Error;
use crate::ids::UserId;
use crate::schema::sessions;
use crate::sessions::{REVOCATIONS_CHANNEL, decode_hex};

/// The channel the users' trigger announces written ids on.
pub const USER_FACTS_CHANNEL: &str = "user_facts_changed";

/// What was announced since the last poll.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Heard {
    /// The token hashes of revoked sessions.
    pub revoked: Vec<Vec<u8>>,
    /// Users whose rows were written.
    pub users: Vec<UserId>,
}

/// A dedicated connection listening on both channels. Not pooled, since it must stay
/// open between polls.
pub struct Listener {
    conn: PgConnection,
}

impl Listener {
    pub fn connect(database_url: &str) -> Result<Self, Error> {
        let mut conn = PgConnection::establish(database_url)?;
        for channel in [REVOCATIONS_CHANNEL, USER_FACTS_CHANNEL] {
            // LISTEN is a statement with no DSL form.
            diesel::sql_query(format!("LISTEN {channel}")).execute(&mut conn)?;
        }
        Ok(Self { conn })
    }

    /// What was announced since the last call; never blocks. An error means the
    /// connection is lost: connect again, catch up on revocations with
    /// [`Self::revoked_since`], and trust nothing remembered of users from before.
    pub fn poll(&mut self) -> QueryResult<Heard> {
        let mut heard = Heard::default();
        for notification in self.conn.notifications_iter() {
            let notification = notification?;
            if notification.channel == USER_FACTS_CHANNEL {
                heard
                    .users
                    .extend(notification.payload.parse::<UserId>().ok());
            } else {
                heard.revoked.extend(decode_hex(&notification.payload));
            }
        }
        Ok(heard)
    }

    /// A round trip that proves the connection is alive, answering the database's clock.
    pub fn database_time(&mut self) -> QueryResult<DateTime<Utc>> {
        diesel::select(diesel::dsl::now.into_sql::<diesel::sql_types::Timestamptz>())
            .get_result(&mut self.conn)
    }

    /// [`crate::clock::calibrate`] on this connection.
    pub fn calibrate_clock(&mut self) -> QueryResult<chrono::TimeDelta> {
        crate::clock::calibrate(&mut self.conn)
    }

    /// Token hashes of the sessions revoked at or after `since` (database clock): the
    /// announcements a replica may have missed while it was not listening.
    pub fn revoked_since(&mut self, since: DateTime<Utc>) -> QueryResult<Vec<Vec<u8>>> {
        sessions::table
            .filter(sessions::revoked_at.ge(since))
            .select(sessions::token_hash)
            .load(&mut self.conn)
    }
}
