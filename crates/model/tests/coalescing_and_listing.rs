//! Deferred `last_seen` writes and the paged, changes-only user list.

use chrono::{TimeDelta, Utc};
use presence_model::directory;
use presence_model::directory::UserQuery;
use presence_model::flushes::{self, Flushed, Touch, UserWrites};
use presence_model::ids::{SessionId, UserId};
use presence_model::policy::{FlushGranularity, PresencePolicy};
use presence_model::testing::{TIMINGS, TestDatabase, register};
use presence_model::tokens;
use presence_model::users;
use presence_model::{OnlineStatus, presence, sessions};

const TTL: TimeDelta = TimeDelta::days(30);
const FLUSH: TimeDelta = TimeDelta::seconds(10);

fn policy() -> PresencePolicy {
    PresencePolicy::new(TIMINGS, FLUSH, TimeDelta::seconds(30)).unwrap()
}

fn logged_in(db: &TestDatabase, name: &str) -> users::LoggedIn {
    register(db, name);
    users::log_in(db.pool(), TIMINGS, name, "password123").unwrap()
}

/// The same granularity for users and sessions.
fn both(granularity: TimeDelta) -> FlushGranularity {
    FlushGranularity {
        users: granularity,
        sessions: granularity,
    }
}

fn touch(session_id: SessionId, at: chrono::DateTime<Utc>) -> Touch {
    Touch {
        session_id,
        seen_at: at,
        active_at: Some(at),
    }
}

#[test]
fn live_sessions_are_found_without_writing() {
    let db = TestDatabase::new();
    let login = logged_in(&db, "alice");
    let mut conn = db.pool().get().unwrap();
    db.execute("UPDATE users SET last_seen = now() - interval '50 seconds'");
    let live = tokens::find_live_session(&mut conn, &tokens::hash_token(login.token.expose()), TTL)
        .unwrap()
        .unwrap();
    assert_eq!(live.session_id, login.session_id);
    assert_eq!(live.stored_status, OnlineStatus::Online);
    assert!(
        policy().may_defer(&live, Utc::now(), true, false),
        "50 s old, 100 s of room"
    );
    assert!(!policy().may_defer(&live, Utc::now() + TimeDelta::seconds(60), false, false));
    // Use is deferred only while `active_at` stays inside the away timeout.
    db.execute("UPDATE users SET active_at = now() - interval '290 seconds'");
    let idle = tokens::find_live_session(&mut conn, &tokens::hash_token(login.token.expose()), TTL)
        .unwrap()
        .unwrap();
    assert!(policy().may_defer(&idle, Utc::now(), false, false));
    assert!(!policy().may_defer(&idle, Utc::now(), true, false));
    assert_eq!(
        db.query_i64(
            "SELECT count(*) AS n FROM users WHERE last_seen > now() - interval '40 seconds'"
        ),
        0,
        "looking up wrote nothing"
    );
    assert!(
        tokens::find_live_session(&mut conn, &tokens::hash_token("nope"), TTL)
            .unwrap()
            .is_none()
    );
    sessions::log_out(&mut conn, TIMINGS, login.session_id).unwrap();
    assert!(
        tokens::find_live_session(&mut conn, &tokens::hash_token(login.token.expose()), TTL)
            .unwrap()
            .is_none()
    );
}

#[test]
fn offline_users_are_never_deferred() {
    let db = TestDatabase::new();
    let login = logged_in(&db, "bob");
    db.execute("UPDATE users SET online_status = 'offline'");
    let mut conn = db.pool().get().unwrap();
    let live = tokens::find_live_session(&mut conn, &tokens::hash_token(login.token.expose()), TTL)
        .unwrap()
        .unwrap();
    assert!(!policy().may_defer(&live, Utc::now(), false, false));
}

#[test]
fn a_flush_writes_latest_activity_and_never_status() {
    let db = TestDatabase::new();
    let a = logged_in(&db, "aaa");
    let a2 = users::log_in(db.pool(), TIMINGS, "aaa", "password123").unwrap();
    let b = logged_in(&db, "bbb");
    let c = logged_in(&db, "ccc");
    let mut conn = db.pool().get().unwrap();
    db.execute("UPDATE users SET last_seen = now() - interval '1 minute'");
    db.execute("UPDATE sessions SET last_seen = now() - interval '1 minute'");
    sessions::log_out(&mut conn, TIMINGS, c.session_id).unwrap();
    let now = Utc::now();
    let earlier = now - TimeDelta::seconds(20);
    let flushed = flushes::flush_last_seen(
        &mut conn,
        "api-test",
        now,
        &[
            touch(a.session_id, earlier),
            touch(a2.session_id, now),
            touch(b.session_id, now - TimeDelta::seconds(59)),
            touch(c.session_id, now),
        ],
        both(TimeDelta::seconds(30)),
        UserWrites::Due,
    )
    .unwrap();
    assert_eq!(flushed.written.len(), 2, "a and b; c's session is revoked");
    assert!(flushed.kept.is_empty());
    let last_seen = |name: &str| {
        db.query_i64(&format!(
            "SELECT (extract(epoch FROM now() - last_seen) * 1000)::bigint AS n FROM users WHERE username = '{name}'"
        ))
    };
    assert!(last_seen("aaa") < 5_000, "the latest of a's sessions");
    assert!((55_000..65_000).contains(&last_seen("bbb")));
    assert_eq!(
        db.query_i64(
            "SELECT count(*) AS n FROM users WHERE username = 'ccc' AND online_status = 'offline'"
        ),
        1,
        "a flush never brings anyone online"
    );
    // Sessions lagging by 30 s or more were written; b's lagged by 1 s only.
    assert_eq!(
        db.query_i64(
            "SELECT count(*) AS n FROM sessions WHERE last_seen > now() - interval '30 seconds'"
        ),
        2
    );
    // An older touch never moves last_seen back.
    let flushed = flushes::flush_last_seen(
        &mut conn,
        "api-test",
        now,
        &[touch(a.session_id, earlier)],
        both(TimeDelta::zero()),
        UserWrites::All,
    )
    .unwrap();
    assert!(last_seen("aaa") < 5_000);
    assert!(flushed.written.is_empty() && flushed.kept.is_empty());
}

#[test]
fn a_periodic_flush_writes_a_user_only_once_their_stored_times_lag_by_a_granularity() {
    let db = TestDatabase::new();
    let a = logged_in(&db, "aaa");
    let mut conn = db.pool().get().unwrap();
    let granularity = both(TimeDelta::seconds(30));
    let mut flush = |touches: &[Touch], writes| {
        flushes::flush_last_seen(
            &mut conn,
            "api-test",
            Utc::now(),
            touches,
            granularity,
            writes,
        )
        .unwrap()
    };
    let sessions = vec![a.session_id];
    let ago = |seconds: i64| Utc::now() - TimeDelta::seconds(seconds);
    // Stored at the login, a moment ago: not due, kept for the next flush, vouched for.
    assert_eq!(
        flush(&[touch(a.session_id, Utc::now())], UserWrites::Due),
        Flushed {
            written: vec![],
            kept: sessions.clone(),
            vouched: sessions.clone(),
        }
    );
    // Stored a granularity ago: written.
    db.execute("UPDATE users SET last_seen = now() - interval '31 seconds', active_at = last_seen");
    let flushed = flush(&[touch(a.session_id, Utc::now())], UserWrites::Due);
    assert_eq!(flushed.written.len(), 1);
    assert!(flushed.kept.is_empty());
    assert_eq!(flushed.vouched, sessions);
    // A touch no newer than what is stored is neither written nor kept.
    let flushed = flush(&[touch(a.session_id, ago(10))], UserWrites::Due);
    assert_eq!((flushed.written.len(), flushed.kept.len()), (0, 0));
    // Written long after it happened (PostgreSQL was down): stored, but older than a
    // granularity, it vouches for nothing.
    db.execute(
        "UPDATE users SET last_seen = now() - interval '200 seconds', active_at = last_seen",
    );
    let flushed = flush(&[touch(a.session_id, ago(100))], UserWrites::Due);
    assert_eq!(flushed.written.len(), 1);
    assert!(flushed.vouched.is_empty());
    // Everything newer is written when a replica stops, due or not.
    let flushed = flush(&[touch(a.session_id, ago(99))], UserWrites::All);
    assert_eq!(flushed.written.len(), 1);
    assert!(flushed.kept.is_empty());
}

#[test]
fn users_are_listed_in_pages_and_by_changes() {
    let db = TestDatabase::new();
    let ids: Vec<UserId> = (0..5).map(|n| register(&db, &format!("user{n}"))).collect();
    db.execute("UPDATE users SET changed_at = now() - interval '1 hour'");
    let mut conn = db.pool().get().unwrap();
    let page =
        |conn: &mut _, query: &UserQuery| directory::list_users(conn, TIMINGS, query).unwrap();

    let first = page(
        &mut conn,
        &UserQuery {
            limit: 2,
            ..Default::default()
        },
    );
    assert_eq!(
        first.users.iter().map(|u| u.id()).collect::<Vec<_>>(),
        &ids[..2]
    );
    assert_eq!(first.next_after_id, Some(ids[1]));
    let last = page(
        &mut conn,
        &UserQuery {
            limit: 3,
            after_id: Some(ids[1]),
            ..Default::default()
        },
    );
    assert_eq!(
        last.users.iter().map(|u| u.id()).collect::<Vec<_>>(),
        &ids[2..]
    );
    assert_eq!(
        last.next_after_id, None,
        "a full page with no row after it has no next cursor"
    );
    let past_end = page(
        &mut conn,
        &UserQuery {
            limit: 3,
            after_id: Some(ids[4]),
            ..Default::default()
        },
    );
    assert!(past_end.users.is_empty() && past_end.next_after_id.is_none());

    // Nothing changed in the last 10 minutes.
    let since = first.as_of - TimeDelta::minutes(10);
    let changes = |conn: &mut _| {
        page(
            conn,
            &UserQuery {
                limit: 100,
                changed_since: Some(since),
                ..Default::default()
            },
        )
        .users
        .iter()
        .map(|u| u.id())
        .collect::<Vec<_>>()
    };
    assert!(changes(&mut conn).is_empty());
    // A write (login) is a change.
    presence::mark_user_online(
        &mut conn,
        TIMINGS,
        ids[3],
        presence_model::vocabulary::ChangeReason::Login,
    )
    .unwrap();
    assert_eq!(changes(&mut conn), vec![ids[3]]);
    // So is crossing the window edge with no write at all: shown offline now.
    db.execute(&format!(
        "UPDATE users SET online_status = 'online', last_seen = now() - interval '121 seconds', \
         changed_at = now() - interval '1 hour' WHERE id = {}",
        ids[1]
    ));
    assert_eq!(changes(&mut conn), vec![ids[1], ids[3]]);
    // And crossing the away edge: a connected user idle for the away timeout.
    db.execute(&format!(
        "UPDATE users SET online_status = 'online', last_seen = now(), \
         active_at = now() - interval '301 seconds', changed_at = now() - interval '1 hour' \
         WHERE id = {}",
        ids[0]
    ));
    assert_eq!(changes(&mut conn), vec![ids[0], ids[1], ids[3]]);
}

/// Writes that commit after a poll read, with a `changed_at` from before it (their
/// transaction started first), are what a changes poll can miss: slow ones, racing a
/// poller that chains each page's `as_of` into the next. The last text each user was seen
/// with is the one they have.
#[test]
fn a_changes_poll_misses_no_write_that_commits_after_it() {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};

    let db = TestDatabase::new();
    let ids: Vec<UserId> = (0..4)
        .map(|n| register(&db, &format!("racer{n}")))
        .collect();
    let query = |since| UserQuery {
        limit: 100,
        changed_since: since,
        ..Default::default()
    };
    let mut conn = db.pool().get().unwrap();
    let start = directory::list_users(&mut conn, TIMINGS, &query(None)).unwrap();
    let done = AtomicBool::new(false);
    let mut seen: HashMap<UserId, Option<String>> = HashMap::new();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut conn = db.pool().get().unwrap();
            for round in 0..60 {
                let id = ids[round % ids.len()];
                // `changed_at` is the transaction's start; it commits 20 ms later.
                diesel::connection::SimpleConnection::batch_execute(
                    &mut *conn,
                    &format!(
                        "BEGIN; UPDATE users SET status_text = 'round {round}', \
                         changed_at = now() WHERE id = {id}; SELECT pg_sleep(0.02); COMMIT"
                    ),
                )
                .unwrap();
            }
            done.store(true, Ordering::SeqCst);
        });
        let mut as_of = start.as_of;
        loop {
            let last = done.load(Ordering::SeqCst);
            let page = directory::list_users(&mut conn, TIMINGS, &query(Some(as_of))).unwrap();
            for user in &page.users {
                seen.insert(user.id(), user.status.status.details.status_text.clone());
            }
            as_of = page.as_of;
            if last {
                break;
            }
        }
    });
    let truth: HashMap<UserId, Option<String>> =
        directory::list_users(&mut conn, TIMINGS, &query(None))
            .unwrap()
            .users
            .iter()
            .map(|user| (user.id(), user.status.status.details.status_text.clone()))
            .collect();
    assert_eq!(seen, truth);
}
