//! Failed logins are limited per account across replicas, and per process when Redis is
//! unreachable.

use actix_web::http::StatusCode;
use presence_api::testing::{PASSWORD, TestApp};
use serde_json::json;

async fn attempt(app: &TestApp, username: &str, password: &str) -> (StatusCode, Option<u64>) {
    let body = json!({ "username": username, "password": password });
    let response = app.post("/api/users/login/", None, Some(&body)).await;
    let retry_after = response
        .headers
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (response.status, retry_after)
}

#[actix_web::test]
async fn failed_logins_are_limited_per_account_across_replicas() {
    let a = TestApp::spawn_with(|config| config.login_max_failures_per_account = 4).await;
    let shared_prefix = a.config.redis.redis_prefix.clone();
    let b = TestApp::spawn_with(move |config| {
        config.login_max_failures_per_account = 4;
        config.redis.redis_prefix = shared_prefix;
    })
    .await;
    a.register("victim").await;
    a.register("bystander").await;
    for app in [&a, &b, &a, &b] {
        assert_eq!(
            attempt(app, "Victim", "wrong password").await,
            (StatusCode::UNAUTHORIZED, None)
        );
    }
    for app in [&a, &b] {
        let (status, retry_after) = attempt(app, "victim", "wrong password").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            retry_after.is_some_and(|secs| (1..=900).contains(&secs)),
            "{retry_after:?}"
        );
    }
    // Locked whatever the password: the check comes before the hash.
    assert_eq!(
        attempt(&a, "victim", PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(attempt(&a, "bystander", PASSWORD).await.0, StatusCode::OK);
}

#[actix_web::test]
async fn without_redis_each_process_still_limits_and_logins_work() {
    let app = TestApp::spawn_with(|config| {
        config.redis.redis_url = "redis://127.0.0.1:1".into();
        config.login_max_failures_per_account = 3;
    })
    .await;
    app.register("victim").await;
    app.register("bystander").await;
    for _ in 0..3 {
        assert_eq!(
            attempt(&app, "victim", "wrong password").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        attempt(&app, "victim", "wrong password").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(attempt(&app, "bystander", PASSWORD).await.0, StatusCode::OK);
}

#[actix_web::test]
async fn failed_logins_are_limited_per_address() {
    let app = TestApp::spawn_with(|config| config.login_max_failures_per_address = 3).await;
    app.register("someone").await;
    for name in ["guess1", "guess2", "guess3"] {
        assert_eq!(
            attempt(&app, name, "wrong password").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    // This address (the test's) has used up its failures, for every account.
    assert_eq!(
        attempt(&app, "someone", PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}
