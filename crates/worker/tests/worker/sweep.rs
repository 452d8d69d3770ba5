use std::time::{Duration, Instant};

use presence_api::testing::TestApp;
use presence_model::presence;
use presence_model::testing::{TIMINGS, TestDatabase, register};
use presence_model::vocabulary::ChangeReason;
use presence_testkit::{
    OwnRedis, RedisKeys, free_port, metric_value, raw_http, test_prefix, wait_until,
};

use crate::helpers::{WorkerEnv, eventually, timings};

const EVERY_SECOND: &str = "* * * * * *";
/// How often the simulated client of the sweep test sends its heartbeat.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);

#[test]
fn sweep_once_prints_how_many_users_it_marked_offline() {
    let db = TestDatabase::new();
    let mut conn = db.pool().get().unwrap();
    for name in ["stale1", "stale2", "fresh"] {
        let id = register(&db, name);
        presence::mark_user_online(&mut conn, TIMINGS, id, ChangeReason::Login).unwrap();
    }
    db.execute(
        "UPDATE users SET last_seen = now() - interval '10 minutes' WHERE username LIKE 'stale%'",
    );
    let _keys = RedisKeys::of(&db);
    let env = WorkerEnv {
        database_url: db.url(),
        redis_prefix: test_prefix(&db),
        schedule: EVERY_SECOND,
        timings: timings(120),
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
    let _keys = RedisKeys::of(&db);
    let worker = WorkerEnv {
        database_url: db.url(),
        redis_prefix: test_prefix(&db),
        schedule: EVERY_SECOND,
        timings: timings(120),
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

/// Three replicas on one schedule: every tick is swept, and sampled, by exactly one of them.
#[test]
fn three_workers_sweep_each_tick_once() {
    let db = TestDatabase::new();
    let _keys = RedisKeys::of(&db);
    let env = WorkerEnv {
        database_url: db.url(),
        redis_prefix: test_prefix(&db),
        schedule: EVERY_SECOND,
        timings: timings(2),
    };
    let workers: Vec<_> = (0..3).map(|_| env.spawn()).collect();
    let runs = || db.query_i64("SELECT count(*) AS n FROM sweep_runs");
    assert!(
        wait_until(Duration::from_secs(30), || runs() >= 8),
        "{} ticks",
        runs()
    );
    for worker in workers {
        let (status, log) = worker.terminate(Duration::from_secs(10));
        assert!(status.is_some_and(|s| s.success()), "{log}");
    }

    // One row per tick (the unique claim), none missing between the first and the last.
    let span = db.query_i64(
        "SELECT (extract(epoch FROM max(tick_at) - min(tick_at)))::bigint + 1 AS n FROM sweep_runs",
    );
    assert_eq!(
        runs(),
        span,
        "a row for every tick between the first and the last"
    );
    assert_eq!(
        db.query_i64(
            "SELECT count(*) AS n FROM sweep_runs WHERE finished_at IS NULL OR swept_by IS NULL"
        ),
        0
    );
    assert!(
        db.query_i64("SELECT count(DISTINCT swept_by) AS n FROM sweep_runs") >= 2,
        "the ticks are shared between replicas"
    );
    // Each tick's sweeper sampled it for the operator page, once.
    assert_eq!(
        db.query_i64(
            "SELECT count(*) AS n FROM sweep_runs r JOIN presence_samples s ON s.at = r.tick_at"
        ),
        runs()
    );
    assert_eq!(
        db.query_i64("SELECT count(*) AS n FROM presence_samples"),
        runs()
    );
}

#[actix_web::test]
async fn silent_users_go_offline_and_heartbeating_users_stay_online() {
    let app = TestApp::spawn_with(|config| config.offline_after_secs = 2).await;
    let _worker = WorkerEnv {
        database_url: app.db.url(),
        redis_prefix: &app.config.redis.redis_prefix,
        schedule: EVERY_SECOND,
        timings: timings(2),
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

    // The active user heartbeats (every 250 ms, as a client would) until the silent one is
    // swept and three more sweeps have run past the active one.
    let sweeps = || app.db.query_i64("SELECT count(*) AS n FROM sweep_runs");
    let mut silent_offline_after = None;
    let mut sweeps_after = i64::MAX;
    let deadline = Instant::now() + Duration::from_secs(15);
    // The client's cadence: a pace, not a wait for anything.
    let mut pace = actix_web::rt::time::interval(HEARTBEAT_EVERY);
    while sweeps() < sweeps_after.saturating_add(3) {
        pace.tick().await;
        assert!(Instant::now() < deadline, "the sweeps did not run");
        let response = app.post("/api/users/heartbeat/", Some(&token), None).await;
        assert_eq!(response.body["online_status"], "online");
        assert!(flag(active), "a user sending heartbeats is never swept");
        if silent_offline_after.is_none() && !flag(silent) {
            silent_offline_after = Some(silent_since.elapsed());
            sweeps_after = sweeps();
        }
    }
    let took = silent_offline_after.expect("the silent user was marked offline");
    // window (2 s) + one tick (1 s) + 1 s
    assert!(took <= Duration::from_secs(4), "took {took:?}");
    assert!(flag(active));
}

#[test]
fn a_failing_sweep_is_retried_and_never_crashes_the_worker() {
    let db = TestDatabase::new();
    let _keys = RedisKeys::of(&db);
    // A database that does not exist: every sweep fails as if PostgreSQL were down.
    let missing = db
        .url()
        .replacen(db.name(), &format!("{}_missing", db.name()), 1);
    let worker = WorkerEnv {
        database_url: &missing,
        redis_prefix: test_prefix(&db),
        schedule: EVERY_SECOND,
        timings: timings(120),
    }
    .spawn();
    let port = worker.port();
    let failed = || {
        let (_, text) = raw_http(port, "GET", "/metrics", None, "");
        metric_value(&text, r#"presence_worker_jobs_failed_total{kind="sweep"}"#)
    };
    assert!(
        wait_until(Duration::from_secs(20), || failed() >= 3.0),
        "{}",
        worker.log()
    );
    // A retry may be waiting on the pool: the job in hand gets up to 20 s after SIGTERM.
    let (status, log) = worker.terminate(Duration::from_secs(25));
    let status = status.expect("still running, and stops on SIGTERM");
    assert!(status.success(), "{status:?}\n{log}");
}

#[test]
fn a_worker_started_while_redis_is_down_waits_for_it() {
    let db = TestDatabase::new();
    let _keys = RedisKeys::of(&db);
    let redis_port = free_port();
    let http_port = free_port();
    let mut command = WorkerEnv {
        database_url: db.url(),
        redis_prefix: test_prefix(&db),
        schedule: EVERY_SECOND,
        timings: timings(120),
    }
    .command("run");
    command
        .env("REDIS_URL", format!("redis://127.0.0.1:{redis_port}"))
        .env("WORKER_HTTP_ADDR", format!("127.0.0.1:{http_port}"));
    // Redis "down": a listener that closes every connection at once, counting the
    // worker's attempts.
    let down = std::net::TcpListener::bind(("127.0.0.1", redis_port)).unwrap();
    down.set_nonblocking(true).unwrap();
    let mut worker = presence_testkit::Process::spawn(command);
    let mut attempts = 0;
    assert!(
        wait_until(Duration::from_secs(20), || {
            while down.accept().is_ok() {
                attempts += 1;
            }
            attempts >= 2
        }),
        "the worker never retried: {}",
        worker.log()
    );
    assert!(worker.is_running(), "{}", worker.log());
    assert_ne!(
        raw_http_status(http_port),
        200,
        "not serving before Redis is up"
    );
    drop(down);
    let _redis = OwnRedis::start_on(redis_port);
    assert!(
        wait_until(Duration::from_secs(20), || raw_http_status(http_port)
            == 200),
        "{}",
        worker.log()
    );
    let (status, log) = worker.terminate(Duration::from_secs(10));
    let status = status.expect("still running, and stops on SIGTERM");
    assert!(status.success(), "{status:?}\n{log}");
}

/// The status of `GET /healthz` on `port`, 0 if nothing answers.
fn raw_http_status(port: u16) -> u16 {
    if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        return 0;
    }
    raw_http(port, "GET", "/healthz", None, "").0
}
