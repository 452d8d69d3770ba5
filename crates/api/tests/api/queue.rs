//! The API's side of the job queue: transitions are queued, nothing else is, and a
//! Redis outage never fails a request.

use actix_web::http::StatusCode;
use presence_api::testing::TestApp;
use presence_model::jobs::{PresenceChanges, presence_changes_queue};
use redis::Commands;

/// The jobs waiting in this app's queue, oldest first (apalis-redis files new jobs in a
/// sorted set by due time, promoted to a list when due, and keeps their JSON in a hash).
fn queued_jobs(app: &TestApp) -> Vec<PresenceChanges> {
    let queue = presence_changes_queue(&app.config.redis_prefix);
    let mut conn = redis::Client::open(app.config.redis_url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let ids: Vec<String> = conn.zrange(format!("{queue}:scheduled"), 0, -1).unwrap();
    ids.iter()
        .map(|id| {
            let json: Vec<u8> = conn.hget(format!("{queue}:data"), id).unwrap();
            serde_json::from_slice(&json).unwrap()
        })
        .collect()
}

#[actix_web::test]
async fn only_real_transitions_are_queued() {
    // A short window, so that session cache entries (kept half a window) expire quickly.
    let app = TestApp::spawn_with(|config| config.offline_after_secs = 2).await;
    let (id, token) = app.sign_up("alice").await;
    for _ in 0..3 {
        app.post("/api/users/heartbeat/", Some(&token), None).await;
    }
    // As after a sweep, which only takes users silent for a whole window: by then the
    // API's session cache has moved on.
    actix_web::rt::time::sleep(std::time::Duration::from_millis(1100)).await;
    app.db.execute("UPDATE users SET online_status = 'offline'");
    app.post("/api/users/heartbeat/", Some(&token), None).await;
    app.get("/api/users/me/", Some(&token)).await;
    app.post("/api/users/logout/", Some(&token), None).await;

    let jobs = queued_jobs(&app);
    let summary: Vec<_> = jobs
        .iter()
        .flat_map(|job| &job.0)
        .map(|c| (c.user_id, c.from.as_str(), c.to.as_str(), c.reason.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (id, "offline", "online", "login"),
            (id, "offline", "online", "heartbeat"),
            (id, "online", "offline", "logout"),
        ]
    );
}

#[actix_web::test]
async fn requests_succeed_while_redis_is_down() {
    let app = TestApp::spawn_with(|config| config.redis_url = "redis://127.0.0.1:1".into()).await;
    let (id, token) = app.sign_up("bob").await;
    app.db.execute("UPDATE users SET online_status = 'offline'");
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
}

#[actix_web::test]
async fn presence_history_is_for_the_user_and_admins() {
    use presence_model::OnlineStatus::{Offline, Online};
    use presence_model::events::record_presence_changes;
    use presence_model::jobs::{ChangeReason, PresenceChanged};

    let app = TestApp::spawn().await;
    let (carol, token) = app.sign_up("carol").await;
    let (_, other) = app.sign_up("dave").await;
    let admin = app.admin().await;
    let at = |s: i64| chrono::DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
    let change = |from, to, s, reason| PresenceChanged {
        user_id: carol,
        from,
        to,
        at: at(s),
        reason,
    };
    record_presence_changes(
        &mut app.db.pool().get().unwrap(),
        &[
            change(Offline, Online, 0, ChangeReason::Login),
            change(Online, Offline, 60, ChangeReason::Sweep),
            change(Offline, Online, 90, ChangeReason::Heartbeat),
        ],
    )
    .unwrap();
    let path = format!("/api/users/{carol}/presence-history/");

    let own = app.get(&path, Some(&token)).await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.body["user_id"], carol);
    let reasons: Vec<_> = own.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["heartbeat", "sweep", "login"], "newest first");
    assert_eq!(own.body["events"][0]["at"], "2027-01-15T08:01:30Z");

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
