//! PostgreSQL stopped and started under the API (a server of the test's own): quick 503s
//! while it is down, cached sessions keep working, and no request fails on a dead pooled
//! connection once it is back.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use presence_api::testing::{PASSWORD, TestApp, spawn_api};
use presence_model::testing::TestDatabase;
use presence_testkit::{
    OwnPostgres, OwnRedis, RedisKeys, eventually, raw_http as http, wait_until,
};

#[actix_web::test]
async fn a_postgres_restart_costs_no_request_and_the_outage_answers_503_quickly() {
    let postgres = OwnPostgres::start();
    let app = TestApp::spawn_on(TestDatabase::on_server(&postgres.url()), |config| {
        config.database.database_pool_timeout_ms = 300;
    })
    .await;
    let (id, token) = app.sign_up("alice").await;
    let status_path = format!("/api/users/{id}/status/");
    // Open every pooled connection.
    let reads: Vec<_> = (0..8)
        .map(|_| app.get(&status_path, Some(&token)))
        .collect();
    for response in futures_util::future::join_all(reads).await {
        assert_eq!(response.status, StatusCode::OK);
    }

    // A restart nobody noticed: every pooled connection died with the server, and none
    // may fail a request.
    postgres.stop();
    postgres.start_again();
    let reads: Vec<_> = (0..30)
        .map(|_| app.get(&status_path, Some(&token)))
        .collect();
    let statuses: Vec<StatusCode> = futures_util::future::join_all(reads)
        .await
        .into_iter()
        .map(|response| response.status)
        .collect();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );

    // An outage. Until the replica's listener notices (its next poll), a status may still
    // come from memory, true since nobody can write; then it is a quick 503.
    postgres.stop();
    let deadline = Instant::now() + Duration::from_secs(2);
    let (response, waited) = loop {
        let started = Instant::now();
        let response = app.get(&status_path, Some(&token)).await;
        let waited = started.elapsed();
        if response.status != StatusCode::OK || Instant::now() > deadline {
            break (response, waited);
        }
    };
    assert_eq!(
        response.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        response.body
    );
    assert_eq!(response.body["error"]["code"], "unavailable");
    assert_eq!(response.headers.get("retry-after").unwrap(), "1");
    assert!(waited < Duration::from_secs(2), "answered after {waited:?}");
    // What the session cache can serve keeps working.
    assert_eq!(
        app.post("/api/users/heartbeat/", Some(&token), None)
            .await
            .status,
        StatusCode::OK
    );
    assert!(
        eventually(Duration::from_secs(2), || async {
            app.get("/readyz", None).await.status == StatusCode::SERVICE_UNAVAILABLE
        })
        .await
    );

    postgres.start_again();
    assert!(
        eventually(Duration::from_secs(2), || async {
            app.get("/readyz", None).await.status == StatusCode::OK
        })
        .await
    );
    for _ in 0..10 {
        assert_eq!(
            app.get(&status_path, Some(&token)).await.status,
            StatusCode::OK
        );
    }
    drop(app);
}

/// A replica whose `LISTEN` connection died with PostgreSQL catches up, once reconnected,
/// on revocations it could not hear, before trusting its cached sessions again.
#[test]
fn a_revocation_made_while_a_replica_was_not_listening_still_reaches_it() {
    let postgres = OwnPostgres::start();
    let db = TestDatabase::on_server(&postgres.url());
    let _keys = RedisKeys::of(&db);
    let api = env!("CARGO_BIN_EXE_presence-api");
    let (a, b) = (spawn_api(api, &db, &[]), spawn_api(api, &db, &[]));
    let (port_a, port_b) = (a.port(), b.port());
    let credentials = format!(r#"{{"username": "kim", "password": "{PASSWORD}"}}"#);
    assert_eq!(
        http(port_a, "POST", "/api/users/register/", None, &credentials).0,
        201
    );
    let (status, body) = http(port_a, "POST", "/api/users/login/", None, &credentials);
    assert_eq!(status, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    // B caches the session.
    assert_eq!(
        http(port_b, "GET", "/api/users/me/", Some(&token), "").0,
        200
    );

    postgres.stop();
    postgres.start_again();
    // A revokes as soon as PostgreSQL lets it, very likely before B listens again.
    assert!(wait_until(Duration::from_secs(10), || {
        http(port_a, "POST", "/api/users/logout/", Some(&token), "").0 == 204
    }));
    assert!(
        wait_until(Duration::from_secs(3), || {
            http(port_b, "GET", "/api/users/me/", Some(&token), "").0 == 401
        }),
        "B still accepts a token revoked while it was not listening"
    );
    for replica in [a, b] {
        let (status, log) = replica.terminate(Duration::from_secs(15));
        assert!(status.is_some_and(|s| s.success()), "{log}");
    }
}

/// Every key Redis holds under the app's prefix.
fn redis_keys(redis_url: &str, prefix: &str) -> Vec<String> {
    let mut conn = redis::Client::open(redis_url)
        .unwrap()
        .get_connection()
        .unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut conn)
        .unwrap();
    keys.sort();
    keys
}

#[actix_web::test]
async fn the_first_uses_of_redis_after_it_restarts_succeed_on_every_replica() {
    let mut redis = OwnRedis::start();
    let url = redis.url();
    let a = TestApp::spawn_with(|config| config.redis.redis_url = url.clone()).await;
    let b = a.replica(|_| {}).await;
    let (_, token) = a.sign_up("alice").await;
    let soon = || (chrono::Utc::now() + chrono::TimeDelta::seconds(30)).to_rfc3339();
    let dnd = serde_json::json!({ "availability": "dnd", "until": soon() });
    for app in [&a, &b] {
        // Every connection a replica holds to Redis is open: tickets, nudges, end jobs.
        assert_eq!(
            app.post("/api/presence/tickets/", Some(&token), None)
                .await
                .status,
            StatusCode::CREATED
        );
        assert_eq!(
            app.put("/api/users/me/status/", Some(&token), Some(&dnd))
                .await
                .status,
            StatusCode::OK
        );
    }
    let failures =
        async |app: &TestApp| app.metric("presence_api_job_enqueue_failures_total").await;
    assert_eq!(failures(&a).await + failures(&b).await, 0.0);

    redis.kill();
    redis.start_again();
    for app in [&a, &b] {
        let ticket = app.post("/api/presence/tickets/", Some(&token), None).await;
        assert_eq!(ticket.status, StatusCode::CREATED, "{}", ticket.body);
        // A new end (a job) and a transition (a nudge), each on its held connection.
        let dnd = serde_json::json!({ "availability": "dnd", "until": soon() });
        assert_eq!(
            app.put("/api/users/me/status/", Some(&token), Some(&dnd))
                .await
                .status,
            StatusCode::OK
        );
        let auto = serde_json::json!({ "availability": "auto" });
        assert_eq!(
            app.put("/api/users/me/status/", Some(&token), Some(&auto))
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(failures(&a).await + failures(&b).await, 0.0);
    let keys = redis_keys(&url, &a.config.redis.redis_prefix);
    assert!(
        keys.iter().any(|key| key.contains(":expiry:")),
        "the end jobs were queued: {keys:?}"
    );
}

#[actix_web::test]
async fn status_ends_far_ahead_and_repeated_changes_leave_nothing_behind_in_redis() {
    let app = TestApp::spawn().await;
    let (_, token) = app.sign_up("hoarder").await;
    let prefix = app.config.redis.redis_prefix.clone();
    let before = redis_keys(&app.config.redis.redis_url, &prefix);
    // 300 ends between an hour and 29 days ahead, then `auto`: none of them is a job yet
    // (a sweep queues an end when it comes within `SCHEDULE_AHEAD`), and no status change
    // leaves a publish job behind.
    for hours in 1..=300 {
        let until = chrono::Utc::now() + chrono::TimeDelta::hours(hours * 2);
        let body = serde_json::json!({ "availability": "dnd", "until": until.to_rfc3339() });
        let response = app
            .put("/api/users/me/status/", Some(&token), Some(&body))
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    }
    let auto = serde_json::json!({ "availability": "auto" });
    app.put("/api/users/me/status/", Some(&token), Some(&auto))
        .await;
    assert_eq!(redis_keys(&app.config.redis.redis_url, &prefix), before);

    // Ends within the horizon share one job per second.
    let second = chrono::Utc::now() + chrono::TimeDelta::seconds(90);
    for n in 0..50 {
        let until = second + chrono::TimeDelta::milliseconds(n);
        let body = serde_json::json!({ "availability": "dnd", "until": until.to_rfc3339() });
        app.put("/api/users/me/status/", Some(&token), Some(&body))
            .await;
    }
    let mut conn = redis::Client::open(app.config.redis.redis_url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    // apalis-redis's set of scheduled jobs.
    let scheduled_jobs = format!("{}:scheduled", presence_model::jobs::expiry_queue(&prefix));
    let scheduled: i64 = redis::cmd("ZCARD")
        .arg(scheduled_jobs)
        .query(&mut conn)
        .unwrap();
    assert!(
        (1..=2).contains(&scheduled),
        "{scheduled} jobs for ends within one or two seconds"
    );
    assert_eq!(
        app.metric("presence_api_job_enqueue_failures_total").await,
        0.0
    );
}
