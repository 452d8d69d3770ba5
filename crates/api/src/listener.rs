//! The replica's ear on PostgreSQL: one connection `LISTEN`ing for what any replica
//! announces (`presence_model::notifications`): revoked sessions, which the session cache
//! evicts and whose streams end, and written users, which the presence cache forgets.
//! PostgreSQL is the one place either can happen, so this holds whatever Redis does. A
//! replica whose listening connection dropped keeps its cached sessions (so they keep
//! working through a PostgreSQL outage, when nobody can revoke) and, once reconnected,
//! evicts every session revoked since it last heard from PostgreSQL before trusting
//! anything again; it trusts nothing it remembers of users until it hears again.

use std::time::{Duration, Instant};

use actix_web::web;
use chrono::{DateTime, TimeDelta, Utc};
use presence_model::ids::UserId;
use presence_model::notifications::Listener;

/// How often the listener reads announcements off its connection.
pub const POLL: Duration = Duration::from_millis(50);
/// How often the listener proves its connection alive with a round trip.
const CHECK: Duration = Duration::from_millis(500);
/// How far before its last sign of life a reconnecting listener looks for revocations,
/// for transactions that committed late with an earlier `revoked_at`.
const REVOCATION_CATCH_UP_SLACK: TimeDelta = TimeDelta::seconds(10);

/// What the listener tells its owner.
pub trait Announcements {
    /// A session was revoked (here or on another replica), or may have been while the
    /// listener was not connected.
    fn revoked(&self, token_hash: &[u8]);
    /// These users' rows were written (here or on another replica).
    fn users_written(&self, ids: &[UserId]);
    /// Whether the listener hears every write from now on (`true` once connected and
    /// caught up) or may miss some (`false` once its connection is lost): what is
    /// remembered of users is to be trusted only while it does.
    fn hearing(&self, hearing: bool);
    /// The database's clock was read: how far this machine's is off it.
    fn clock_offset(&self, offset: TimeDelta);
}

/// Keeps this replica listening on `database_url` for what any replica announces,
/// telling `sink` of each. Reconnects after losing PostgreSQL, catching up on the
/// revocations it may have missed meanwhile.
pub async fn listen(sink: impl Announcements, database_url: String) {
    // Sessions may be cached before the first connection listens: it catches up from here.
    let started = Instant::now();
    // The database's clock at the listener's last sign of life.
    let mut alive_at: Option<DateTime<Utc>> = None;
    loop {
        let url = database_url.clone();
        match web::block(move || Listener::connect(&url)).await {
            Ok(Ok(listener)) => {
                let lost = listen_on(&sink, listener, started, &mut alive_at).await;
                sink.hearing(false);
                log::warn!("the listener lost PostgreSQL: {lost}");
            }
            Ok(Err(e)) => log::debug!("the listener cannot connect: {e}"),
            Err(e) => log::error!("the listener did not run: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Listens on one connection until it fails, and returns why. Before the first poll,
/// evicts what was revoked since `alive_at`, or, on the first connection, since the
/// process `started` listening (requests may have cached sessions before it could).
async fn listen_on(
    sink: &impl Announcements,
    listener: Listener,
    started: Instant,
    alive_at: &mut Option<DateTime<Utc>>,
) -> String {
    let since = *alive_at;
    let (mut listener, missed) = match web::block(move || {
        let mut listener = listener;
        let since = match since {
            Some(since) => Ok(since),
            None => listener
                .database_time()
                .map(|now| now - TimeDelta::from_std(started.elapsed()).unwrap_or_default()),
        };
        let missed =
            since.and_then(|since| listener.revoked_since(since - REVOCATION_CATCH_UP_SLACK));
        (listener, missed)
    })
    .await
    {
        Ok((listener, Ok(missed))) => (listener, missed),
        Ok((_, Err(e))) => return e.to_string(),
        Err(e) => return e.to_string(),
    };
    for token_hash in missed {
        sink.revoked(&token_hash);
    }
    // Listening since before the catch-up: every write from here on is heard.
    sink.hearing(true);
    let mut checked = Instant::now() - CHECK;
    loop {
        let check = checked.elapsed() >= CHECK;
        let polled = web::block(move || {
            // The round trip that proves the connection alive also reads the database's
            // clock, which every time this process stamps is read by.
            let now = check
                .then(|| {
                    let offset = listener.calibrate_clock()?;
                    listener.database_time().map(|now| (now, offset))
                })
                .transpose();
            let heard = now.and_then(|now| Ok((now, listener.poll()?)));
            (listener, heard)
        })
        .await;
        let (now, heard) = match polled {
            Ok((returned, Ok(polled))) => {
                listener = returned;
                polled
            }
            Ok((_, Err(e))) => return e.to_string(),
            Err(e) => return e.to_string(),
        };
        if let Some((now, offset)) = now {
            *alive_at = Some(now);
            checked = Instant::now();
            sink.clock_offset(offset);
        }
        for token_hash in heard.revoked {
            sink.revoked(&token_hash);
        }
        if !heard.users.is_empty() {
            sink.users_written(&heard.users);
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use presence_model::ids::SessionId;

    use super::*;

    /// What a listener under test heard.
    #[derive(Clone, Default)]
    struct Heard(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

    impl Announcements for Heard {
        fn revoked(&self, token_hash: &[u8]) {
            self.0.lock().unwrap().push(token_hash.to_vec());
        }

        fn users_written(&self, _ids: &[UserId]) {}

        fn hearing(&self, _hearing: bool) {}

        fn clock_offset(&self, _offset: TimeDelta) {}
    }

    impl Heard {
        async fn until_heard(&self, token_hash: &[u8]) -> bool {
            let heard = || self.0.lock().unwrap().iter().any(|h| h == token_hash);
            presence_testkit::eventually(Duration::from_secs(10), async || heard()).await
        }
    }

    /// A session opened on `db`: its id and token hash.
    fn session(db: &presence_model::testing::TestDatabase, name: &str) -> (SessionId, Vec<u8>) {
        use presence_model::testing::{TIMINGS, register};
        let user = register(db, name);
        let mut conn = db.pool().get().unwrap();
        let logged_in = presence_model::users::open_session(&mut conn, TIMINGS, user)
            .unwrap()
            .unwrap();
        let hash = presence_model::tokens::hash_token(logged_in.token.expose());
        (logged_in.session_id, hash)
    }

    #[actix_web::test]
    async fn revocations_made_before_and_after_the_listener_connects_are_heard() {
        use presence_model::testing::TIMINGS;
        let db = presence_model::testing::TestDatabase::new();
        let (before, before_hash) = session(&db, "ada");
        let (after, after_hash) = session(&db, "bob");
        let log_out = |session| {
            let mut conn = db.pool().get().unwrap();
            presence_model::sessions::log_out(&mut conn, TIMINGS, session)
                .unwrap()
                .unwrap();
        };
        // Revoked as the process starts, before its listener could listen: caught up on.
        log_out(before);
        let heard = Heard::default();
        let listener = actix_web::rt::spawn(listen(heard.clone(), db.url().to_owned()));
        assert!(heard.until_heard(&before_hash).await);
        log_out(after);
        assert!(heard.until_heard(&after_hash).await);
        listener.abort();
    }
}
