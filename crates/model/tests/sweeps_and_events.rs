//! Sweep runs and the presence history against a real PostgreSQL database.

use chrono::{DateTime, Utc};
use presence_model::feed;
use presence_model::ids::{EventId, UserId};
use presence_model::manual::{self, StatusUpdate, Update};
use presence_model::settings::Timings;
use presence_model::testing::{TIMINGS, TestDatabase, register};
use presence_model::views::StatusDetails;
use presence_model::vocabulary::ChangeReason;
use presence_model::{Error, events, presence, settings, sweeps, users};

/// The time between two ticks of the schedule these tests pretend to follow.
const PERIOD: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

fn tick(second: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap()
}

/// `count` online users silent for an hour, and the timings stored as an API stores them.
fn stale_online_users(db: &TestDatabase, count: usize) -> Vec<UserId> {
    let mut conn = db.pool().get().unwrap();
    settings::agree_on_timings(&mut conn, TIMINGS).unwrap();
    let ids: Vec<UserId> = (0..count)
        .map(|n| {
            let id = register(db, &format!("user{n}"));
            presence::mark_user_online(&mut conn, TIMINGS, id, ChangeReason::Login).unwrap();
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

    let run = sweeps::run_sweep(&mut conn, tick(0), PERIOD, "sweep-test")
        .unwrap()
        .unwrap();
    let mut swept: Vec<UserId> = run.changes.iter().map(|c| c.user_id).collect();
    swept.sort_unstable();
    assert_eq!(swept, ids);
    // Recorded in the sweep's own transaction, waiting to be published.
    assert_eq!(
        db.query_i64(
            "SELECT count(*) AS n FROM unpublished_events WHERE reason = 'sweep' \
             AND from_status = 'online' AND to_status = 'offline'"
        ),
        3
    );

    assert_eq!(
        sweeps::run_sweep(&mut conn, tick(0), PERIOD, "sweep-test").unwrap(),
        None
    );
    let next = sweeps::run_sweep(&mut conn, tick(1), PERIOD, "sweep-test")
        .unwrap()
        .unwrap();
    assert!(next.changes.is_empty());
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
                    sweeps::run_sweep(&mut pool.get().unwrap(), tick(7), PERIOD, "sweep-test")
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ran: Vec<_> = outcomes.iter().flatten().collect();
    assert_eq!(ran.len(), 1, "{outcomes:?}");
    assert_eq!(ran[0].users_marked_offline(), 5);
    assert_eq!(db.query_i64("SELECT count(*) AS n FROM sweep_runs"), 1);
}

#[test]
fn history_is_newest_first() {
    let db = TestDatabase::new();
    let id = register(&db, "alice");
    let mut conn = db.pool().get().unwrap();
    let login = users::open_session(&mut conn, TIMINGS, id)
        .unwrap()
        .unwrap();
    let logout = presence_model::sessions::log_out(&mut conn, TIMINGS, login.session_id)
        .unwrap()
        .unwrap();
    let (login, logout) = (
        login.presence.transition.unwrap(),
        logout.presence.transition.unwrap(),
    );
    assert!(logout.id > login.id && logout.at >= login.at);

    let history = feed::presence_history(&mut conn, id, 10).unwrap().unwrap();
    assert_eq!(history, vec![logout.clone(), login]);
    let newest = feed::presence_history(&mut conn, id, 1).unwrap().unwrap();
    assert_eq!(newest, vec![logout]);
    assert_eq!(
        feed::presence_history(&mut conn, UserId(id.0 + 1), 10).unwrap(),
        None
    );
}

#[test]
fn the_outbox_is_published_in_id_order_once_and_kept_when_publishing_fails() {
    let db = TestDatabase::new();
    let ids = stale_online_users(&db, 3);
    let mut conn = db.pool().get().unwrap();
    sweeps::run_sweep(&mut conn, tick(0), PERIOD, "sweep-test").unwrap();
    assert_eq!(
        feed::unpublished_backlog(&mut conn).unwrap().0,
        6,
        "3 logins, 3 sweeps"
    );

    let mut attempted = Vec::new();
    let failed = events::publish_pending(&mut conn, 100, |batch| {
        attempted.extend(batch.iter().map(|e| (e.id, e.revision)));
        Err("redis is down".to_owned())
    });
    assert!(failed.is_err());
    assert_eq!(feed::unpublished_backlog(&mut conn).unwrap().0, 6);

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
    let event_ids: Vec<EventId> = published.iter().map(|e| e.id).collect();
    let mut sorted = event_ids.clone();
    sorted.sort_unstable();
    assert_eq!(event_ids, sorted, "in id order");
    assert_eq!(published.len(), 6);
    // Sent again with the revisions they were given before the failure.
    let sent: Vec<_> = published.iter().map(|e| (e.id, e.revision)).collect();
    assert_eq!(sent, attempted);
    for id in ids {
        let reasons: Vec<_> = published
            .iter()
            .filter(|e| e.user_id == id)
            .map(|e| e.reason)
            .collect();
        assert_eq!(reasons, [ChangeReason::Login, ChangeReason::Sweep]);
    }
    assert_eq!(feed::unpublished_backlog(&mut conn).unwrap(), (0, None));
    let again = events::publish_pending(&mut conn, 100, |_| panic!("nothing to publish"));
    assert_eq!(again.unwrap(), 0);
}

#[test]
fn every_process_uses_one_set_of_timings() {
    let db = TestDatabase::new();
    let mut conn = db.pool().get().unwrap();
    // The sweep has no timings of its own: it waits for an API to store them.
    assert!(matches!(
        sweeps::run_sweep(&mut conn, tick(0), PERIOD, "sweep-test"),
        Err(Error::TimingsUnknown)
    ));
    settings::agree_on_timings(&mut conn, TIMINGS).unwrap();
    settings::agree_on_timings(&mut conn, TIMINGS).unwrap();
    let other = |offline_after_secs, away_after_secs| Timings {
        offline_after_secs,
        away_after_secs,
    };
    let refused = settings::agree_on_timings(&mut conn, other(60, 300)).unwrap_err();
    assert!(matches!(
        refused,
        Error::SettingDisagreement {
            setting: "OFFLINE_AFTER_SECS",
            here: 60,
            stored: 120
        }
    ));
    let message = refused.to_string();
    assert!(message.contains("is 60 here, but 120"), "{message}");
    assert!(matches!(
        settings::agree_on_timings(&mut conn, other(120, 30)),
        Err(Error::SettingDisagreement {
            setting: "AWAY_AFTER_SECS",
            ..
        })
    ));
    // Changed deliberately, for everyone.
    settings::store_timings(&mut conn, other(60, 30)).unwrap();
    settings::agree_on_timings(&mut conn, other(60, 30)).unwrap();
    assert_eq!(settings::timings(&mut conn).unwrap(), other(60, 30));
}

#[test]
fn a_silent_user_whose_dnd_also_ended_is_recorded_swept() {
    let db = TestDatabase::new();
    let ids = stale_online_users(&db, 2);
    // Both told dnd; the first one's dnd has ended too by the time the sweep sees them.
    db.execute(&format!(
        "UPDATE users SET availability = 'dnd', published_presence = 'dnd', \
         availability_until = CASE WHEN id = {} THEN now() - interval '1 second' END",
        ids[0]
    ));
    let mut conn = db.pool().get().unwrap();
    let run = sweeps::run_sweep(&mut conn, tick(0), PERIOD, "sweep-test")
        .unwrap()
        .unwrap();
    let mut seen: Vec<(UserId, &str, &str, &str)> = run
        .changes
        .iter()
        .map(|c| (c.user_id, c.from.as_str(), c.to.as_str(), c.reason.as_str()))
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        [
            (ids[0], "dnd", "offline", "sweep"),
            (ids[1], "dnd", "offline", "sweep")
        ]
    );
}

#[test]
fn details_are_stored_as_one_json_value_and_none_as_null() {
    let db = TestDatabase::new();
    let ids = stale_online_users(&db, 1);
    db.execute("UPDATE users SET last_seen = now()");
    let mut conn = db.pool().get().unwrap();
    let lunch = StatusUpdate {
        text: Update::Set(Some("lunch".to_owned())),
        ..Default::default()
    };
    let written = manual::set_status(&mut conn, TIMINGS, ids[0], &lunch)
        .unwrap()
        .unwrap();
    let told = written
        .transition
        .expect("others are told the custom status");
    assert_eq!(told.details.status_text.as_deref(), Some("lunch"));
    let stored = |sql: &str| db.query_i64(&format!("SELECT count(*) AS n FROM {sql}"));
    assert_eq!(
        stored("presence_events WHERE details ->> 'status_text' = 'lunch'"),
        1
    );
    assert_eq!(
        stored("users WHERE published_details ->> 'status_text' = 'lunch'"),
        1
    );
    // Silent: swept offline, where others are shown no details, and none are stored.
    db.execute("UPDATE users SET last_seen = now() - interval '1 hour'");
    let run = sweeps::run_sweep(&mut conn, tick(0), PERIOD, "sweep-test")
        .unwrap()
        .unwrap();
    assert_eq!(run.changes.len(), 1, "{:?}", run.changes);
    assert_eq!(run.changes[0].details, StatusDetails::default());
    assert_eq!(stored("presence_events WHERE details IS NULL"), 2);
    assert_eq!(stored("users WHERE published_details IS NULL"), 1);
}

#[test]
fn purges_take_only_what_nobody_can_use_in_bounded_batches() {
    use chrono::TimeDelta;
    use presence_model::purges;

    let db = TestDatabase::new();
    let mut conn = db.pool().get().unwrap();
    settings::agree_on_timings(&mut conn, TIMINGS).unwrap();
    let names = [
        "live",
        "revoked_long_ago",
        "revoked_lately",
        "unused_past_ttl",
        "unused_within_ttl",
    ];
    for name in names {
        register(&db, name);
        for _ in 0..3 {
            users::log_in(db.pool(), TIMINGS, name, "password123").unwrap();
        }
    }
    let sessions_of =
        |name: &str| format!("user_id = (SELECT id FROM users WHERE username = '{name}')");
    db.execute(&format!(
        "UPDATE sessions SET revoked_at = now() - interval '2 days' WHERE {}",
        sessions_of("revoked_long_ago")
    ));
    db.execute(&format!(
        "UPDATE sessions SET revoked_at = now() - interval '1 hour' WHERE {}",
        sessions_of("revoked_lately")
    ));
    // The longest TTL a replica enforces is a week; one replica's shorter one is ignored.
    settings::record_session_ttl(&mut conn, 7 * 86_400).unwrap();
    settings::record_session_ttl(&mut conn, 3600).unwrap();
    assert_eq!(
        settings::longest_session_ttl(&mut conn).unwrap(),
        Some(7 * 86_400)
    );
    db.execute(&format!(
        "UPDATE sessions SET last_seen = now() - interval '9 days' WHERE {}",
        sessions_of("unused_past_ttl")
    ));
    db.execute(&format!(
        "UPDATE sessions SET last_seen = now() - interval '7 days' WHERE {}",
        sessions_of("unused_within_ttl")
    ));
    let retention = TimeDelta::days(1);
    // Two at a time: three batches for the six that go, then none.
    let batches: Vec<usize> = (0..4)
        .map(|_| purges::purge_sessions(&mut conn, retention, 2).unwrap())
        .collect();
    assert_eq!(batches, [2, 2, 2, 0]);
    for (name, left) in [
        ("live", 3),
        ("revoked_long_ago", 0),
        ("revoked_lately", 3),
        ("unused_past_ttl", 0),
        ("unused_within_ttl", 3),
    ] {
        let count = db.query_i64(&format!(
            "SELECT count(*) AS n FROM sessions WHERE {}",
            sessions_of(name)
        ));
        assert_eq!(count, left, "{name}");
    }

    for second in [0, 60, 120] {
        sweeps::run_sweep(&mut conn, tick(second), PERIOD, "sweep-test").unwrap();
    }
    db.execute("UPDATE sweep_runs SET started_at = now() - interval '2 days' WHERE tick_at < (SELECT max(tick_at) FROM sweep_runs)");
    assert_eq!(
        purges::purge_sweep_runs(&mut conn, retention, 1).unwrap(),
        1
    );
    assert_eq!(
        purges::purge_sweep_runs(&mut conn, retention, 10).unwrap(),
        1
    );
    assert_eq!(
        purges::purge_sweep_runs(&mut conn, retention, 10).unwrap(),
        0
    );
    assert_eq!(db.query_i64("SELECT count(*) AS n FROM sweep_runs"), 1);
}

#[test]
fn a_sweep_locks_only_the_users_whose_shown_presence_time_changed() {
    let db = TestDatabase::new();
    let stale = stale_online_users(&db, 2);
    let mut conn = db.pool().get().unwrap();
    let fresh: Vec<UserId> = (0..20)
        .map(|n| {
            let id = register(&db, &format!("fresh{n}"));
            presence::mark_user_online(&mut conn, TIMINGS, id, ChangeReason::Login).unwrap();
            id
        })
        .collect();
    // One of the fresh ones was last active past the away timeout (still connected).
    db.execute(&format!(
        "UPDATE users SET active_at = now() - interval '1 hour' WHERE id = {}",
        fresh[0]
    ));
    let untouched = fresh[1..]
        .iter()
        .map(|id| id.0.to_string())
        .collect::<Vec<_>>();
    // A row lock or a write stamps the row's `xmin` or `xmax` with the transaction's id.
    let stamps = || {
        db.query_i64(&format!(
            "SELECT sum(hashtext(xmin::text || '/' || xmax::text || '/' || id))::bigint AS n \
             FROM users WHERE id IN ({})",
            untouched.join(",")
        ))
    };
    let before = stamps();
    let run = sweeps::run_sweep(&mut conn, tick(0), PERIOD, "sweep-test")
        .unwrap()
        .unwrap();
    let mut changed: Vec<(UserId, ChangeReason)> =
        run.changes.iter().map(|c| (c.user_id, c.reason)).collect();
    changed.sort_unstable_by_key(|(id, _)| *id);
    assert_eq!(
        changed,
        [
            (stale[0], ChangeReason::Sweep),
            (stale[1], ChangeReason::Sweep),
            (fresh[0], ChangeReason::Idle)
        ]
    );
    // The other 19 were neither locked nor written by the tick.
    assert_eq!(stamps(), before);
}
