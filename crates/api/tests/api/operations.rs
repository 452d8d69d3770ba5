//! Health, readiness, metrics and the OpenAPI document.

use std::collections::BTreeSet;

use actix_web::http::StatusCode;
use presence_api::routes::ENDPOINTS;
use presence_api::testing::TestApp;
use presence_testkit::metric_value;

#[actix_web::test]
async fn readyz_checks_postgres_and_redis() {
    let app = TestApp::spawn().await;
    let response = app.get("/readyz", None).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(
        response.body,
        serde_json::json!({ "status": "ok", "checks": { "postgres": "ok", "redis": "ok" } })
    );
}

#[actix_web::test]
async fn readyz_names_the_failing_dependency() {
    let app =
        TestApp::spawn_with(|config| config.redis.redis_url = "redis://127.0.0.1:1".into()).await;
    let response = app.get("/readyz/", None).await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.body["status"], "unavailable");
    assert_eq!(response.body["checks"]["postgres"], "ok");
    assert_ne!(response.body["checks"]["redis"], "ok");
    // Liveness does not depend on either.
    assert_eq!(app.get("/healthz", None).await.status, StatusCode::OK);
}

#[actix_web::test]
async fn metrics_count_requests_online_users_and_jobs() {
    let app = TestApp::spawn().await;
    let (_, token) = app.sign_up("alice").await;
    app.sign_up("bob").await;
    for _ in 0..3 {
        app.post("/api/users/heartbeat/", Some(&token), None).await;
    }
    app.get("/api/users/42/status/", Some(&token)).await;
    app.get("/nowhere", None).await;

    let text = app.metrics_text().await;
    let requests = |labels: &str| {
        metric_value(
            &text,
            &format!("presence_api_http_requests_total{{{labels}}}"),
        )
    };
    assert_eq!(
        requests(r#"method="POST",route="/api/users/heartbeat",status="200""#),
        3.0
    );
    assert_eq!(
        requests(r#"method="POST",route="/api/users/login",status="200""#),
        2.0
    );
    assert_eq!(
        requests(r#"method="GET",route="/api/users/{id}/status",status="404""#),
        1.0
    );
    assert_eq!(
        requests(r#"method="GET",route="unmatched",status="404""#),
        1.0
    );
    assert_eq!(
        metric_value(
            &text,
            r#"presence_api_http_request_duration_seconds_count{route="/api/users/heartbeat"}"#
        ),
        3.0
    );
    assert_eq!(metric_value(&text, "presence_api_users_online"), 2.0);
    assert_eq!(metric_value(&text, "presence_api_ready"), 1.0);
    assert_eq!(
        metric_value(&text, "presence_api_jobs_enqueued_total"),
        2.0,
        "two logins"
    );
    assert_eq!(
        metric_value(&text, "presence_api_job_enqueue_failures_total"),
        0.0
    );
}

#[actix_web::test]
async fn lost_jobs_are_counted_when_redis_is_down() {
    let app =
        TestApp::spawn_with(|config| config.redis.redis_url = "redis://127.0.0.1:1".into()).await;
    let (_, token) = app.sign_up("carol").await;
    let response = app.post("/api/users/logout/", Some(&token), None).await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    let text = app.metrics_text().await;
    assert_eq!(
        metric_value(&text, "presence_api_job_enqueue_failures_total"),
        2.0,
        "{text}"
    );
    assert_eq!(metric_value(&text, "presence_api_jobs_enqueued_total"), 0.0);
}

#[actix_web::test]
async fn the_openapi_document_describes_every_route() {
    let app = TestApp::spawn().await;
    let response = app.get("/api/openapi.json", None).await;
    assert_eq!(response.status, StatusCode::OK);
    let doc = response.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let registered: BTreeSet<(String, String)> = ENDPOINTS
        .iter()
        .map(|e| (e.method.to_string(), e.path.to_owned()))
        .collect();
    assert_eq!(registered, documented);

    for schema in [
        "Me",
        "ListedUser",
        "PublicStatus",
        "OwnStatus",
        "AdminStatus",
        "ErrorCode",
        "StreamEvent",
        "OnlineStatus",
        "Transition",
        "ErrorBody",
        "Credentials",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema}"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // Enum values are what the API sends.
    let values = |schema: &str| -> Vec<String> {
        doc["components"]["schemas"][schema]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema}: {}", doc["components"]["schemas"][schema]))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    use presence_model::OnlineStatus::{Offline, Online};
    assert_eq!(values("OnlineStatus"), [Online.as_str(), Offline.as_str()]);
    use presence_model::vocabulary::ChangeReason as R;
    let reasons = [
        R::Login,
        R::Logout,
        R::Heartbeat,
        R::Activity,
        R::Idle,
        R::Manual,
        R::Expiry,
        R::Sweep,
        R::StatusText,
    ];
    assert_eq!(
        values("ChangeReason"),
        reasons.map(|r| r.as_str().to_owned())
    );
    use presence_model::vocabulary::{Availability as A, Presence as P};
    let presences = [P::Online, P::Away, P::Dnd, P::Offline];
    assert_eq!(values("Presence"), presences.map(|p| p.as_str().to_owned()));
    let availabilities = [A::Auto, A::Away, A::Dnd, A::Invisible];
    assert_eq!(
        values("Availability"),
        availabilities.map(|a| a.as_str().to_owned())
    );
    let login = &doc["paths"]["/api/users/login/"]["post"];
    for status in ["401", "429", "503"] {
        assert!(login["responses"][status].is_object(), "login {status}");
    }
    assert_eq!(
        login["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Credentials"
    );
}

#[actix_web::test]
async fn every_registered_route_answers() {
    // The table the document is checked against is the one the server is built from.
    let app = TestApp::spawn().await;
    for endpoint in ENDPOINTS {
        let path = endpoint.path.replace("{id}", "1");
        let mut response = app
            .request(endpoint.method.clone(), &path)
            .send()
            .await
            .unwrap();
        assert_ne!(
            response.status(),
            StatusCode::NOT_FOUND,
            "{} {path}",
            endpoint.method
        );
        assert_ne!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{} {path}",
            endpoint.method
        );
        assert!(
            !response.status().is_server_error(),
            "{} {path}: {}",
            endpoint.method,
            response.status()
        );
        let _ = response.body().await;
    }
}
