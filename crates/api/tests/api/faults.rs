//! PostgreSQL stopped and started under the API (a server of the test's own): quick 503s
//! while it is down, cached sessions keep working, and no request fails on a dead pooled
//! connection once it is back.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use presence_api::testing::{OwnPostgres, TestApp, eventually};
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
        app.get("/api/users/me/", Some(&token)).await.status,
        StatusCode::OK
    );
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
