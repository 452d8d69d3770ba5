//! Failed logins are limited per account across replicas, and per process when Redis is
//! unreachable; registrations and logins have quotas per address and per deployment, and
//! a flood of registrations leaves logins their share of hashing.

use actix_web::http::StatusCode;
use presence_api::testing::{PASSWORD, TestApp};
use serde_json::json;

async fn attempt(app: &TestApp, username: &str, password: &str) -> (StatusCode, Option<u64>) {
    credentials(app, "/api/users/login/", username, password).await
}

/// Posts `{username, password}` to `path`: the status and `Retry-After`, if any.
async fn credentials(
    app: &TestApp,
    path: &str,
    username: &str,
    password: &str,
) -> (StatusCode, Option<u64>) {
    let body = json!({ "username": username, "password": password });
    let response = app.post(path, None, Some(&body)).await;
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

async fn register(app: &TestApp, username: &str) -> (StatusCode, Option<u64>) {
    credentials(app, "/api/users/register/", username, PASSWORD).await
}

#[actix_web::test]
async fn registrations_are_limited_per_address_and_for_the_deployment_across_replicas() {
    let a = TestApp::spawn_with(|config| config.registrations_per_address_per_hour = 3).await;
    let b = a.replica(|_| {}).await;
    for (app, name) in [(&a, "one"), (&b, "two"), (&a, "three")] {
        assert_eq!(register(app, name).await.0, StatusCode::CREATED);
    }
    for app in [&a, &b] {
        let (status, retry_after) = register(app, "four").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(retry_after.is_some_and(|secs| (1..=3600).contains(&secs)));
    }
    // Refused before any hashing: no row, and logins are not counted with registrations.
    assert_eq!(
        a.db.query_i64("SELECT count(*) AS n FROM users WHERE username = 'four'"),
        0
    );
    assert_eq!(attempt(&b, "one", PASSWORD).await.0, StatusCode::OK);

    let all = TestApp::spawn_with(|config| config.registrations_per_minute = 2).await;
    let other = all.replica(|_| {}).await;
    assert_eq!(register(&all, "first").await.0, StatusCode::CREATED);
    assert_eq!(register(&other, "second").await.0, StatusCode::CREATED);
    assert_eq!(
        register(&all, "third").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[actix_web::test]
async fn logins_are_limited_per_address_right_password_or_not() {
    let app = TestApp::spawn_with(|config| config.logins_per_address_per_minute = 3).await;
    app.register("frequent").await;
    for _ in 0..3 {
        assert_eq!(attempt(&app, "frequent", PASSWORD).await.0, StatusCode::OK);
    }
    let (status, retry_after) = attempt(&app, "frequent", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after.is_some_and(|secs| (1..=60).contains(&secs)));
}

#[actix_web::test]
async fn a_registration_flood_leaves_logins_their_share_of_hashing() {
    // One hashing slot, as on a 2-core machine: registrations may hold it, but only one
    // waits for it at a time, so a login waits behind at most one registration.
    let app = TestApp::spawn_with(|config| config.password_hashes_in_flight = 1).await;
    app.register("victim").await;
    let flood: Vec<_> = (0..40)
        .map(|n| {
            let app = &app;
            async move { register(app, &format!("flood{n}")).await.0 }
        })
        .collect();
    let victim = async {
        let started = std::time::Instant::now();
        let (status, _) = attempt(&app, "victim", PASSWORD).await;
        (status, started.elapsed())
    };
    let (statuses, (victim_status, victim_waited)) =
        futures_util::future::join(futures_util::future::join_all(flood), victim).await;
    assert_eq!(victim_status, StatusCode::OK);
    eprintln!("the victim's login took {victim_waited:?} during 40 registrations");
    // Registrations waiting beyond their share (1 slot, 16 waiting) are refused at once.
    assert!(
        statuses
            .iter()
            .all(|s| [StatusCode::CREATED, StatusCode::SERVICE_UNAVAILABLE].contains(s))
    );
    assert!(
        statuses.contains(&StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
}
