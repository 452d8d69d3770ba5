//! The operator page's files and data, over real HTTP (the page itself is driven in a
//! browser by `just browser`).

use actix_web::http::StatusCode;
use presence_api::testing::TestApp;
use serde_json::json;

#[actix_web::test]
async fn the_page_and_the_client_are_served_with_a_strict_policy() {
    let app = TestApp::spawn().await;
    for (path, content_type) in [
        ("/admin/", "text/html"),
        ("/admin", "text/html"),
        ("/admin/app.js", "text/javascript"),
        ("/admin/charts.js", "text/javascript"),
        ("/admin/app.css", "text/css"),
        ("/static/presence-client.js", "text/javascript"),
    ] {
        let mut response = awc::Client::default()
            .get(app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        assert!(header("content-type").starts_with(content_type), "{path}");
        let csp = header("content-security-policy");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(header("x-content-type-options"), "nosniff");
        let body = response.body().await.unwrap();
        assert!(!body.is_empty());
        if content_type == "text/html" {
            let html = String::from_utf8_lossy(&body);
            assert!(
                !html.contains("<script>") && !html.contains(" style="),
                "no inline code"
            );
        }
    }
}

#[actix_web::test]
async fn the_overview_is_for_admins_and_counts_by_presence() {
    let app = TestApp::spawn().await;
    let (_, user) = app.sign_up("alice").await;
    let (_, dnd) = app.sign_up("bob").await;
    app.put(
        "/api/users/me/status/",
        Some(&dnd),
        Some(&json!({ "availability": "dnd" })),
    )
    .await;
    app.register("carol").await;
    let refused = app.get("/api/admin/overview/", Some(&user)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let admin = app.admin().await;
    let overview = app.get("/api/admin/overview/", Some(&admin)).await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    assert_eq!(
        overview.body["presence"],
        json!({ "online": 2, "away": 0, "dnd": 1, "offline": 1 })
    );
    assert_eq!(overview.body["sweeps"], json!([]));
    assert_eq!(overview.body["workers"], json!([]));
    assert_eq!(overview.body["queue"]["failed"], 0);
    assert!(overview.body["sweep_warning"].is_null());
}

#[actix_web::test]
async fn the_admin_list_searches_by_the_start_of_a_name() {
    let app = TestApp::spawn().await;
    for name in ["Alice", "alfred", "bob", "al_x", "alpha"] {
        app.register(name).await;
    }
    let admin = app.admin().await;
    let names = |body: &serde_json::Value| -> Vec<String> {
        body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_owned())
            .collect()
    };
    let found = app
        .get("/api/users/all-users/?search=AL", Some(&admin))
        .await;
    assert_eq!(names(&found.body), ["Alice", "alfred", "al_x", "alpha"]);
    let found = app
        .get("/api/users/all-users/?search=al_", Some(&admin))
        .await;
    assert_eq!(names(&found.body), ["al_x"], "wildcards are literal");
    let found = app
        .get("/api/users/all-users/?search=%25", Some(&admin))
        .await;
    assert!(names(&found.body).is_empty());
    let long = "a".repeat(151);
    let refused = app
        .get(
            &format!("/api/users/all-users/?search={long}"),
            Some(&admin),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["error"]["field"], "search");
    // No username holds a NUL (or a space): such a search matches nobody.
    for impossible in ["a%00b", "a%20b"] {
        let found = app
            .get(
                &format!("/api/users/all-users/?search={impossible}"),
                Some(&admin),
            )
            .await;
        assert_eq!(found.status, StatusCode::OK);
        assert!(names(&found.body).is_empty());
    }
}

#[actix_web::test]
async fn the_history_is_for_admins_and_in_buckets_of_its_range() {
    use presence_model::samples::{self, SweepFigures};
    let app = TestApp::spawn().await;
    let (_, user) = app.sign_up("alice").await;
    let admin = app.admin().await;
    let refused = app.get("/api/admin/history/", Some(&user)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let refused = app.get("/api/admin/history/", None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    for bad in ["?range=week", "?range=", "?span=hour"] {
        let refused = app
            .get(&format!("/api/admin/history/{bad}"), Some(&admin))
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(refused.body["error"]["code"], "bad_request", "{bad}");
    }
    let empty = app.get("/api/admin/history/", Some(&admin)).await;
    assert_eq!(
        empty.body,
        json!({ "range": "hour", "bucket_secs": 60, "points": [] })
    );

    let figures = SweepFigures {
        took: std::time::Duration::from_millis(12),
        users_marked_offline: 0,
    };
    let mut conn = app.db.pool().get().unwrap();
    let now = chrono::Utc::now();
    for ago in [chrono::TimeDelta::hours(3), chrono::TimeDelta::seconds(1)] {
        samples::record_sample(&mut conn, now - ago, figures, Some(2)).unwrap();
    }
    let hour = app
        .get("/api/admin/history/?range=hour", Some(&admin))
        .await;
    let points = hour.body["points"].as_array().unwrap();
    assert_eq!(points.len(), 1, "three hours ago is outside: {}", hour.body);
    let point = &points[0];
    assert_eq!(point["online"], 2, "alice and the admin");
    assert_eq!(point["sweep_ms"], 12);
    assert_eq!(point["streams_open"], 2);
    assert_eq!(point["samples"], 1);
    assert_eq!(point["transitions"]["login"], 0);
    let day = app.get("/api/admin/history/?range=day", Some(&admin)).await;
    assert_eq!(day.body["bucket_secs"], 300);
    assert_eq!(day.body["points"].as_array().unwrap().len(), 2);
}

/// Each replica reports its open streams for the samples the worker takes, within a second
/// of a stream opening or closing.
#[actix_web::test]
async fn a_replica_reports_the_streams_it_holds() {
    // A closed stream is noticed at its next keepalive.
    let app = TestApp::spawn_with(|config| config.streams.stream_keepalive_ms = 200).await;
    let (id, token) = app.sign_up("alice").await;
    let client = redis::Client::open(presence_testkit::test_redis_url()).unwrap();
    let redis = redis::aio::ConnectionManager::new(client).await.unwrap();
    let prefix = app.config.redis.redis_prefix.clone();
    let reported = |want: u64| {
        let (mut redis, prefix) = (redis.clone(), prefix.clone());
        async move {
            presence_runtime::stream_counts::total(&mut redis, &prefix)
                .await
                .unwrap()
                == want
        }
    };
    let stream = app
        .open_stream(&format!("ids={id}"), Some(&token), None)
        .await
        .unwrap();
    assert!(
        presence_testkit::eventually(std::time::Duration::from_secs(5), || reported(1)).await,
        "the open stream is reported"
    );
    drop(stream);
    assert!(
        presence_testkit::eventually(std::time::Duration::from_secs(10), || reported(0)).await,
        "the closed stream is not counted any more"
    );
}
