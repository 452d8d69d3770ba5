//! The API's side of the outbox: real transitions are recorded (and a publish job
//! queued for each), nothing else is, and a Redis outage never fails a request nor loses
//! a transition.

use actix_web::http::StatusCode;
use presence_api::testing::TestApp;

/// The recorded transitions, oldest first, as (user, from, to, reason), and whether all
/// of them still wait to be published (no worker runs in these tests).
fn recorded(app: &TestApp) -> Vec<(i64, String, String, String)> {
    let mut conn = app.db.pool().get().unwrap();
    let mut events = Vec::new();
    for user in 1..=4 {
        if let Some(history) = presence_model::feed::presence_history(
            &mut conn,
            presence_model::ids::UserId(user),
            100,
        )
        .unwrap()
        {
            events.extend(history);
        }
    }
    events.sort_by_key(|e| e.id);
    assert_eq!(
        app.db
            .query_i64("SELECT count(*) AS n FROM unpublished_events"),
        events.len() as i64
    );
    events
        .into_iter()
        .map(|e| {
            (
                e.user_id.0,
                e.from.as_str().to_owned(),
                e.to.as_str().to_owned(),
                e.reason.as_str().to_owned(),
            )
        })
        .collect()
}

#[actix_web::test]
async fn only_real_transitions_are_queued() {
    let app = TestApp::spawn().await;
    let (id, token) = app.sign_up("alice").await;
    for _ in 0..3 {
        app.post("/api/users/heartbeat/", Some(&token), None).await;
    }
    // As after a sweep, which only takes users silent for a whole window: by then the
    // API no longer trusts their cached session (half a window at most).
    app.forget_cached_sessions();
    // As the sweep leaves them: disconnected, and others told so.
    app.db
        .execute("UPDATE users SET online_status = 'offline', published_presence = 'offline'");
    app.post("/api/users/heartbeat/", Some(&token), None).await;
    app.get("/api/users/me/", Some(&token)).await;
    app.post("/api/users/logout/", Some(&token), None).await;

    let summary = recorded(&app);
    let expected = [
        (id, "offline", "online", "login"),
        (id, "offline", "online", "heartbeat"),
        (id, "online", "offline", "logout"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(id, from, to, reason)| (*id, from.to_string(), to.to_string(), reason.to_string()))
        .collect();
    assert_eq!(summary, expected);
    assert_eq!(
        app.metric("presence_api_jobs_enqueued_total").await,
        3.0,
        "one publish job per transition"
    );
}

#[actix_web::test]
async fn requests_succeed_while_redis_is_down() {
    let app =
        TestApp::spawn_with(|config| config.redis.redis_url = "redis://127.0.0.1:1".into()).await;
    let (id, token) = app.sign_up("bob").await;
    // As the sweep leaves them: disconnected, and others told so.
    app.db
        .execute("UPDATE users SET online_status = 'offline', published_presence = 'offline'");
    let response = app.post("/api/users/heartbeat/", Some(&token), None).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body["online_status"], "online");
    let response = app.post("/api/users/logout/", Some(&token), None).await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.db.query_i64(&format!(
            "SELECT count(*) AS n FROM users WHERE id = {id} AND online_status = 'offline'"
        )),
        1
    );
    // Every transition is in the outbox all the same, for a worker to publish later.
    let reasons: Vec<_> = recorded(&app).into_iter().map(|e| e.3).collect();
    assert_eq!(reasons, ["login", "heartbeat", "logout"]);
}

#[actix_web::test]
async fn presence_history_is_for_the_user_and_admins() {
    let app = TestApp::spawn().await;
    let (carol, token) = app.sign_up("carol").await;
    let (_, other) = app.sign_up("dave").await;
    let admin = app.admin().await;
    app.post("/api/users/logout/", Some(&token), None).await;
    let token = app.login("carol").await;
    let path = format!("/api/users/{carol}/presence-history/");

    let own = app.get(&path, Some(&token)).await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.body["user_id"], carol);
    let events = own.body["events"].as_array().unwrap();
    let reasons: Vec<_> = events
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["login", "logout", "login"], "newest first");
    let ids: Vec<_> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    assert_eq!(events[0]["to"], "online");

    let limited = app.get(&format!("{path}?limit=1"), Some(&admin)).await;
    assert_eq!(limited.status, StatusCode::OK);
    assert_eq!(limited.body["events"].as_array().unwrap().len(), 1);

    let forbidden = app.get(&path, Some(&other)).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let missing = app
        .get("/api/users/999999/presence-history/", Some(&admin))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    for bad in ["0", "1001", "x"] {
        let response = app.get(&format!("{path}?limit={bad}"), Some(&admin)).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "limit={bad}");
    }
}

#[actix_web::test]
async fn a_swept_user_who_logs_out_makes_no_transition() {
    let app = TestApp::spawn().await;
    let (id, token) = app.sign_up("swept").await;
    app.db
        .execute("UPDATE users SET last_seen = now() - interval '10 minutes'");
    let swept: Vec<i64> = app.sweep().iter().map(|change| change.user_id.0).collect();
    assert_eq!(swept, [id]);
    let response = app.post("/api/users/logout/", Some(&token), None).await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    // Logging out is not activity: no flash online between the sweep and the logout.
    let reasons: Vec<_> = recorded(&app).into_iter().map(|e| e.3).collect();
    assert_eq!(reasons, ["login", "sweep"]);
    assert_eq!(
        app.db
            .query_i64("SELECT count(*) AS n FROM users WHERE online_status = 'offline'"),
        1
    );
}
