//! The `presence-api` binary as operators run it: several replicas at once, and SIGTERM.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use presence_api::testing::spawn_api;
use presence_model::testing::TestDatabase;
use presence_testkit::{Process, RedisKeys, metric_value, raw_http, wait_until};

const API: &str = env!("CARGO_BIN_EXE_presence-api");

/// How many migrations the repository holds.
fn migrations() -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().join("up.sql").exists())
        .count()
}

#[test]
fn replicas_starting_together_create_and_migrate_one_fresh_database() {
    let db = TestDatabase::uncreated();
    let _keys = RedisKeys::of(&db);
    let replicas: Vec<Process> = (0..3).map(|_| spawn_api(API, &db, &[])).collect();
    for replica in &replicas {
        let (status, body) = raw_http(replica.port(), "GET", "/healthz", None, "");
        assert_eq!(status, 200, "{body}\n{}", replica.log());
    }
    assert_eq!(
        db.query_i64("SELECT count(*) AS n FROM __diesel_schema_migrations"),
        migrations() as i64
    );
    assert_eq!(
        db.query_i64(
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public' \
             AND table_name IN ('users', 'sessions', 'sweep_runs', 'presence_events')"
        ),
        4
    );
    let logs: Vec<String> = replicas
        .into_iter()
        .map(|replica| {
            let (status, log) = replica.terminate(Duration::from_secs(15));
            assert!(status.is_some_and(|s| s.success()), "{log}");
            log
        })
        .collect();
    let applied: Vec<&str> = logs
        .iter()
        .flat_map(|log| log.lines())
        .filter_map(|line| line.split("migrations applied: ").nth(1))
        .collect();
    let mut applied = applied;
    applied.sort_unstable();
    assert_eq!(
        applied,
        ["0".to_owned(), "0".to_owned(), migrations().to_string()],
        "one replica migrated, under the lock"
    );
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits() {
    let db = TestDatabase::new();
    let _keys = RedisKeys::of(&db);
    let server = spawn_api(API, &db, &[]);
    let (port, metrics_port) = (server.port(), server.metrics_port());
    let body = r#"{"username": "draining", "password": "password123"}"#;
    let mut in_flight = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        in_flight,
        "POST /api/users/register/ HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    // In flight: this request (metrics are served apart, and not counted).
    let requests_in_flight = || {
        let (_, text) = raw_http(metrics_port, "GET", "/metrics", None, "");
        metric_value(&text, "presence_api_http_requests_in_flight")
    };
    assert!(wait_until(Duration::from_secs(5), || requests_in_flight() >= 1.0));

    server.sigterm();
    assert!(
        wait_until(Duration::from_secs(5), || {
            TcpStream::connect(("127.0.0.1", port)).is_err()
        }),
        "no new connections once stopping"
    );
    in_flight.write_all(&body.as_bytes()[10..]).unwrap();
    let mut response = String::new();
    in_flight.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");

    let (status, log) = server.wait(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{log}");
    assert_eq!(
        db.query_i64("SELECT count(*) AS n FROM users WHERE username = 'draining'"),
        1
    );
}

/// libfaketime, from Debian's `faketime` (installed by `.ci/run`).
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

fn json_field(body: &str, field: &str) -> serde_json::Value {
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    value[field].clone()
}

#[actix_web::test]
async fn an_api_whose_clock_is_behind_the_databases_keeps_heartbeating_users_online() {
    assert!(
        std::path::Path::new(FAKETIME).exists(),
        "apt-get install faketime"
    );
    let db = TestDatabase::new();
    let _keys = RedisKeys::of(&db);
    // This API's clock runs 8 s behind PostgreSQL's: as long as the window.
    let server = spawn_api(
        API,
        &db,
        &[
            ("LD_PRELOAD", FAKETIME),
            ("FAKETIME", "-8s"),
            ("FAKETIME_NO_CACHE", "1"),
            ("OFFLINE_AFTER_SECS", "8"),
            ("AWAY_AFTER_SECS", "8"),
            ("LAST_SEEN_FLUSH_MS", "500"),
            ("HEARTBEAT_INTERVAL_MS", "1000"),
        ],
    );
    let (port, metrics_port) = (server.port(), server.metrics_port());
    let credentials =
        |name: &str| format!(r#"{{"username": "{name}", "password": "password123"}}"#);
    let mut tokens = Vec::new();
    for name in ["skewed", "observer"] {
        let (status, _) = raw_http(
            port,
            "POST",
            "/api/users/register/",
            None,
            &credentials(name),
        );
        assert_eq!(status, 201);
        let (status, body) = raw_http(port, "POST", "/api/users/login/", None, &credentials(name));
        assert_eq!(status, 200, "{body}");
        tokens.push(json_field(&body, "token").as_str().unwrap().to_owned());
    }
    let id = db.query_i64("SELECT id AS n FROM users WHERE username = 'skewed'");
    // It measured the offset (the database is ahead).
    assert!(wait_until(Duration::from_secs(5), || {
        let (_, text) = raw_http(metrics_port, "GET", "/metrics", None, "");
        metric_value(&text, "presence_api_clock_offset_seconds") > 7.0
    }));
    // Heartbeats at the client's pace for longer than the window, every one answered
    // with the user online to others.
    let mut samples = Vec::new();
    let mut pace = actix_web::rt::time::interval(Duration::from_secs(1));
    for _ in 0..12 {
        pace.tick().await;
        let (status, _) = raw_http(port, "POST", "/api/users/heartbeat/", Some(&tokens[0]), "");
        assert_eq!(status, 200);
        let (_, body) = raw_http(
            port,
            "GET",
            &format!("/api/users/{id}/status/"),
            Some(&tokens[1]),
            "",
        );
        samples.push(json_field(&body, "presence"));
    }
    assert!(
        samples.iter().all(|p| p == "online"),
        "{samples:?}\n{}",
        server.log()
    );
}

/// `presence-api migrate` on `db` with `env`: whether it succeeded, and its log.
fn migrate(db: &TestDatabase, env: &[(&str, &str)]) -> (bool, String) {
    let output = std::process::Command::new(API)
        .arg("migrate")
        .env("DATABASE_URL", db.url())
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .output()
        .expect("migrate runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[actix_web::test]
async fn migrate_refuses_unsafe_timings_and_running_replicas_adopt_safe_ones() {
    use actix_web::http::StatusCode;
    use presence_api::testing::TestApp;
    use presence_testkit::eventually;

    let a = TestApp::spawn().await;
    let b = a.replica(|_| {}).await;
    let (id, token) = a.sign_up("steady").await;
    let fleet = [
        ("LAST_SEEN_FLUSH_MS", "100"),
        ("HEARTBEAT_INTERVAL_MS", "100"),
    ];
    let db = a.db.clone();
    let stored = || {
        db.query_i64("SELECT value::bigint AS n FROM settings WHERE name = 'offline_after_secs'")
    };

    // A window shorter than twice the fleet's intervals: refused, nothing stored.
    let (ok, log) = migrate(&a.db, &[fleet[0], fleet[1], ("OFFLINE_AFTER_SECS", "0")]);
    assert!(!ok, "{log}");
    let (ok, log) = migrate(&a.db, &[("OFFLINE_AFTER_SECS", "1")]);
    assert!(!ok && log.contains("HEARTBEAT_INTERVAL_MS"), "{log}");
    assert_eq!(stored(), 120);

    // A safe change: both replicas adopt it within a second or so.
    let (ok, log) = migrate(
        &a.db,
        &[
            fleet[0],
            fleet[1],
            ("OFFLINE_AFTER_SECS", "90"),
            ("AWAY_AFTER_SECS", "200"),
        ],
    );
    assert!(ok, "{log}");
    assert_eq!(stored(), 90);
    let (_, beater) = b.sign_up("beater").await;
    for replica in [&a, &b] {
        let adopted = eventually(Duration::from_secs(3), async || {
            let beat = replica
                .post("/api/users/heartbeat/", Some(&beater), None)
                .await;
            beat.body["away_after_secs"] == 200
        })
        .await;
        assert!(adopted, "the replica adopted the stored timings");
    }
    // Silent for 100 s: offline under the new window of 90 s, on both.
    a.db.execute(&format!(
        "UPDATE users SET last_seen = now() - interval '100 seconds' WHERE id = {id}"
    ));
    // Written behind both replicas' backs: each hears of it within a poll.
    for replica in [&a, &b] {
        let offline = eventually(Duration::from_secs(1), async || {
            let status = replica
                .get(&format!("/api/users/{id}/status/"), Some(&beater))
                .await;
            status.status == StatusCode::OK && status.body["presence"] == "offline"
        })
        .await;
        assert!(offline, "offline on every replica");
    }
    drop(token);
}
