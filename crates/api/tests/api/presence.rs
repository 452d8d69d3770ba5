use actix_web::http::StatusCode;

use presence_api::testing::TestApp;

async fn shown_status(app: &TestApp, token: &str, user_id: i64) -> String {
    let response = app
        .get(&format!("/api/users/{user_id}/status/"), Some(token))
        .await;
    assert_eq!(response.status, StatusCode::OK);
    response.body["online_status"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn heartbeat_refreshes_last_seen_and_keeps_user_online() {
    let app = TestApp::spawn().await;
    let (id, token) = app.sign_up("alice").await;
    app.db.execute(&format!(
        "UPDATE users SET last_seen = now() - interval '60 seconds' WHERE id = {id}"
    ));
    app.db
        .execute("UPDATE sessions SET last_seen = now() - interval '90 seconds'");
    let response = app.post("/api/users/heartbeat/", Some(&token), None).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body["online_status"], "online");
    let last_seen =
        chrono::DateTime::parse_from_rfc3339(response.body["last_seen"].as_str().unwrap()).unwrap();
    assert!(chrono::Utc::now().signed_duration_since(last_seen) < chrono::TimeDelta::seconds(10));
    // Written by the next flush, not by the request.
    app.flush().await;
    assert_eq!(
        app.db.query_i64(&format!(
            "SELECT count(*) AS n FROM users WHERE id = {id} AND last_seen > now() - interval '10 seconds'"
        )),
        1
    );
    assert_eq!(
        app.db.query_i64(
            "SELECT count(*) AS n FROM sessions WHERE last_seen > now() - interval '10 seconds'"
        ),
        1,
        "the session's last_seen is refreshed too"
    );
}

#[actix_web::test]
async fn any_authenticated_request_brings_a_swept_user_back_online() {
    let app = TestApp::spawn().await;
    let (id, token) = app.sign_up("bob").await;
    app.db
        .execute("UPDATE users SET last_seen = now() - interval '1 hour'");
    let swept: Vec<i64> = app.sweep().iter().map(|change| change.user_id.0).collect();
    assert_eq!(swept, [id]);

    let me = app.get("/api/users/me/", Some(&token)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["online_status"], "online");
    assert_eq!(shown_status(&app, &token, id).await, "online");
}

#[actix_web::test]
async fn logout_goes_offline_only_when_no_other_session_is_live() {
    let app = TestApp::spawn().await;
    let (id, phone) = app.sign_up("carol").await;
    let laptop = app.login("carol").await;
    let (_, observer) = app.sign_up("observer").await;

    let response = app.post("/api/users/logout/", Some(&phone), None).await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert_eq!(
        shown_status(&app, &observer, id).await,
        "online",
        "laptop is live"
    );

    let response = app.post("/api/users/logout", Some(&laptop), None).await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert_eq!(shown_status(&app, &observer, id).await, "offline");
}

#[actix_web::test]
async fn a_stale_other_session_does_not_keep_the_user_online() {
    let app = TestApp::spawn().await;
    let (id, _forgotten_tab) = app.sign_up("dave").await;
    let current = app.login("dave").await;
    let (_, observer) = app.sign_up("observer").await;
    app.db.execute(&format!(
        "UPDATE sessions SET last_seen = now() - interval '10 minutes' \
         WHERE id = (SELECT min(id) FROM sessions WHERE user_id = {id})"
    ));
    app.post("/api/users/logout/", Some(&current), None).await;
    assert_eq!(shown_status(&app, &observer, id).await, "offline");
}

#[actix_web::test]
async fn a_revoked_token_is_refused_and_never_brings_the_user_back() {
    let app = TestApp::spawn().await;
    let (id, token) = app.sign_up("erin").await;
    let (_, observer) = app.sign_up("observer").await;
    app.post("/api/users/logout/", Some(&token), None).await;

    for _ in 0..2 {
        let response = app.post("/api/users/heartbeat/", Some(&token), None).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
        let response = app.get("/api/users/me/", Some(&token)).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(shown_status(&app, &observer, id).await, "offline");
    let response = app.post("/api/users/logout/", Some(&token), None).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn readers_never_see_online_past_the_window_even_if_no_sweep_ran() {
    let app = TestApp::spawn_with(|config| config.offline_after_secs = 30).await;
    let (id, _) = app.sign_up("frank").await;
    let admin = app.admin().await;
    // The flag still says online: only the read-time rule can hide it.
    app.db.execute(&format!(
        "UPDATE users SET last_seen = now() - interval '31 seconds' WHERE id = {id}"
    ));
    assert_eq!(
        app.db.query_i64(&format!(
            "SELECT count(*) AS n FROM users WHERE id = {id} AND online_status = 'online'"
        )),
        1
    );
    assert_eq!(shown_status(&app, &admin, id).await, "offline");
    let count = app.get("/api/users/online-count/", Some(&admin)).await;
    assert_eq!(count.body["count"], 1, "only the admin");
    let all = app.get("/api/users/all-users/", Some(&admin)).await;
    assert_eq!(all.body["users"][0]["id"], id);
    assert_eq!(all.body["users"][0]["online_status"], "offline");
    let online = app
        .get("/api/users/all-users/?status=online", Some(&admin))
        .await;
    assert_eq!(online.body["count"], 1);
}

#[actix_web::test]
async fn two_hundred_concurrent_heartbeats_from_fifty_users() {
    let app = std::rc::Rc::new(TestApp::spawn().await);
    // Signed up one by one: fifty at once would be answered 503 beyond the hashing queue.
    let mut users = Vec::new();
    for n in 0..50 {
        users.push(app.sign_up(&format!("user{n}")).await);
    }
    app.db
        .execute("UPDATE users SET last_seen = now() - interval '100 seconds'");

    let mut beats = Vec::new();
    for i in 0..200 {
        let app = app.clone();
        let token = users[i % users.len()].1.clone();
        beats.push(actix_web::rt::spawn(async move {
            app.post("/api/users/heartbeat/", Some(&token), None).await
        }));
    }
    for beat in beats {
        let response = beat.await.unwrap();
        assert_eq!(response.status, StatusCode::OK, "{:?}", response.body);
        assert_eq!(response.body["online_status"], "online");
    }
    app.flush().await;
    assert_eq!(
        app.db.query_i64(
            "SELECT count(*) AS n FROM users \
             WHERE online_status = 'online' AND last_seen > now() - interval '30 seconds'"
        ),
        50
    );
    assert_eq!(app.db.query_i64("SELECT count(*) AS n FROM sessions"), 50);
}

#[actix_web::test]
async fn times_have_the_stored_precision_whether_from_memory_or_the_database() {
    let app = TestApp::spawn().await;
    let (id, token) = app.sign_up("precise").await;
    let fraction_digits = |time: &serde_json::Value| {
        let text = time.as_str().unwrap();
        let fraction = text
            .split_once('.')
            .map_or("", |(_, f)| f.trim_end_matches('Z'));
        fraction.len()
    };
    for _ in 0..20 {
        // Answered from memory (deferred), then read back from the database.
        let beat = app.post("/api/users/heartbeat/", Some(&token), None).await;
        assert!(
            fraction_digits(&beat.body["last_seen"]) <= 6,
            "{}",
            beat.body
        );
        let me = app.get("/api/users/me/", Some(&token)).await;
        assert!(fraction_digits(&me.body["last_seen"]) <= 6, "{}", me.body);
    }
    app.flush().await;
    let beat = app.post("/api/users/heartbeat/", Some(&token), None).await;
    app.flush().await;
    let stored = app
        .get(&format!("/api/users/{id}/status/"), Some(&token))
        .await;
    assert!(stored.body["last_seen"].as_str() >= beat.body["last_seen"].as_str());
}
