//! Sweep runs and the presence history against a real PostgreSQL database.

use chrono::{DateTime, TimeDelta, Utc};
use presence_model::events::ChangeReason;
use presence_model::testing::TestDatabase;
use presence_model::{Error, events, presence, settings, sweeps, users};

const WINDOW: TimeDelta = TimeDelta::seconds(120);

fn tick(second: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap()
}

/// `count` online users silent for an hour, and the window stored as an API stores it.
fn stale_online_users(db: &TestDatabase, count: usize) -> Vec<i64> {
    let mut conn = db.pool().get().unwrap();
    settings::agree_on_window(&mut conn, WINDOW.num_seconds() as u32).unwrap();
    let ids: Vec<i64> = (0..count)
        .map(|n| {
            let id = users::register(db.pool(), &format!("user{n}"), "password123")
                .unwrap()
                .id;
            presence::mark_user_online(&mut conn, id, ChangeReason::Login).unwrap();
            id
        })
        .collect();
    db.execute("UPDATE users SET last_seen = now() - interval '1 hour'");
    ids
}

#[test]
fn a_tick_is_swept_once_and_recorded() {
    let db = TestDatabase::new();
    let ids = stale_online_users(&db, 3);
    let mut conn = db.pool().get().unwrap();

    let run = sweeps::run_sweep(&mut conn, tick(0), "sweep-test")
        .unwrap()
        .unwrap();
    let mut swept = run.user_ids.clone();
    swept.sort_unstable();
    assert_eq!(swept, ids);
    // Recorded in the sweep's own transaction, waiting to be published.
    assert_eq!(
        db.query_i64(
            "SELECT count(*) AS n FROM presence_events WHERE reason = 'sweep' \
             AND from_status = 'online' AND to_status = 'offline' AND published_at IS NULL"
        ),
        3
    );

    assert_eq!(
        sweeps::run_sweep(&mut conn, tick(0), "sweep-test").unwrap(),
        None
    );
    let next = sweeps::run_sweep(&mut conn, tick(1), "sweep-test")
        .unwrap()
        .unwrap();
    assert!(next.user_ids.is_empty());
    assert_eq!(
        db.query_i64(
            "SELECT count(*) AS n FROM sweep_runs WHERE finished_at >= started_at \
             AND users_marked_offline IS NOT NULL"
        ),
        2
    );
    assert_eq!(
        db.query_i64("SELECT sum(users_marked_offline)::bigint AS n FROM sweep_runs"),
        3
    );
}

#[test]
fn concurrent_replicas_sweep_a_tick_once() {
    let db = TestDatabase::new();
    stale_online_users(&db, 5);
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let pool = db.pool().clone();
                scope.spawn(move || {
                    sweeps::run_sweep(&mut pool.get().unwrap(), tick(7), "sweep-test").unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ran: Vec<_> = outcomes.iter().flatten().collect();
    assert_eq!(ran.len(), 1, "{outcomes:?}");
    assert_eq!(ran[0].user_ids.len(), 5);
    assert_eq!(db.query_i64("SELECT count(*) AS n FROM sweep_runs"), 1);
}

#[test]
fn history_is_newest_first() {
    let db = TestDatabase::new();
    let id = users::register(db.pool(), "alice", "password123")
        .unwrap()
        .id;
    let mut conn = db.pool().get().unwrap();
    let login = users::open_session(&mut conn, id).unwrap().unwrap();
    let logout = presence_model::sessions::log_out(&mut conn, login.session_id, WINDOW)
        .unwrap()
        .unwrap();
    let (login, logout) = (
        login.update.change.unwrap(),
        logout.update.unwrap().change.unwrap(),
    );
    assert!(logout.id > login.id && logout.at >= login.at);

    let history = events::presence_history(&mut conn, id, 10)
        .unwrap()
        .unwrap();
    assert_eq!(history, vec![logout.clone(), login]);
    let newest = events::presence_history(&mut conn, id, 1).unwrap().unwrap();
    assert_eq!(newest, vec![logout]);
    assert_eq!(
        events::presence_history(&mut conn, id + 1, 10).unwrap(),
        None
    );
}

#[test]
fn the_outbox_is_published_in_id_order_once_and_kept_when_publishing_fails() {
    let db = TestDatabase::new();
    let ids = stale_online_users(&db, 3);
    let mut conn = db.pool().get().unwrap();
    sweeps::run_sweep(&mut conn, tick(0), "sweep-test").unwrap();
    assert_eq!(
        events::unpublished_backlog(&mut conn).unwrap().0,
        6,
        "3 logins, 3 sweeps"
    );

    let failed = events::publish_pending(&mut conn, 100, |_| Err("redis is down".to_owned()));
    assert!(failed.is_err());
    assert_eq!(events::unpublished_backlog(&mut conn).unwrap().0, 6);

    let mut published = Vec::new();
    let count = events::publish_pending(&mut conn, 4, |batch| {
        published.extend(batch.iter().cloned());
        Ok(())
    })
    .unwrap();
    assert_eq!(count, 4);
    events::publish_pending(&mut conn, 4, |batch| {
        published.extend(batch.iter().cloned());
        Ok(())
    })
    .unwrap();
    let event_ids: Vec<i64> = published.iter().map(|e| e.id).collect();
    let mut sorted = event_ids.clone();
    sorted.sort_unstable();
    assert_eq!(event_ids, sorted, "in id order");
    assert_eq!(published.len(), 6);
    for id in ids {
        let reasons: Vec<_> = published
            .iter()
            .filter(|e| e.user_id == id)
            .map(|e| e.reason)
            .collect();
        assert_eq!(reasons, [ChangeReason::Login, ChangeReason::Sweep]);
    }
    assert_eq!(events::unpublished_backlog(&mut conn).unwrap(), (0, None));
    let again = events::publish_pending(&mut conn, 100, |_| panic!("nothing to publish"));
    assert_eq!(again.unwrap(), 0);
}

#[test]
fn every_process_uses_one_window() {
    let db = TestDatabase::new();
    let mut conn = db.pool().get().unwrap();
    // The sweep has no window of its own: it waits for an API to store one.
    assert!(matches!(
        sweeps::run_sweep(&mut conn, tick(0), "sweep-test"),
        Err(Error::WindowUnknown)
    ));
    settings::agree_on_window(&mut conn, 120).unwrap();
    settings::agree_on_window(&mut conn, 120).unwrap();
    let refused = settings::agree_on_window(&mut conn, 60).unwrap_err();
    assert!(matches!(
        refused,
        Error::WindowDisagreement {
            here: 60,
            stored: 120
        }
    ));
    let message = refused.to_string();
    assert!(message.contains("is 60 here, but 120"), "{message}");
    // Changed deliberately, for everyone.
    settings::store_window(&mut conn, 60).unwrap();
    settings::agree_on_window(&mut conn, 60).unwrap();
    assert_eq!(settings::window(&mut conn).unwrap(), TimeDelta::seconds(60));
}
