use std::collections::HashMap;
use std::time::{Duration, Instant};

use presence_api::testing::{TestApp, remove_redis_keys, test_redis_url};
use presence_model::events::ChangeReason;
use presence_model::testing::TestDatabase;
use presence_model::{presence, users};

use crate::helpers::{WorkerEnv, eventually};

const EVERY_SECOND: &str = "* * * * * *";

/// This test's Redis prefix, its keys removed when dropped.
struct Prefix(String);

impl Prefix {
    fn of(db: &TestDatabase) -> Self {
        Self(db.name().to_owned())
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        remove_redis_keys(&test_redis_url(), &self.0);
    }
}

#[test]
fn sweep_once_prints_how_many_users_it_marked_offline() {
    let db = TestDatabase::new();
    let mut conn = db.pool().get().unwrap();
    for name in ["stale1", "stale2", "fresh"] {
        let id = users::register(db.pool(), name, "password123").unwrap().id;
        presence::mark_user_online(&mut conn, id, ChangeReason::Login).unwrap();
    }
    db.execute(
        "UPDATE users SET last_seen = now() - interval '10 minutes' WHERE username LIKE 'stale%'",
    );
    let prefix = Prefix::of(&db);
    let env = WorkerEnv {
        database_url: db.url(),
        redis_prefix: &prefix.0,
        schedule: EVERY_SECOND,
        offline_after_secs: 120,
    };
    let output = env.command("sweep-once").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "2 users marked offline\n"
    );
    assert_eq!(
        db.query_i64("SELECT count(*) AS n FROM users WHERE online_status = 'online'"),
        1
    );
    let again = env.command("sweep-once").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "0 users marked offline\n"
    );
}

#[test]
fn sigterm_stops_a_running_worker_cleanly() {
    let db = TestDatabase::new();
    let prefix = Prefix::of(&db);
    let worker = WorkerEnv {
        database_url: db.url(),
        redis_prefix: &prefix.0,
        schedule: EVERY_SECOND,
        offline_after_secs: 120,
    }
    .spawn();
    let started = actix_web::rt::System::new()
        .block_on(eventually(Duration::from_secs(15), || {
            db.query_i64("SELECT count(*) AS n FROM sweep_runs") > 0
        }));
    assert!(started, "the worker swept at least once");
    let (status, log) = worker.terminate(Duration::from_secs(5));
    let status = status.expect("stopped within 5 s of SIGTERM");
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("stopped"), "{log}");
}

/// Three replicas on one schedule: every tick is swept, by exactly one of them.
#[test]
fn three_workers_sweep_each_tick_once() {
    let db = TestDatabase::new();
    let prefix = Prefix::of(&db);
    let env = WorkerEnv {
        database_url: db.url(),
        redis_prefix: &prefix.0,
        schedule: EVERY_SECOND,
        offline_after_secs: 2,
    };
    let workers: Vec<_> = (0..3).map(|_| env.spawn()).collect();
    std::thread::sleep(Duration::from_secs(10));
    let logs: Vec<String> = workers
        .into_iter()
        .map(|worker| {
            let (status, log) = worker.terminate(Duration::from_secs(10));
            assert!(status.is_some_and(|s| s.success()), "{log}");
            log
        })
        .collect();

    let runs = db.query_i64("SELECT count(*) AS n FROM sweep_runs");
    let span = db.query_i64(
        "SELECT (extract(epoch FROM max(tick_at) - min(tick_at)))::bigint + 1 AS n FROM sweep_runs",
    );
    assert!(runs >= 8, "about one tick a second for 10 s, got {runs}");
    assert_eq!(
        runs, span,
        "a row for every tick between the first and the last"
    );

    // Which process executed which tick, from their logs: never two for one tick.
    let mut executed: HashMap<String, usize> = HashMap::new();
    for log in &logs {
        for line in log.lines().filter(|l| l.contains("users marked offline")) {
            let tick = line
                .split("sweep ")
                .nth(1)
                .unwrap()
                .split(':')
                .take(3)
                .collect::<Vec<_>>()
                .join(":");
            *executed.entry(tick).or_default() += 1;
        }
    }
    assert_eq!(executed.len() as i64, runs, "{executed:?}");
    assert!(executed.values().all(|&n| n == 1), "{executed:?}");
    assert!(
        logs.iter()
            .filter(|log| log.contains("users marked offline"))
            .count()
            >= 2,
        "the ticks are shared between replicas"
    );
}

#[actix_web::test]
async fn silent_users_go_offline_and_heartbeating_users_stay_online() {
    let app = TestApp::spawn_with(|config| config.offline_after_secs = 2).await;
    let _worker = WorkerEnv {
        database_url: app.db.url(),
        redis_prefix: &app.config.redis_prefix,
        schedule: EVERY_SECOND,
        offline_after_secs: 2,
    }
    .spawn();
    let (active, token) = app.sign_up("active").await;
    let (silent, _) = app.sign_up("silent").await;
    let silent_since = Instant::now();
    let flag = |id: i64| {
        app.db.query_i64(&format!(
            "SELECT count(*) AS n FROM users WHERE id = {id} AND online_status = 'online'"
        )) == 1
    };

    let mut silent_offline_after = None;
    while silent_since.elapsed() < Duration::from_secs(6) {
        let response = app.post("/api/users/heartbeat/", Some(&token), None).await;
        assert_eq!(response.body["online_status"], "online");
        assert!(flag(active), "a user sending heartbeats is never swept");
        if silent_offline_after.is_none() && !flag(silent) {
            silent_offline_after = Some(silent_since.elapsed());
        }
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    }
    let took = silent_offline_after.expect("the silent user was marked offline");
    // window (2 s) + one tick (1 s) + 1 s
    assert!(took <= Duration::from_secs(4), "took {took:?}");
    assert!(flag(active));
}

#[test]
fn a_failing_sweep_is_retried_and_never_crashes_the_worker() {
    let db = TestDatabase::new();
    let prefix = Prefix::of(&db);
    // A database that does not exist: every sweep fails as if PostgreSQL were down.
    let missing = db
        .url()
        .replacen(db.name(), &format!("{}_missing", db.name()), 1);
    let worker = WorkerEnv {
        database_url: &missing,
        redis_prefix: &prefix.0,
        schedule: EVERY_SECOND,
        offline_after_secs: 120,
    }
    .spawn();
    std::thread::sleep(Duration::from_secs(4));
    let (status, log) = worker.terminate(Duration::from_secs(10));
    let status = status.expect("still running, and stops on SIGTERM");
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("failed, will retry"), "{log}");
}

#[test]
fn a_worker_started_while_redis_is_down_waits_for_it() {
    let db = TestDatabase::new();
    let prefix = Prefix::of(&db);
    let mut command = WorkerEnv {
        database_url: db.url(),
        redis_prefix: &prefix.0,
        schedule: EVERY_SECOND,
        offline_after_secs: 120,
    }
    .command("run");
    command.env("REDIS_URL", "redis://127.0.0.1:1");
    let worker = presence_api::testing::Process::spawn(command);
    std::thread::sleep(Duration::from_secs(4));
    let (status, log) = worker.terminate(Duration::from_secs(10));
    let status = status.expect("still running, and stops on SIGTERM");
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("waiting for Redis"), "{log}");
}
