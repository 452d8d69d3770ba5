use std::time::{Duration, Instant};

use futures_util::StreamExt;
use presence_api::testing::TestApp;
use serde_json::Value;

use crate::helpers::{eventually, published_changes, queue_worker};

#[actix_web::test]
async fn login_heartbeat_logout_are_recorded_and_published_in_order() {
    let app = TestApp::spawn().await;
    let _worker = queue_worker(&app);
    let mut messages = published_changes(&app).await;

    let (id, token) = app.sign_up("alice").await;
    let logged_in = Instant::now();
    let first = actix_web::rt::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .expect("published")
        .unwrap();
    let latency = logged_in.elapsed();
    app.post("/api/users/heartbeat/", Some(&token), None).await;
    app.post("/api/users/logout/", Some(&token), None).await;
    let second = actix_web::rt::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .expect("published")
        .unwrap();

    let parse =
        |msg: redis::Msg| -> Value { serde_json::from_slice(msg.get_payload_bytes()).unwrap() };
    let (first, second) = (parse(first), parse(second));
    let summary = |v: &Value| {
        (
            v["user_id"].as_i64().unwrap(),
            v["from"].as_str().unwrap().to_owned(),
            v["to"].as_str().unwrap().to_owned(),
            v["reason"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(
        summary(&first),
        (id, "offline".into(), "online".into(), "login".into())
    );
    assert_eq!(
        summary(&second),
        (id, "online".into(), "offline".into(), "logout".into())
    );
    // Found by polling every 200 ms, not at the storage's 30 s heartbeat.
    assert!(
        latency < Duration::from_secs(3),
        "picked up after {latency:?}"
    );

    assert!(
        eventually(Duration::from_secs(5), || {
            app.db
                .query_i64("SELECT count(*) AS n FROM presence_events")
                == 2
        })
        .await
    );
    assert_eq!(
        app.db.query_i64(&format!(
            "SELECT count(*) AS n FROM presence_events WHERE user_id = {id} AND \
             ((reason = 'login' AND to_status = 'online') OR (reason = 'logout' AND to_status = 'offline'))"
        )),
        2
    );
    let admin = app.admin().await;
    let history = app
        .get(&format!("/api/users/{id}/presence-history/"), Some(&admin))
        .await;
    let reasons: Vec<_> = history.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(reasons, ["logout", "login"], "newest first");
    assert_eq!(history.body["events"][0], second);
}
