//! Deferred `last_seen` writes and cached authentication, across real processes.

use std::time::Duration;

use actix_web::http::StatusCode;
use presence_api::testing::{PASSWORD, TestApp, spawn_api};
use presence_model::testing::TestDatabase;
use presence_testkit::{Process, RedisKeys, raw_http as http, test_redis_url, wait_until};

fn serve(db: &TestDatabase, env: &[(&str, &str)]) -> Process {
    spawn_api(env!("CARGO_BIN_EXE_presence-api"), db, env)
}

fn login(port: u16, username: &str) -> String {
    let credentials = format!(r#"{{"username": "{username}", "password": "{PASSWORD}"}}"#);
    let (status, body) = http(port, "POST", "/api/users/register/", None, &credentials);
    assert_eq!(status, 201, "{body}");
    let (status, body) = http(port, "POST", "/api/users/login/", None, &credentials);
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    body["token"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn heartbeats_of_online_users_are_written_by_the_flush() {
    let app = TestApp::spawn_with(|config| config.last_seen_flush_ms = 50_000).await;
    let (id, token) = app.sign_up("alice").await;
    let stored_age = |app: &TestApp| {
        app.db.query_i64(&format!(
            "SELECT extract(epoch FROM now() - last_seen)::bigint AS n FROM users WHERE id = {id}"
        ))
    };
    // Inside the window by more than two flush intervals: safe to defer.
    app.db
        .execute("UPDATE users SET last_seen = now() - interval '10 seconds'");
    for _ in 0..20 {
        let response = app.post("/api/users/heartbeat/", Some(&token), None).await;
        assert_eq!(response.status, StatusCode::OK);
        let reported =
            chrono::DateTime::parse_from_rfc3339(response.body["last_seen"].as_str().unwrap())
                .unwrap();
        assert!(chrono::Utc::now() - reported.to_utc() < chrono::TimeDelta::seconds(2));
    }
    assert!(stored_age(&app) >= 10, "20 heartbeats, no write yet");
    app.flush().await;
    assert!(stored_age(&app) <= 2, "one write for all of them");
}

#[test]
fn pending_activity_is_written_on_graceful_shutdown() {
    let db = TestDatabase::new();
    let _keys = RedisKeys::of(&db);
    let server = serve(
        &db,
        &[
            ("OFFLINE_AFTER_SECS", "300"),
            ("LAST_SEEN_FLUSH_MS", "120000"),
            ("HEARTBEAT_INTERVAL_MS", "1000"),
        ],
    );
    let port = server.port();
    let token = login(port, "bob");
    // Stored inside the window but not fresh: the heartbeat (the session's first
    // authenticated request, so looked up, not cached) is deferred.
    db.execute("UPDATE users SET last_seen = now() - interval '30 seconds'");
    let (status, _) = http(port, "POST", "/api/users/heartbeat/", Some(&token), "");
    assert_eq!(status, 200);
    let fresh = "SELECT count(*) AS n FROM users WHERE last_seen > now() - interval '10 seconds'";
    assert_eq!(db.query_i64(fresh), 0, "deferred");
    // The replica's promise (made by its first flush, at start) holds the sweep back.
    let promises = "SELECT count(*) AS n FROM activity_flushes";
    assert!(wait_until(Duration::from_secs(5), || db
        .query_i64(promises)
        == 1));
    let (status, log) = server.terminate(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{log}");
    assert_eq!(db.query_i64(fresh), 1, "written before exit");
    assert_eq!(db.query_i64(promises), 0, "withdrawn on a graceful stop");
}

#[test]
fn startup_refuses_a_flush_interval_that_could_sweep_active_users() {
    let db = TestDatabase::new();
    let _keys = RedisKeys::of(&db);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_presence-api"))
        .arg("serve")
        .env("DATABASE_URL", db.url())
        .env("OFFLINE_AFTER_SECS", "60")
        .env("LAST_SEEN_FLUSH_MS", "10000")
        .env("HEARTBEAT_INTERVAL_MS", "30000")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("flush interval (10000 ms) + heartbeat interval (30000 ms)")
            && stderr.contains("lower LAST_SEEN_FLUSH_MS or HEARTBEAT_INTERVAL_MS"),
        "{stderr}"
    );
}

#[test]
fn a_replica_with_another_window_refuses_to_start_naming_both() {
    let db = TestDatabase::new();
    let _keys = RedisKeys::of(&db);
    let api = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_presence-api"));
        command
            .env("DATABASE_URL", db.url())
            .env("LAST_SEEN_FLUSH_MS", "1000")
            .env("HEARTBEAT_INTERVAL_MS", "1000")
            .env("LISTEN_ADDR", "127.0.0.1:0");
        command
    };
    let first = serve(&db, &[("OFFLINE_AFTER_SECS", "120")]);
    first.port();
    let output = api()
        .arg("serve")
        .env("OFFLINE_AFTER_SECS", "60")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("OFFLINE_AFTER_SECS is 60 here, but 120"),
        "{stderr}"
    );
    let (status, log) = first.terminate(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{log}");

    // Changed deliberately, for everyone: then a replica with the new window starts.
    let migrated = api()
        .arg("migrate")
        .env("OFFLINE_AFTER_SECS", "60")
        .output()
        .unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    let second = serve(
        &db,
        &[
            ("OFFLINE_AFTER_SECS", "60"),
            ("LAST_SEEN_FLUSH_MS", "1000"),
            ("HEARTBEAT_INTERVAL_MS", "1000"),
        ],
    );
    second.port();
    let (status, log) = second.terminate(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{log}");
}

#[test]
fn a_logged_out_token_is_refused_by_every_replica_within_a_second_whatever_redis_does() {
    const DEAD_REDIS: &str = "redis://127.0.0.1:1";
    let live = test_redis_url();
    // (case, Redis of the revoking replica A, Redis of the other replica B)
    let cases = [
        ("redis up", live.as_str(), live.as_str()),
        ("redis down", DEAD_REDIS, DEAD_REDIS),
        (
            "only the revoking replica cut off",
            DEAD_REDIS,
            live.as_str(),
        ),
    ];
    for (n, (case, redis_a, redis_b)) in cases.into_iter().enumerate() {
        let db = TestDatabase::new();
        let _keys = RedisKeys::of(&db);
        let env = |redis| [("LAST_SEEN_FLUSH_MS", "200"), ("REDIS_URL", redis)];
        let (a, b) = (serve(&db, &env(redis_a)), serve(&db, &env(redis_b)));
        let (port_a, port_b) = (a.port(), b.port());
        let token = login(port_a, &format!("carol{n}"));
        // B caches the session.
        for _ in 0..3 {
            assert_eq!(
                http(port_b, "POST", "/api/users/heartbeat/", Some(&token), "").0,
                200,
                "{case}"
            );
        }
        assert_eq!(
            http(port_a, "POST", "/api/users/logout/", Some(&token), "").0,
            204,
            "{case}"
        );
        let refused = wait_until(Duration::from_secs(1), || {
            http(port_b, "GET", "/api/users/me/", Some(&token), "").0 == 401
        });
        assert!(refused, "{case}: B still accepts the token after 1 s");
        // Whatever B answered meanwhile never brought the user back online.
        for replica in [a, b] {
            let (status, log) = replica.terminate(Duration::from_secs(15));
            assert!(status.is_some_and(|s| s.success()), "{case}: {log}");
        }
        assert_eq!(
            db.query_i64("SELECT count(*) AS n FROM users WHERE online_status = 'offline'"),
            1,
            "{case}"
        );
    }
}

#[actix_web::test]
async fn with_the_revocation_feed_sessions_are_served_from_cache() {
    let app = TestApp::spawn().await;
    let (_, token) = app.sign_up("erin").await;
    assert_eq!(
        app.get("/api/users/me/", Some(&token)).await.status,
        StatusCode::OK
    );
    // Sessions only end through logout, which announces it; a change behind the API's
    // back shows that the cached entry is trusted (no database read).
    app.db.execute("UPDATE sessions SET revoked_at = now()");
    assert_eq!(
        app.get("/api/users/me/", Some(&token)).await.status,
        StatusCode::OK
    );
    // Logout announces it: refused at once.
    app.db.execute("UPDATE sessions SET revoked_at = NULL");
    app.post("/api/users/logout/", Some(&token), None).await;
    assert_eq!(
        app.get("/api/users/me/", Some(&token)).await.status,
        StatusCode::UNAUTHORIZED
    );
}
