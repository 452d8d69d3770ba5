//! Sweep runs and the presence history against a real PostgreSQL database.

use chrono::{DateTime, TimeDelta, Utc};
use presence_model::jobs::{ChangeReason, PresenceChanged};
use presence_model::testing::TestDatabase;
use presence_model::{OnlineStatus, events, presence, sweeps, users};

const WINDOW: TimeDelta = TimeDelta::seconds(120);

fn tick(second: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap()
}

fn stale_online_users(db: &TestDatabase, count: usize) -> Vec<i64> {
    let mut conn = db.pool().get().unwrap();
    let ids: Vec<i64> = (0..count)
        .map(|n| {
            let id = users::register(db.pool(), &format!("user{n}"), "password123")
                .unwrap()
                .id;
            presence::mark_user_online(&mut conn, id).unwrap();
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

    let run = sweeps::run_sweep(&mut conn, tick(0), WINDOW)
        .unwrap()
        .unwrap();
    let mut swept = run.user_ids.clone();
    swept.sort_unstable();
    assert_eq!(swept, ids);
    assert!(run.changes().iter().all(|c| c.reason == ChangeReason::Sweep
        && c.from == OnlineStatus::Online
        && c.to == OnlineStatus::Offline));

    assert_eq!(sweeps::run_sweep(&mut conn, tick(0), WINDOW).unwrap(), None);
    let next = sweeps::run_sweep(&mut conn, tick(1), WINDOW)
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
                    sweeps::run_sweep(&mut pool.get().unwrap(), tick(7), WINDOW).unwrap()
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
fn history_is_newest_first_and_redelivery_is_harmless() {
    let db = TestDatabase::new();
    let id = users::register(db.pool(), "alice", "password123")
        .unwrap()
        .id;
    let change = |from, to, s, reason| PresenceChanged {
        user_id: id,
        from,
        to,
        at: tick(s),
        reason,
    };
    let changes = vec![
        change(
            OnlineStatus::Offline,
            OnlineStatus::Online,
            0,
            ChangeReason::Login,
        ),
        change(
            OnlineStatus::Online,
            OnlineStatus::Offline,
            5,
            ChangeReason::Logout,
        ),
    ];
    let mut conn = db.pool().get().unwrap();
    assert_eq!(
        events::record_presence_changes(&mut conn, &changes).unwrap(),
        2
    );
    assert_eq!(
        events::record_presence_changes(&mut conn, &changes).unwrap(),
        0
    );

    let history = events::presence_history(&mut conn, id, 10)
        .unwrap()
        .unwrap();
    assert_eq!(history, vec![changes[1].clone(), changes[0].clone()]);
    let newest = events::presence_history(&mut conn, id, 1).unwrap().unwrap();
    assert_eq!(newest, vec![changes[1].clone()]);
    assert_eq!(
        events::presence_history(&mut conn, id + 1, 10).unwrap(),
        None
    );
}
