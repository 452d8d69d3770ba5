//! What a stream holds, and for how long: a HEAD never takes a place, a client that goes
//! away gives its place back at the next keep-alive, revoking a session ends its streams
//! and tickets on every replica, and a user's live tickets are capped.

use std::io::Write;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use presence_api::testing::TestApp;
use presence_testkit::{eventually, raw_http};

fn port_of(app: &TestApp) -> u16 {
    app.address.rsplit(':').next().unwrap().parse().unwrap()
}

#[actix_web::test]
async fn a_head_of_the_stream_is_refused_and_holds_no_place() {
    let app = TestApp::spawn_with(|config| config.streams.streams_per_user = 3).await;
    let (id, token) = app.sign_up("alice").await;
    let port = port_of(&app);
    for _ in 0..10 {
        let path = format!("/api/presence/stream/?ids={id}");
        let (status, body) = tokio::task::spawn_blocking({
            let token = token.clone();
            move || raw_http(port, "HEAD", &path, Some(&token), "")
        })
        .await
        .unwrap();
        assert_eq!(status, 405, "{body}");
    }
    assert_eq!(app.metric("presence_api_streams_open").await, 0.0);
    let refused = app
        .send(
            app.request(actix_web::http::Method::HEAD, "/api/presence/stream/?ids=1"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(refused.headers.get("allow").unwrap(), "GET");
    // GET still answers HEAD elsewhere.
    let head = app
        .send(
            app.request(actix_web::http::Method::HEAD, "/healthz"),
            None,
            None,
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    for _ in 0..3 {
        let _ = app
            .open_stream(&format!("ids={id}"), Some(&app.login("alice").await), None)
            .await
            .expect("every place is free");
    }
}

#[actix_web::test]
async fn a_client_that_goes_away_frees_its_place_at_the_next_keepalive() {
    let app = TestApp::spawn_with(|config| config.streams.stream_keepalive_ms = 200).await;
    let (id, token) = app.sign_up("bob").await;
    let open = || async { app.metric("presence_api_streams_open").await };

    // A clean close after the stream started.
    let stream = app
        .open_stream(&format!("ids={id}"), Some(&token), None)
        .await
        .unwrap();
    assert_eq!(open().await, 1.0);
    let closed = Instant::now();
    drop(stream);
    assert!(eventually(Duration::from_secs(2), async || open().await == 0.0).await);
    eprintln!("place freed {:?} after a clean close", closed.elapsed());

    // Requests abandoned before the answer came.
    let port = port_of(&app);
    for _ in 0..5 {
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            socket,
            "GET /api/presence/stream/?ids={id} HTTP/1.1\r\nHost: test\r\n\
             Authorization: Bearer {token}\r\n\r\n"
        )
        .unwrap();
        drop(socket);
    }
    assert!(eventually(Duration::from_secs(3), async || open().await == 0.0).await);
}

#[actix_web::test]
async fn logging_out_ends_the_sessions_streams_and_tickets_on_every_replica() {
    let a = TestApp::spawn().await;
    let b = a.replica(|_| {}).await;
    let (id, token) = a.sign_up("carol").await;
    let query = format!("ids={id}");
    let unused_ticket = a.ticket(&token).await;
    let mut on_b = b.open_stream(&query, Some(&token), None).await.unwrap();
    let ticket = a.ticket(&token).await;
    let mut on_a = a
        .open_stream(&format!("{query}&ticket={ticket}"), None, None)
        .await
        .unwrap();
    // Another session of the same user keeps its stream.
    let other_device = a.login("carol").await;
    let mut other = b
        .open_stream(&query, Some(&other_device), None)
        .await
        .unwrap();
    let admin = a.admin().await;
    let mut everyone = b
        .open_stream("scope=all", Some(&admin), None)
        .await
        .unwrap();
    for stream in [&mut on_a, &mut on_b, &mut other, &mut everyone] {
        assert_eq!(
            stream.next(Duration::from_secs(5)).await.unwrap().event,
            "snapshot"
        );
    }

    let logged_out = Instant::now();
    let response = a.post("/api/users/logout/", Some(&token), None).await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert!(on_a.ends_within(Duration::from_secs(1)).await, "here");
    assert!(
        on_b.ends_within(Duration::from_secs(1)).await,
        "on the other replica"
    );
    eprintln!("streams ended {:?} after the logout", logged_out.elapsed());
    for replica in [&a, &b] {
        assert_eq!(
            replica.get("/api/users/me/", Some(&token)).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let refused = b
        .open_stream(&format!("{query}&ticket={unused_ticket}"), None, None)
        .await
        .err()
        .expect("a ticket minted before the logout opens nothing after it");
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(!other.ends_within(Duration::from_millis(300)).await);

    // An admin's stream of everyone ends with the admin's session too.
    assert_eq!(
        a.post("/api/users/logout/", Some(&admin), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert!(everyone.ends_within(Duration::from_secs(1)).await);
    assert_eq!(
        a.metric("presence_api_streams_open").await + b.metric("presence_api_streams_open").await,
        1.0
    );
}

#[actix_web::test]
async fn a_user_holds_at_most_tickets_per_user_live_tickets() {
    let app = TestApp::spawn_with(|config| config.streams.tickets_per_user = 3).await;
    let (id, token) = app.sign_up("dave").await;
    let mut tickets = Vec::new();
    for _ in 0..5 {
        tickets.push(app.ticket(&token).await);
    }
    let client = redis::Client::open(app.config.redis.redis_url.as_str()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:ticket:*", app.config.redis.redis_prefix))
        .query(&mut conn)
        .unwrap();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for (n, ticket) in tickets.iter().enumerate() {
        let opened = app
            .open_stream(&format!("ids={id}&ticket={ticket}"), None, None)
            .await;
        match opened {
            Ok(_) => assert!(n >= 2, "ticket {n} was invalidated by newer ones"),
            Err(refused) => {
                assert!(n < 2, "ticket {n} refused: {}", refused.body);
                assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
            }
        }
    }
}

#[actix_web::test]
async fn metrics_are_served_apart_from_the_public_address() {
    let app = TestApp::spawn().await;
    let public = app.get("/metrics", None).await;
    assert_eq!(public.status, StatusCode::NOT_FOUND);
    assert!(
        app.metrics_text()
            .await
            .contains("presence_api_http_requests_total")
    );
}

#[actix_web::test]
async fn logging_out_everywhere_ends_every_session_and_its_streams() {
    let a = TestApp::spawn().await;
    let b = a.replica(|_| {}).await;
    let (id, phone) = a.sign_up("erin").await;
    let laptop = b.login("erin").await;
    let (_, bystander) = a.sign_up("frank").await;
    let query = format!("ids={id}");
    let mut on_phone = a.open_stream(&query, Some(&phone), None).await.unwrap();
    let mut on_laptop = b.open_stream(&query, Some(&laptop), None).await.unwrap();
    let mut watching = b.open_stream(&query, Some(&bystander), None).await.unwrap();
    for stream in [&mut on_phone, &mut on_laptop, &mut watching] {
        assert_eq!(
            stream.next(Duration::from_secs(5)).await.unwrap().event,
            "snapshot"
        );
    }
    let response = a.post("/api/users/logout-all/", Some(&phone), None).await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert!(on_phone.ends_within(Duration::from_secs(1)).await);
    assert!(on_laptop.ends_within(Duration::from_secs(1)).await);
    for (replica, token) in [(&a, &phone), (&b, &laptop), (&a, &laptop), (&b, &phone)] {
        assert_eq!(
            replica.get("/api/users/me/", Some(token)).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let status = a
        .get(&format!("/api/users/{id}/status/"), Some(&bystander))
        .await;
    assert_eq!(status.body["presence"], "offline");
    assert_eq!(
        a.db.query_i64(&format!(
            "SELECT count(*) AS n FROM presence_events WHERE user_id = {id} \
             AND to_status = 'offline' AND reason = 'logout'"
        )),
        1
    );
    assert!(!watching.ends_within(Duration::from_millis(200)).await);
}
