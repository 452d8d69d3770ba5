//! Manual statuses behind the real API and worker: an end applied by the job scheduled for
//! it, and what the published channel says about an invisible user.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::StreamExt;
use presence_api::testing::TestApp;
use serde_json::{Value, json};

use crate::helpers::{published_changes, queue_worker};

/// The API and a worker (whose sweep never fires: it must not be what ends a status) on
/// the test's database and Redis prefix, and a subscriber to the published transitions.
async fn app_worker_and_channel() -> (
    TestApp,
    presence_testkit::Process,
    impl futures_util::Stream<Item = redis::Msg> + Unpin,
) {
    let app = TestApp::spawn().await;
    let worker = queue_worker(&app);
    let messages = published_changes(&app).await;
    (app, worker, messages)
}

/// The next published transition of `user`, skipping others'.
async fn next_of(
    messages: &mut (impl futures_util::Stream<Item = redis::Msg> + Unpin),
    user: i64,
) -> Value {
    loop {
        let message = actix_web::rt::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("published within 10 s")
            .expect("subscribed");
        let event: Value = serde_json::from_slice(message.get_payload_bytes()).unwrap();
        if event["user_id"] == user {
            return event;
        }
    }
}

#[actix_web::test]
async fn a_dnd_ends_within_a_second_of_its_until_by_its_scheduled_job() {
    let (app, _worker, mut messages) = app_worker_and_channel().await;
    let (id, token) = app.sign_up("alice").await;
    assert_eq!(next_of(&mut messages, id).await["reason"], "login");
    let until = Utc::now() + TimeDelta::milliseconds(2500);
    let body = json!({ "availability": "dnd", "until": until.to_rfc3339(), "text": "focus" });
    let response = app
        .put("/api/users/me/status/", Some(&token), Some(&body))
        .await;
    assert_eq!(response.status, actix_web::http::StatusCode::OK);
    let manual = next_of(&mut messages, id).await;
    assert_eq!(
        (&manual["from"], &manual["to"], &manual["reason"]),
        (&json!("online"), &json!("dnd"), &json!("manual"))
    );
    assert_eq!(manual["status_text"], "focus");
    assert!(manual["dnd_until"].is_string());

    let ended = next_of(&mut messages, id).await;
    assert_eq!(
        (&ended["from"], &ended["to"], &ended["reason"]),
        (&json!("dnd"), &json!("online"), &json!("expiry"))
    );
    assert!(ended["dnd_until"].is_null());
    assert_eq!(
        ended["status_text"], "focus",
        "the text has no end of its own"
    );
    // Recorded (by the database's clock) no earlier than `until`, and within a second.
    let at: DateTime<Utc> = serde_json::from_value(ended["at"].clone()).unwrap();
    assert!(at >= until, "ended at {at}, before {until}");
    assert!(
        at - until <= TimeDelta::seconds(1),
        "ended {} ms after its until",
        (at - until).num_milliseconds()
    );
    assert_eq!(
        app.db.query_i64("SELECT count(*) AS n FROM sweep_runs"),
        0,
        "no sweep ran"
    );
}

#[actix_web::test]
async fn the_published_channel_tells_an_invisible_user_from_a_logged_out_one_in_nothing() {
    let (app, _worker, mut messages) = app_worker_and_channel().await;
    let (hidden, hidden_token) = app.sign_up("bob").await;
    let (gone, gone_token) = app.sign_up("carol").await;
    next_of(&mut messages, hidden).await;
    next_of(&mut messages, gone).await;
    let invisible = json!({ "availability": "invisible" });
    app.put(
        "/api/users/me/status/",
        Some(&hidden_token),
        Some(&invisible),
    )
    .await;
    app.post("/api/users/logout/", Some(&gone_token), None)
        .await;
    let went_invisible = next_of(&mut messages, hidden).await;
    let logged_out = next_of(&mut messages, gone).await;
    let comparable = |mut event: Value| {
        let object = event.as_object_mut().unwrap();
        for varying in ["id", "user_id", "at", "last_seen", "revision"] {
            object.remove(varying);
        }
        event
    };
    assert_eq!(comparable(went_invisible.clone()), comparable(logged_out));
    let frozen: DateTime<Utc> =
        serde_json::from_value(went_invisible["last_seen"].clone()).unwrap();
    let at: DateTime<Utc> = serde_json::from_value(went_invisible["at"].clone()).unwrap();
    assert!(
        frozen <= at && at - frozen < TimeDelta::seconds(1),
        "{went_invisible}"
    );

    // While invisible, use and custom status changes publish nothing.
    app.post("/api/users/heartbeat/", Some(&hidden_token), None)
        .await;
    let text = json!({ "text": "hiding" });
    app.put("/api/users/me/status/", Some(&hidden_token), Some(&text))
        .await;
    app.put(
        "/api/users/me/status/",
        Some(&hidden_token),
        Some(&json!({ "availability": "auto" })),
    )
    .await;
    let back = next_of(&mut messages, hidden).await;
    assert_eq!(
        (&back["from"], &back["to"], &back["reason"]),
        (&json!("offline"), &json!("online"), &json!("login")),
        "the first thing published after going invisible is the return"
    );
    assert_eq!(back["status_text"], "hiding");
}

#[actix_web::test]
async fn ends_in_one_second_share_a_job_and_each_ends_at_its_moment() {
    let (app, _worker, mut messages) = app_worker_and_channel().await;
    let (early, early_token) = app.sign_up("early").await;
    let (late, late_token) = app.sign_up("late").await;
    // Two ends in one second, 600 ms apart: one job, woken for each.
    let second = Utc::now().timestamp() + 3;
    let early_until = DateTime::from_timestamp(second, 150_000_000).unwrap();
    let late_until = DateTime::from_timestamp(second, 750_000_000).unwrap();
    for (token, until) in [(&early_token, early_until), (&late_token, late_until)] {
        let body = json!({ "availability": "dnd", "until": until.to_rfc3339() });
        let response = app
            .put("/api/users/me/status/", Some(token), Some(&body))
            .await;
        assert_eq!(response.status, actix_web::http::StatusCode::OK);
    }
    for (user, until) in [(early, early_until), (late, late_until)] {
        let ended = loop {
            let event = next_of(&mut messages, user).await;
            if event["reason"] == "expiry" {
                break event;
            }
        };
        let at: DateTime<Utc> = serde_json::from_value(ended["at"].clone()).unwrap();
        assert!(at >= until, "ended at {at}, before {until}");
        assert!(
            at - until <= TimeDelta::milliseconds(400),
            "ended at {at}, {until} was due"
        );
    }
}

#[actix_web::test]
async fn a_sweep_queues_the_job_of_an_end_that_came_near() {
    let app = TestApp::spawn().await;
    let (id, _) = app.sign_up("patient").await;
    // As an end set long ago, beyond `SCHEDULE_AHEAD`, is now: near, with no job.
    app.db.execute(&format!(
        "UPDATE users SET availability = 'dnd', availability_until = now() + interval '4 seconds' \
         WHERE id = {id}"
    ));
    let due: i64 = app.db.query_i64(&format!(
        "SELECT extract(epoch FROM date_trunc('second', availability_until))::bigint AS n \
         FROM users WHERE id = {id}"
    ));
    let _worker = crate::helpers::WorkerEnv {
        database_url: app.db.url(),
        redis_prefix: &app.config.redis.redis_prefix,
        schedule: "* * * * * *",
        timings: app.config.timings(),
    }
    .spawn();
    let mut conn = redis::Client::open(app.config.redis.redis_url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let scheduled_jobs = format!(
        "{}:scheduled",
        presence_model::jobs::expiry_queue(&app.config.redis.redis_prefix)
    );
    let queued = crate::helpers::eventually(Duration::from_secs(3), || {
        redis::cmd("ZSCORE")
            .arg(&scheduled_jobs)
            .arg(format!("end-{due}"))
            .query::<Option<f64>>(&mut conn)
            .unwrap()
            .is_some()
    })
    .await;
    assert!(queued, "the sweep queued end-{due}");
}
