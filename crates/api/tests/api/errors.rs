use actix_web::http::{Method, StatusCode};
use serde_json::{Value, json};

use presence_api::testing::{PASSWORD, TestApp};

/// Every error has the one shape, with a snake_case code and a message.
fn assert_error(body: &Value, code: &str) {
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(error["code"], code, "{body}");
    assert!(!error["message"].as_str().unwrap().is_empty());
}

#[actix_web::test]
async fn malformed_and_mistyped_json_is_a_400_naming_the_problem() {
    let app = TestApp::spawn().await;
    let cases: [(&[u8], &str, Option<&str>); 7] = [
        (b"", "bad_request", None),
        (b"{\"username\": ", "bad_request", None),
        (b"[]", "bad_request", None),
        // serde reads a struct from an array too; a body is an object.
        (b"[\"alice\", \"password123\"]", "bad_request", None),
        (b"{\"username\": \"alice\"}", "bad_request", None),
        (
            b"{\"username\": 5, \"password\": \"password123\"}",
            "invalid_field",
            Some("username"),
        ),
        (
            b"{\"username\": \"alice\", \"password\": \"password123\", \"admin\": true}",
            "invalid_field",
            Some("admin"),
        ),
    ];
    for (body, code, field) in cases {
        let mut request = app
            .request(Method::POST, "/api/users/register/")
            .insert_header(("content-type", "application/json"))
            .send_body(body.to_vec())
            .await
            .unwrap();
        let status = request.status();
        let json: Value = serde_json::from_slice(&request.body().await.unwrap()).unwrap();
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(body)
        );
        assert_error(&json, code);
        assert_eq!(json["error"]["field"].as_str(), field, "{json}");
    }
    assert_eq!(app.db.query_i64("SELECT count(*) AS n FROM users"), 0);
}

#[actix_web::test]
async fn invalid_fields_are_named() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            json!({ "username": "ab", "password": PASSWORD }),
            "username",
        ),
        (
            json!({ "username": "has space", "password": PASSWORD }),
            "username",
        ),
        (
            json!({ "username": "x".repeat(151), "password": PASSWORD }),
            "username",
        ),
        (
            json!({ "username": "alice", "password": "short" }),
            "password",
        ),
    ];
    for (body, field) in cases {
        let response = app.post("/api/users/register/", None, Some(&body)).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}");
        assert_error(&response.body, "invalid_field");
        assert_eq!(response.body["error"]["field"], field);
    }
}

#[actix_web::test]
async fn oversized_and_non_json_bodies() {
    let app = TestApp::spawn().await;
    let big = json!({ "username": "alice", "password": "p".repeat(17 * 1024) });
    let response = app.post("/api/users/register/", None, Some(&big)).await;
    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&response.body, "payload_too_large");

    let mut response = app
        .request(Method::POST, "/api/users/login/")
        .insert_header(("content-type", "text/plain"))
        .send_body("username=alice&password=secret")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: Value = serde_json::from_slice(&response.body().await.unwrap()).unwrap();
    assert_error(&body, "unsupported_media_type");
}

#[actix_web::test]
async fn unknown_paths_and_wrong_methods() {
    let app = TestApp::spawn().await;
    let (_, token) = app.sign_up("alice").await;
    let response = app.get("/api/nothing-here/", None).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert_error(&response.body, "not_found");

    for (method, path, allow) in [
        (Method::GET, "/api/users/login/", "POST"),
        (Method::DELETE, "/api/users/me/", "GET, HEAD"),
        (Method::POST, "/healthz", "GET, HEAD"),
    ] {
        let response = app
            .send(app.request(method.clone(), path), Some(&token), None)
            .await;
        assert_eq!(
            response.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_error(&response.body, "method_not_allowed");
        assert_eq!(response.headers.get("allow").unwrap(), allow, "{path}");
    }

    // HEAD answers what GET would, without a body.
    for path in ["/healthz", "/api/users/me/", "/api/openapi.json"] {
        let mut response = app
            .request(Method::HEAD, path)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "HEAD {path}");
        assert!(response.body().await.unwrap().is_empty(), "HEAD {path}");
    }

    let response = app.get("/api/users/abc/status/", Some(&token)).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_error(&response.body, "bad_request");
}

#[actix_web::test]
async fn login_checks_the_username_like_register() {
    let app = TestApp::spawn().await;
    for username in ["a\u{0}b", "ab", "white space"] {
        let body = json!({ "username": username, "password": PASSWORD });
        let response = app.post("/api/users/login/", None, Some(&body)).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{username:?}");
        assert_error(&response.body, "invalid_field");
        assert_eq!(response.body["error"]["field"], "username");
    }
}

#[actix_web::test]
async fn a_body_that_never_finishes_gets_408_and_the_connection_is_closed() {
    use std::io::{Read, Write};
    let app = TestApp::spawn_with(|config| config.client_body_timeout_ms = 300).await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let started = std::time::Instant::now();
    let answer = actix_web::web::block(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "POST /api/users/login/ HTTP/1.1\r\nHost: test\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"user"
        )
        .unwrap();
        // Read to the end: the server must close the connection after answering.
        let mut response = String::new();
        stream.read_to_string(&mut response).map(|_| response)
    })
    .await
    .unwrap()
    .expect("an answer, then the connection closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "answered after the timeout, not after the client's read timeout"
    );
}
