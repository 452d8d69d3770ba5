//! PostgreSQL stopped and started under the API (a server of the test's own): quick 503s
//! while it is down, cached sessions keep working, and no request fails on a dead pooled
//! connection once it is back.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use presence_api::testing::{
    OwnPostgres, PASSWORD, RedisKeys, TestApp, eventually, raw_http as http, spawn_api, wait_until,
};
use presence_model::testing::TestDatabase;

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

    // An outage.
    postgres.stop();
    let started = Instant::now();
    let response = app.get(&status_path, Some(&token)).await;
    let waited = started.elapsed();
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
