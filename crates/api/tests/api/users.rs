use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::json;

use presence_api::testing::{PASSWORD, Response, TestApp};
use presence_testkit::eventually;

#[actix_web::test]
async fn healthz_answers_without_touching_the_database() {
    let app = TestApp::spawn().await;
    let response = app.get("/healthz", None).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body, json!({ "status": "ok" }));
}

#[actix_web::test]
async fn register_returns_the_user_without_secrets() {
    let app = TestApp::spawn().await;
    let body = json!({ "username": "Alice.B+1@x", "password": PASSWORD });
    let response = app.post("/api/users/register/", None, Some(&body)).await;
    assert_eq!(response.status, StatusCode::CREATED);
    let user = response.body.as_object().unwrap();
    let mut keys: Vec<_> = user.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "availability",
            "availability_until",
            "created_at",
            "dnd_until",
            "id",
            "is_admin",
            "last_seen",
            "online_status",
            "presence",
            "status_emoji",
            "status_expires_at",
            "status_text",
            "username"
        ]
    );
    assert_eq!(user["username"], "Alice.B+1@x");
    assert_eq!(user["online_status"], "offline");
    assert_eq!(user["is_admin"], false);
    assert!(user["last_seen"].is_null());
    let created_at = user["created_at"].as_str().unwrap();
    assert!(created_at.ends_with('Z'), "RFC 3339 UTC: {created_at}");
    chrono::DateTime::parse_from_rfc3339(created_at).unwrap();

    assert_eq!(
        app.db
            .query_i64("SELECT count(*) AS n FROM users WHERE password_hash LIKE '$argon2id$%'"),
        1,
        "passwords are stored only as argon2id hashes"
    );
}

#[actix_web::test]
async fn usernames_are_unique_regardless_of_case() {
    let app = TestApp::spawn().await;
    app.register("alice").await;
    let body = json!({ "username": "ALICE", "password": PASSWORD });
    let response = app.post("/api/users/register", None, Some(&body)).await;
    assert_eq!(response.status, StatusCode::CONFLICT);
    assert_eq!(response.body["error"]["code"], "username_taken");
}

#[actix_web::test]
async fn login_opens_a_session_and_marks_the_user_online() {
    let app = TestApp::spawn().await;
    let id = app.register("bob").await;
    let body = json!({ "username": "Bob", "password": PASSWORD });
    let response = app.post("/api/users/login/", None, Some(&body)).await;
    assert_eq!(response.status, StatusCode::OK);
    let token = response.body["token"].as_str().unwrap();
    assert_eq!(token.len(), 43);
    assert_eq!(response.body["user"]["id"], id);
    assert_eq!(response.body["user"]["online_status"], "online");
    assert!(response.body["user"]["last_seen"].is_string());

    // Only the token's SHA-256 is stored.
    let stored_plain = app.db.query_i64(&format!(
        "SELECT count(*) AS n FROM sessions WHERE token_hash = convert_to('{token}', 'UTF8')"
    ));
    let stored_hash = app.db.query_i64(&format!(
        "SELECT count(*) AS n FROM sessions WHERE token_hash = sha256(convert_to('{token}', 'UTF8'))"
    ));
    assert_eq!((stored_plain, stored_hash), (0, 1));

    let me = app.get("/api/users/me/", Some(token)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["username"], "bob");
}

#[actix_web::test]
async fn wrong_password_and_unknown_user_fail_alike() {
    let app = TestApp::spawn().await;
    app.register("carol").await;
    let wrong_password = json!({ "username": "carol", "password": "not the password" });
    let unknown_user = json!({ "username": "nobody", "password": PASSWORD });
    let a = app
        .post("/api/users/login", None, Some(&wrong_password))
        .await;
    let b = app
        .post("/api/users/login", None, Some(&unknown_user))
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.status, b.status);
    assert_eq!(a.body, b.body);
    assert_eq!(a.body["error"]["code"], "invalid_credentials");
    assert_eq!(app.db.query_i64("SELECT count(*) AS n FROM sessions"), 0);
}

#[actix_web::test]
async fn authenticated_endpoints_refuse_missing_and_bad_tokens() {
    let app = TestApp::spawn().await;
    for path in [
        "/api/users/me/",
        "/api/users/online-count/",
        "/api/users/all-users/",
        "/api/users/1/status/",
    ] {
        for token in [None, Some("not-a-real-token")] {
            let response = app.get(path, token).await;
            assert_eq!(
                response.status,
                StatusCode::UNAUTHORIZED,
                "{path} {token:?}"
            );
            assert_eq!(response.body["error"]["code"], "unauthenticated");
        }
    }
    for path in ["/api/users/heartbeat/", "/api/users/logout/"] {
        let response = app.post(path, None, None).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[actix_web::test]
async fn sessions_unused_past_their_ttl_stop_working() {
    let app = TestApp::spawn_with(|config| config.session_ttl_secs = 60).await;
    let (_, token) = app.sign_up("dave").await;
    app.db
        .execute("UPDATE sessions SET last_seen = now() - interval '61 seconds'");
    let response = app.get("/api/users/me", Some(&token)).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn status_and_online_count() {
    let app = TestApp::spawn().await;
    let (erin, token) = app.sign_up("erin").await;
    let frank = app.register("frank").await;

    let response = app
        .get(&format!("/api/users/{erin}/status/"), Some(&token))
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body["id"], erin);
    assert_eq!(response.body["online_status"], "online");
    assert!(response.body["last_seen"].is_string());

    let response = app
        .get(&format!("/api/users/{frank}/status"), Some(&token))
        .await;
    assert_eq!(response.body["online_status"], "offline");
    assert!(response.body["last_seen"].is_null());

    let response = app.get("/api/users/999999/status/", Some(&token)).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert_eq!(response.body["error"]["code"], "not_found");

    let response = app.get("/api/users/online-count/", Some(&token)).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.body,
        json!({ "count": 1, "online": 1, "away": 0, "dnd": 0 })
    );
}

#[actix_web::test]
async fn all_users_is_for_admins_fresh_and_filterable() {
    let app = TestApp::spawn().await;
    let (_, user_token) = app.sign_up("gina").await;
    app.register("hank").await;
    let admin = app.admin().await;

    let response = app.get("/api/users/all-users/", Some(&user_token)).await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    assert_eq!(response.body["error"]["code"], "forbidden");

    let response = app.get("/api/users/all-users/", Some(&admin)).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.headers.get("cache-control").unwrap(), "no-store");
    assert_eq!(response.body["count"], 3);
    assert!(
        response.body["next"].is_null(),
        "one page holds them all: `next` is sent, null"
    );
    let names: Vec<_> = response.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gina", "hank", "admin"], "ordered by id");
    assert!(response.body["users"][0].get("password_hash").is_none());

    let online = app
        .get("/api/users/all-users/?status=online", Some(&admin))
        .await;
    assert_eq!(online.body["count"], 2);
    let offline = app
        .get("/api/users/all-users?status=offline", Some(&admin))
        .await;
    assert_eq!(offline.body["count"], 1);
    assert_eq!(offline.body["users"][0]["username"], "hank");

    let bad = app
        .get("/api/users/all-users/?status=away", Some(&admin))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["error"]["code"], "bad_request");
}

#[actix_web::test]
async fn create_admin_command_creates_and_promotes() {
    let app = TestApp::spawn().await;
    app.register("ivy").await;
    let run = |username: &str, password: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_presence-api"))
            .args(["create-admin", "--username", username])
            .env("DATABASE_URL", app.db.url())
            .env("ADMIN_PASSWORD", password)
            .output()
            .unwrap()
    };
    let promoted = run("IVY", "ignored-for-existing-users");
    assert!(promoted.status.success(), "{promoted:?}");
    let created = run("root", PASSWORD);
    assert!(created.status.success(), "{created:?}");
    let too_short = run("root2", "short");
    assert!(!too_short.status.success());

    for name in ["ivy", "root"] {
        let token = app.login(name).await;
        let response = app.get("/api/users/all-users/", Some(&token)).await;
        assert_eq!(response.status, StatusCode::OK, "{name} is an admin");
    }
    assert_eq!(app.db.query_i64("SELECT count(*) AS n FROM users"), 2);
}

#[actix_web::test]
async fn all_users_pages_with_a_cursor() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    for n in 0..4 {
        app.register(&format!("user{n}")).await;
    }
    let mut names = Vec::new();
    let mut path = "/api/users/all-users/?limit=2".to_owned();
    loop {
        let page = app.get(&path, Some(&admin)).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body["count"].as_u64().unwrap() <= 2);
        chrono::DateTime::parse_from_rfc3339(page.body["as_of"].as_str().unwrap()).unwrap();
        names.extend(
            page.body["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["username"].as_str().unwrap().to_owned()),
        );
        match page.body["next"].as_str() {
            Some(cursor) => path = format!("/api/users/all-users/?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(names, ["admin", "user0", "user1", "user2", "user3"]);

    for bad in [
        "limit=0",
        "limit=10001",
        "limit=x",
        "cursor=abc",
        "cursor=-1",
        "changed_since=yesterday",
    ] {
        let response = app
            .get(&format!("/api/users/all-users/?{bad}"), Some(&admin))
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[actix_web::test]
async fn all_users_answers_304_while_nothing_changed() {
    // Deferred activity is written only when the test says (the periodic flush runs at
    // start, then not for 50 s): the admin's own requests must not change the list
    // between two reads.
    let app = TestApp::spawn_with(|config| config.last_seen_flush_ms = 50_000).await;
    let admin = app.admin().await;
    let (_, token) = app.sign_up("ivan").await;
    app.flush().await;
    let first = app.get("/api/users/all-users/", Some(&admin)).await;
    let etag = first
        .headers
        .get("etag")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let send = |etag: String| {
        app.send(
            app.request(actix_web::http::Method::GET, "/api/users/all-users/")
                .insert_header(("if-none-match", etag)),
            Some(&admin),
            None,
        )
    };
    let unchanged = send(etag.clone()).await;
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
    assert_eq!(unchanged.body, serde_json::Value::Null);
    // Admin requests are deferred activity too; write it so that only ivan changes next.
    app.flush().await;
    let settled = app.get("/api/users/all-users/", Some(&admin)).await;
    let etag = settled
        .headers
        .get("etag")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    app.post("/api/users/logout/", Some(&token), None).await;
    let changed = send(etag).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(changed.body["users"][1]["online_status"], "offline");
}

#[actix_web::test]
async fn all_users_changed_since_returns_only_changes() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    for n in 0..5 {
        app.register(&format!("quiet{n}")).await;
    }
    app.flush().await;
    app.db
        .execute("UPDATE users SET changed_at = now() - interval '1 hour'");
    let before = app.get("/api/users/all-users/", Some(&admin)).await;
    let as_of = before.body["as_of"].as_str().unwrap().to_owned();
    let (id, _) = app.sign_up("busy").await;
    let changes = app
        .get(
            &format!(
                "/api/users/all-users/?changed_since={}",
                as_of.replace('+', "%2B")
            ),
            Some(&admin),
        )
        .await;
    assert_eq!(changes.status, StatusCode::OK, "{}", changes.body);
    let ids: Vec<_> = changes.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["username"] != "admin") // active too, through its own requests
        .map(|u| u["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [id], "none of the quiet users");
}

/// The users of a changes poll, but the admin (whose own requests are activity).
fn changed_ids(page: &Response) -> Vec<i64> {
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["username"] != "admin")
        .map(|u| u["id"].as_i64().unwrap())
        .collect()
}

#[actix_web::test]
async fn a_changes_poll_never_returns_a_user_left_alone_again() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (silent, _) = app.sign_up("silent").await;
    let (busy, busy_token) = app.sign_up("busy").await;
    let (_quiet, _) = app.sign_up("quiet").await;
    let poll = |since: Option<String>| {
        let (app, admin) = (&app, &admin);
        async move {
            let path = match since {
                Some(since) => format!(
                    "/api/users/all-users/?changed_since={}",
                    since.replace(':', "%3A").replace('+', "%2B")
                ),
                None => "/api/users/all-users/".to_owned(),
            };
            let page = app.get(&path, Some(admin)).await;
            let as_of = page.body["as_of"].as_str().unwrap().to_owned();
            (changed_ids(&page), as_of)
        }
    };
    let (_, mut as_of) = poll(None).await;
    // `silent` goes offline by time alone, a moment from now.
    app.db.execute(&format!(
        "UPDATE users SET last_seen = now() - interval '119.8 seconds' WHERE id = {silent}"
    ));
    let path = format!("/api/users/{silent}/status/");
    let crossed = eventually(Duration::from_secs(5), || {
        let (app, admin, path) = (&app, &admin, &path);
        async move { app.get(path, Some(admin)).await.body["presence"] == "offline" }
    })
    .await;
    assert!(crossed, "shown offline once past the window");
    let (changed, next) = poll(Some(as_of)).await;
    assert_eq!(changed, [silent], "the window's edge, with no write");
    as_of = next;
    // The sweep marks it offline (and records the transition): nothing an admin is shown
    // changes, so no poll returns it again, however soon after. (The flush first: the
    // sweep trusts no time this replica has not flushed through.)
    app.flush().await;
    assert_eq!(app.sweep().len(), 1);
    for round in 0..3 {
        let (changed, next) = poll(Some(as_of)).await;
        assert_eq!(
            changed,
            Vec::<i64>::new(),
            "round {round}: nobody did anything"
        );
        as_of = next;
    }
    // A real change comes back once, then no more.
    let status = json!({ "text": "lunch" });
    app.put("/api/users/me/status/", Some(&busy_token), Some(&status))
        .await;
    let (changed, next) = poll(Some(as_of)).await;
    assert_eq!(changed, [busy]);
    let (changed, _) = poll(Some(next)).await;
    assert_eq!(changed, Vec::<i64>::new());
}

#[actix_web::test]
async fn a_last_page_carries_no_next() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    app.register("second").await;
    // Exactly full: no other row, so no `next`.
    let page = app.get("/api/users/all-users/?limit=2", Some(&admin)).await;
    assert_eq!(page.body["count"], 2);
    assert!(page.body["next"].is_null(), "{}", page.body);
    let page = app.get("/api/users/all-users/?limit=1", Some(&admin)).await;
    let next = page.body["next"].as_str().expect("another row follows");
    let last = app
        .get(
            &format!("/api/users/all-users/?limit=1&cursor={next}"),
            Some(&admin),
        )
        .await;
    assert_eq!(last.body["count"], 1);
    assert!(last.body["next"].is_null(), "{}", last.body);
}
