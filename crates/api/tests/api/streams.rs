//! Opening presence streams: tickets, what is refused before a stream starts, CORS, limits
//! and shutdown. What streams carry (fan-out, resume, resync) needs the worker to publish:
//! those tests are the worker crate's (`streams.rs`).

use std::time::{Duration, Instant};

use actix_web::http::{Method, StatusCode};
use presence_api::testing::{TestApp, spawn_api};
use presence_model::testing::TestDatabase;
use presence_testkit::{RedisKeys, raw_http};

#[actix_web::test]
async fn a_ticket_opens_one_stream_once_and_never_after_it_expires() {
    let app = TestApp::spawn().await;
    let (id, token) = app.sign_up("alice").await;
    let response = app.post("/api/presence/tickets/", Some(&token), None).await;
    assert_eq!(response.status, StatusCode::CREATED);
    assert_eq!(response.body["expires_in"], 60);
    let ticket = response.body["ticket"].as_str().unwrap().to_owned();
    assert!(ticket.len() >= 43, "256 bits");

    let mut stream = app
        .open_stream(&format!("ids={id}&ticket={ticket}"), None, None)
        .await
        .unwrap_or_else(|refused| panic!("{:?}", refused.body));
    assert_eq!(
        stream.headers.get("content-type").unwrap(),
        "text/event-stream"
    );
    let snapshot = stream.next(Duration::from_secs(5)).await.expect("snapshot");
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(snapshot.data["users"][0]["id"], id);
    assert_eq!(snapshot.data["users"][0]["presence"], "online");
    assert_eq!(snapshot.id, snapshot.data["rev"].as_i64());

    // Used once: refused the second time, on any replica.
    let other = app.replica(|_| {}).await;
    for replica in [&app, &other] {
        let reused = replica
            .open_stream(&format!("ids={id}&ticket={ticket}"), None, None)
            .await
            .err()
            .expect("refused");
        assert_eq!(reused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reused.body["error"]["code"], "ticket_used");
    }
    // Issued by one replica, redeemed by another.
    let ticket = app.ticket(&token).await;
    assert!(
        other
            .open_stream(&format!("ids={id}&ticket={ticket}"), None, None)
            .await
            .is_ok()
    );
    // Expired: as Redis drops it when its 60 s are up.
    let ticket = app.ticket(&token).await;
    expire_every_ticket(&app);
    let expired = app
        .open_stream(&format!("ids={id}&ticket={ticket}"), None, None)
        .await
        .err()
        .expect("refused");
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert_eq!(expired.body["error"]["code"], "ticket_expired");
}

/// What 60 seconds do to the tickets in Redis.
fn expire_every_ticket(app: &TestApp) {
    let client = redis::Client::open(app.config.redis.redis_url.as_str()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:ticket:*", app.config.redis.redis_prefix))
        .query(&mut conn)
        .unwrap();
    assert!(!keys.is_empty());
    for key in &keys {
        redis::cmd("PEXPIRE")
            .arg(key)
            .arg(1)
            .query::<()>(&mut conn)
            .unwrap();
    }
    let expired = presence_testkit::wait_until(Duration::from_secs(2), || {
        redis::cmd("EXISTS")
            .arg(&keys)
            .query::<i64>(&mut conn)
            .is_ok_and(|n| n == 0)
    });
    assert!(expired, "Redis dropped the tickets");
}

#[actix_web::test]
async fn bad_stream_requests_are_refused_before_the_stream_starts() {
    let app = TestApp::spawn().await;
    let (id, token) = app.sign_up("bob").await;
    let too_many: Vec<String> = (1..=501).map(|n| n.to_string()).collect();
    let cases = [
        // The bearer token is never taken in a URL.
        (
            format!("ids={id}&token={token}"),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("ids={id}&access_token={token}"),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (format!("ids={id}"), None, StatusCode::UNAUTHORIZED),
        (
            format!("ids={id}&ticket=made-up"),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        ("ids=".to_owned(), Some(&token), StatusCode::BAD_REQUEST),
        ("ids=1,x".to_owned(), Some(&token), StatusCode::BAD_REQUEST),
        (
            format!("ids={}", too_many.join(",")),
            Some(&token),
            StatusCode::BAD_REQUEST,
        ),
        (String::new(), Some(&token), StatusCode::BAD_REQUEST),
        ("scope=all".to_owned(), Some(&token), StatusCode::FORBIDDEN),
        (
            "scope=some".to_owned(),
            Some(&token),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (query, bearer, expected) in cases {
        let refused = app
            .open_stream(&query, bearer.map(String::as_str), None)
            .await
            .err()
            .unwrap_or_else(|| panic!("{query} opened"));
        assert_eq!(refused.status, expected, "{query}: {}", refused.body);
        assert!(refused.body["error"]["code"].is_string(), "{query}");
    }
    // 500 ids are fine; the bearer header is fine.
    let ids: Vec<String> = (1..=500).map(|n| n.to_string()).collect();
    assert!(
        app.open_stream(&format!("ids={}", ids.join(",")), Some(&token), None)
            .await
            .is_ok()
    );
    let admin = app.admin().await;
    assert!(
        app.open_stream("scope=all", Some(&admin), None)
            .await
            .is_ok()
    );
}

#[actix_web::test]
async fn a_sessions_new_stream_replaces_its_oldest_at_the_limit_and_other_sessions_get_429() {
    let app = TestApp::spawn_with(|config| {
        config.streams.streams_per_user = 2;
        config.streams.stream_keepalive_ms = 200;
    })
    .await;
    let (id, token) = app.sign_up("carol").await;
    let query = format!("ids={id}");
    let mut first = app.open_stream(&query, Some(&token), None).await.unwrap();
    let _second = app.open_stream(&query, Some(&token), None).await.unwrap();
    // The same session (a reconnect, a page replacing its stream): its oldest makes room.
    let mut third = app
        .open_stream(&query, Some(&token), None)
        .await
        .unwrap_or_else(|refused| panic!("{:?}", refused.body));
    assert!(first.ends_within(Duration::from_secs(1)).await);
    assert_eq!(
        third.next(Duration::from_secs(5)).await.unwrap().event,
        "snapshot"
    );
    // Another session of the same user would take a place of its own.
    let other_device = app.login("carol").await;
    let refused = app
        .open_stream(&query, Some(&other_device), None)
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers.contains_key("retry-after"));
    // Another user is not affected.
    let (_, other) = app.sign_up("dave").await;
    assert!(app.open_stream(&query, Some(&other), None).await.is_ok());
    assert_eq!(app.metric("presence_api_streams_open").await, 3.0);
    drop(third);
    let freed = presence_testkit::eventually(Duration::from_secs(5), async || {
        app.metric("presence_api_streams_open").await == 2.0
    })
    .await;
    assert!(freed);
    assert!(
        app.open_stream(&query, Some(&other_device), None)
            .await
            .is_ok()
    );

    let full = TestApp::spawn_with(|config| config.streams.streams_per_process = 1).await;
    let (id, token) = full.sign_up("erin").await;
    let _only = full
        .open_stream(&format!("ids={id}"), Some(&token), None)
        .await
        .unwrap();
    assert!(
        full.open_stream(&format!("ids={id}"), Some(&token), None)
            .await
            .is_ok(),
        "the same session replaces its stream"
    );
    let (_, stranger) = full.sign_up("frank").await;
    let refused = full
        .open_stream(&format!("ids={id}"), Some(&stranger), None)
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers.contains_key("retry-after"));
}

#[actix_web::test]
async fn the_frontends_origins_may_call_the_api_and_open_streams() {
    let origin = "https://chat.example.com";
    let app = TestApp::spawn_with(|config| {
        config.streams.cors_allowed_origins = vec![origin.to_owned()];
    })
    .await;
    let (id, token) = app.sign_up("frank").await;
    for (method, path) in [
        ("GET", "/api/presence/stream/"),
        ("POST", "/api/presence/tickets/"),
        ("PUT", "/api/users/me/status/"),
    ] {
        let preflight = app
            .send(
                app.request(Method::OPTIONS, path)
                    .insert_header(("Origin", origin))
                    .insert_header(("Access-Control-Request-Method", method))
                    .insert_header((
                        "Access-Control-Request-Headers",
                        "authorization, content-type, last-event-id",
                    )),
                None,
                None,
            )
            .await;
        assert!(
            preflight.status.is_success(),
            "{path}: {}",
            preflight.status
        );
        assert_eq!(
            preflight
                .headers
                .get("access-control-allow-origin")
                .unwrap(),
            origin
        );
        let allowed = preflight
            .headers
            .get("access-control-allow-methods")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(allowed.contains(method), "{allowed}");
    }
    // The stream itself (it never ends: its headers only).
    let response = awc::Client::default()
        .get(app.url(&format!(
            "/api/presence/stream/?ids={id}&ticket={}",
            app.ticket(&token).await
        )))
        .insert_header(("Origin", origin))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .unwrap(),
        origin
    );
    drop(response);
    // Another origin is allowed nothing: its preflight is refused (by actix-cors, in plain
    // text), and plain requests from it get no CORS headers, so its browser refuses them.
    let mut foreign = app
        .request(Method::OPTIONS, "/api/presence/tickets/")
        .insert_header(("Origin", "https://evil.example"))
        .insert_header(("Access-Control-Request-Method", "POST"))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::BAD_REQUEST);
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    drop(foreign.body().await);
    let plain = app
        .send(
            app.request(Method::GET, "/api/users/online-count/")
                .insert_header(("Origin", "https://evil.example")),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(plain.status, StatusCode::OK);
    assert!(plain.headers.get("access-control-allow-origin").is_none());
}

#[test]
fn sigterm_with_open_streams_exits_promptly() {
    let db = TestDatabase::new();
    let _keys = RedisKeys::of(&db);
    let api = spawn_api(env!("CARGO_BIN_EXE_presence-api"), &db, &[]);
    let port = api.port();
    let register = r#"{"username": "gina", "password": "password123"}"#;
    raw_http(port, "POST", "/api/users/register/", None, register);
    let (_, body) = raw_http(port, "POST", "/api/users/login/", None, register);
    let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Three open streams, read up to their snapshot.
    let streams: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            write!(
                stream,
                "GET /api/presence/stream/?ids=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&seen).contains("event: snapshot") {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "{}", String::from_utf8_lossy(&seen));
                seen.extend_from_slice(&buf[..n]);
            }
            stream
        })
        .collect();
    let started = Instant::now();
    let (status, log) = api.terminate(Duration::from_secs(8));
    let took = started.elapsed();
    assert!(status.is_some_and(|s| s.success()), "{log}");
    assert!(
        took < Duration::from_secs(3),
        "exited after {took:?}:\n{log}"
    );
    // The clients see their streams end (and would reconnect elsewhere).
    for mut stream in streams {
        use std::io::Read;
        let mut rest = Vec::new();
        assert!(stream.read_to_end(&mut rest).is_ok(), "the stream ended");
    }
}
