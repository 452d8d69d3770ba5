//! Status reads served from each replica's memory, as exact as PostgreSQL: a change made
//! through one replica is read at once there and within a second on another, whoever
//! made it; activity through one replica keeps the user online on the other; and a
//! replica that stops hearing PostgreSQL trusts nothing it remembers.

use std::time::Duration;

use actix_web::http::StatusCode;
use presence_api::testing::TestApp;
use presence_model::testing::TestDatabase;
use presence_testkit::{OwnPostgres, eventually};
use serde_json::{Value, json};

async fn status(app: &TestApp, viewer: &str, id: i64) -> Value {
    let response = app
        .get(&format!("/api/users/{id}/status/"), Some(viewer))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    response.body
}

/// Whether `check` holds of `id`'s status on `app` within a second.
async fn within_a_second(
    app: &TestApp,
    viewer: &str,
    id: i64,
    check: impl Fn(&Value) -> bool,
) -> bool {
    eventually(Duration::from_secs(1), async || {
        check(&status(app, viewer, id).await)
    })
    .await
}

#[actix_web::test]
async fn a_change_is_read_at_once_where_it_was_made_and_within_a_second_elsewhere() {
    let a = TestApp::spawn().await;
    let b = a.replica(|_| {}).await;
    let (_, viewer) = b.sign_up("viewer").await;
    let (id, token) = a.sign_up("subject").await;
    let until = (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    // Each change through `a`, with what everyone else is then shown.
    let changes: [(Value, &str, Option<&str>); 5] = [
        (
            json!({ "availability": "dnd", "until": until }),
            "dnd",
            None,
        ),
        (
            json!({ "text": "lunch", "emoji": "🍜" }),
            "dnd",
            Some("lunch"),
        ),
        (json!({ "availability": "invisible" }), "offline", None),
        (json!({ "availability": "auto" }), "online", Some("lunch")),
        (json!({ "text": null }), "online", None),
    ];
    for (body, presence, text) in changes {
        // Held in both replicas' memory before the change.
        status(&b, &viewer, id).await;
        status(&a, &viewer, id).await;
        let response = a
            .put("/api/users/me/status/", Some(&token), Some(&body))
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        let expected =
            |shown: &Value| shown["presence"] == presence && shown["status_text"].as_str() == text;
        let here = status(&a, &viewer, id).await;
        assert!(expected(&here), "read your writes after {body}: {here}");
        assert!(
            within_a_second(&b, &viewer, id, expected).await,
            "the other replica after {body}"
        );
    }
    let response = a.post("/api/users/logout/", Some(&token), None).await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert_eq!(status(&a, &viewer, id).await["presence"], "offline");
    assert!(within_a_second(&b, &viewer, id, |s| s["presence"] == "offline").await);
    let token = a.login("subject").await;
    assert_eq!(status(&a, &viewer, id).await["presence"], "online");
    assert!(within_a_second(&b, &viewer, id, |s| s["presence"] == "online").await);
    // What the user sees of themselves follows too.
    let me = a.get("/api/users/me/", Some(&token)).await;
    assert_eq!(me.body["availability"], "auto");
    assert!(b.metric("presence_api_presence_cache_hits_total").await > 0.0);
    assert!(
        b.metric("presence_api_presence_cache_forgotten_total")
            .await
            > 0.0
    );
}

#[actix_web::test]
async fn a_user_active_through_one_replica_is_online_on_the_other_throughout() {
    // A 2 s window (so a user granularity of 2 s less three flushes, 1.4 s), activity
    // flushed and heartbeats sent every 200 ms.
    let a = TestApp::spawn_with(|config| {
        config.offline_after_secs = 2;
        config.away_after_secs = 2;
        config.last_seen_flush_ms = 200;
        config.heartbeat_interval_ms = 200;
    })
    .await;
    let b = a.replica(|_| {}).await;
    let (_, viewer) = b.sign_up("viewer").await;
    let (id, token) = a.sign_up("beater").await;
    // Each write of the user's row leaves a new row version (a new `xmin`).
    let row_version = || {
        a.db.query_i64(&format!(
            "SELECT xmin::text::bigint AS n FROM users WHERE id = {id}"
        ))
    };
    let mut versions = std::collections::HashSet::from([row_version()]);
    let start = std::time::Instant::now();
    // Three windows of heartbeats through `a` only (one every heartbeat interval), read on
    // `b` all along in between.
    let interval = Duration::from_millis(200);
    let mut reads = 0;
    while start.elapsed() < Duration::from_secs(6) {
        let beat = a.post("/api/users/heartbeat/", Some(&token), None).await;
        assert_eq!(beat.status, StatusCode::OK);
        let next_beat = std::time::Instant::now() + interval;
        while std::time::Instant::now() < next_beat {
            let shown = status(&b, &viewer, id).await;
            assert_eq!(
                shown["presence"],
                "online",
                "at {:?}: {shown}",
                start.elapsed()
            );
            versions.insert(row_version());
            reads += 1;
        }
    }
    assert!(reads > 12, "read on `b` throughout, {reads} times");
    // Written about once per granularity (4 or 5 in 6 s), not at every flush with a
    // heartbeat in it (30).
    let writes = versions.len() - 1;
    assert!(
        (3..=8).contains(&writes),
        "{writes} writes of the user's row in 6 s"
    );
    // Silent: offline on `b` once the window has passed, with no write at all.
    let offline = eventually(Duration::from_secs(4), async || {
        status(&b, &viewer, id).await["presence"] == "offline"
    })
    .await;
    assert!(offline);
}

#[actix_web::test]
async fn a_replica_that_stops_hearing_postgres_trusts_nothing_it_remembers() {
    let postgres = OwnPostgres::start();
    let a = TestApp::spawn_on(TestDatabase::on_server(&postgres.url()), |config| {
        config.database.database_pool_timeout_ms = 300;
    })
    .await;
    let b = a.replica(|_| {}).await;
    let (_, viewer) = b.sign_up("viewer").await;
    let (id, token) = a.sign_up("subject").await;
    assert_eq!(status(&b, &viewer, id).await["presence"], "online");
    postgres.stop();
    postgres.start_again();
    // A change the moment PostgreSQL is back, before `b` has listened again.
    let dnd = json!({ "availability": "dnd" });
    let changed = eventually(Duration::from_secs(5), async || {
        a.put("/api/users/me/status/", Some(&token), Some(&dnd))
            .await
            .status
            == StatusCode::OK
    })
    .await;
    assert!(changed);
    // Within a second `b` shows it (from PostgreSQL while it cannot trust its memory),
    // and once it has, never the old status again, from memory once it hears again.
    assert!(within_a_second(&b, &viewer, id, |s| s["presence"] == "dnd").await);
    assert!(
        b.metric("presence_api_presence_cache_fallbacks_total")
            .await
            > 0.0
    );
    let hearing = eventually(Duration::from_secs(5), async || {
        assert_eq!(status(&b, &viewer, id).await["presence"], "dnd");
        b.metric("presence_api_presence_cache_hearing").await == 1.0
    })
    .await;
    assert!(hearing, "listening again");
    let hits = b.metric("presence_api_presence_cache_hits_total").await;
    for _ in 0..20 {
        assert_eq!(status(&b, &viewer, id).await["presence"], "dnd");
    }
    assert!(b.metric("presence_api_presence_cache_hits_total").await > hits);
}

/// A cold replica asked for the same 500 users by 64 requests at once (a deploy's
/// reconnecting clients) reads them from PostgreSQL in a few queries, not one a request,
/// and answers every request in full.
#[actix_web::test]
async fn a_cold_replica_reads_what_concurrent_requests_miss_together() {
    let app = TestApp::spawn().await;
    let (_, viewer) = app.sign_up("viewer").await;
    let ids: Vec<i64> = (0..500)
        .map(|n| presence_model::testing::register(&app.db, &format!("user{n}")).0)
        .collect();
    assert!(
        eventually(Duration::from_secs(10), async || {
            app.metric("presence_api_presence_cache_hearing").await == 1.0
        })
        .await,
        "the cache trusts what it holds"
    );
    let reads_before = app.metric("presence_api_presence_cache_reads_total").await;
    let body = json!({ "ids": ids });
    let answers = futures_util::future::join_all(
        (0..64).map(|_| app.post("/api/users/statuses/", Some(&viewer), Some(&body))),
    )
    .await;
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(answer.body["statuses"].as_array().unwrap().len(), 500);
    }
    let reads = app.metric("presence_api_presence_cache_reads_total").await - reads_before;
    assert!(
        (1.0..=8.0).contains(&reads),
        "{reads} queries for 64 concurrent requests missing the same users"
    );
    // Warm now: the same requests read nothing more.
    let warm = app.metric("presence_api_presence_cache_reads_total").await;
    let again = app
        .post("/api/users/statuses/", Some(&viewer), Some(&body))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        app.metric("presence_api_presence_cache_reads_total").await,
        warm
    );
}

/// 80 clients this replica never saw reach it at once (their replica died): their sessions
/// are looked up a batch at a time. PostgreSQL holds the lookups back until every request
/// waits; at most four queries run at once (fewer when the first batches took every
/// request already queued), and a handful answer all 80.
#[actix_web::test]
async fn first_requests_of_many_sessions_are_looked_up_together() {
    const CLIENTS: i64 = 80;
    let app = TestApp::spawn().await;
    app.db.execute(&format!(
        "INSERT INTO users (username, password_hash, online_status, last_seen, active_at) \
         SELECT 'storm' || g, 'x', 'online', now(), now() FROM generate_series(1, {CLIENTS}) g"
    ));
    app.db.execute(
        "INSERT INTO sessions (user_id, token_hash) \
         SELECT id, sha256(convert_to('storm-token-' || id, 'UTF8')) FROM users \
         WHERE username LIKE 'storm%'",
    );
    let first = app
        .db
        .query_i64("SELECT min(id) AS n FROM users WHERE username LIKE 'storm%'");
    let lookups = "presence_api_session_lookups_total";
    let before = app.metric(lookups).await;
    // The lookups waiting on the lock (the flush may wait on it too).
    let waiting = "SELECT count(*) AS n FROM pg_stat_activity \
                   WHERE datname = current_database() AND wait_event_type = 'Lock' \
                     AND query LIKE '%\"token_hash\" = ANY(%'";

    let held = app.db.hold("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE");
    let requests = futures_util::future::join_all((first..first + CLIENTS).map(|id| {
        let app = &app;
        async move {
            let response = app
                .get("/api/users/me/", Some(&format!("storm-token-{id}")))
                .await;
            (id, response)
        }
    }));
    let release = async {
        // Within the client's 5 s request timeout.
        let piled_up = eventually(Duration::from_secs(4), async || {
            app.metric("presence_api_http_requests_in_flight").await >= CLIENTS as f64
                && app.db.query_i64(waiting) >= 1
        })
        .await;
        let most_at_once = app.db.query_i64(waiting);
        drop(held);
        (piled_up, most_at_once)
    };
    let (answers, (piled_up, most_at_once)) = futures_util::join!(requests, release);

    assert!(piled_up, "every request waits, lookups on the lock");
    assert!(
        (1..=4).contains(&most_at_once),
        "{most_at_once} lookups at once"
    );
    for (id, response) in answers {
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        assert_eq!(response.body["id"], id);
    }
    let queries = app.metric(lookups).await - before;
    assert!(queries <= 8.0, "{queries} lookups for {CLIENTS} sessions");
}
