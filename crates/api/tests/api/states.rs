//! Away, do-not-disturb, invisible and the custom status, with compressed timings (away
//! after 2 s), over real HTTP against a real PostgreSQL.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};
use presence_api::testing::TestApp;
use presence_testkit::eventually;
use serde_json::{Value, json};

const AWAY_AFTER_SECS: u32 = 2;

async fn spawn() -> TestApp {
    TestApp::spawn_with(|config| config.away_after_secs = AWAY_AFTER_SECS).await
}

async fn heartbeat(app: &TestApp, token: &str, active: bool) {
    let body = json!({ "active": active });
    let response = app
        .post("/api/users/heartbeat/", Some(token), Some(&body))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
}

async fn status_of(app: &TestApp, viewer: &str, id: i64) -> Value {
    let response = app
        .get(&format!("/api/users/{id}/status/"), Some(viewer))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    response.body
}

async fn presence_of(app: &TestApp, viewer: &str, id: i64) -> String {
    status_of(app, viewer, id).await["presence"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn set_status(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app
        .put("/api/users/me/status/", Some(token), Some(&body))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    response.body
}

/// The transitions recorded for `id`: (from, to, reason), oldest first.
fn recorded(app: &TestApp, id: i64) -> Vec<(String, String, String)> {
    let mut conn = app.db.pool().get().unwrap();
    let mut events =
        presence_model::feed::presence_history(&mut conn, presence_model::ids::UserId(id), 1000)
            .unwrap()
            .unwrap();
    events.reverse();
    events
        .iter()
        .map(|e| triple(e.from.as_str(), e.to.as_str(), e.reason.as_str()))
        .collect()
}

fn triple(from: &str, to: &str, reason: &str) -> (String, String, String) {
    (from.to_owned(), to.to_owned(), reason.to_owned())
}

/// Keeps `active` devices using the app and `idle` ones open but untouched for longer than
/// the away timeout, checking after each round that `check` holds.
async fn for_longer_than_the_away_timeout(
    app: &TestApp,
    active: &[&str],
    idle: &[&str],
    mut check: impl AsyncFnMut() -> bool,
) {
    let until = Instant::now() + Duration::from_secs(u64::from(AWAY_AFTER_SECS) + 1);
    // The devices' own cadence: a round of heartbeats every 200 ms.
    let mut rounds = actix_web::rt::time::interval(Duration::from_millis(200));
    while Instant::now() < until {
        rounds.tick().await;
        for token in active {
            heartbeat(app, token, true).await;
        }
        for token in idle {
            heartbeat(app, token, false).await;
        }
        assert!(check().await);
    }
}

#[actix_web::test]
async fn one_active_device_keeps_the_user_online_and_two_idle_ones_make_them_away() {
    let app = spawn().await;
    let (id, phone) = app.sign_up("alice").await;
    let laptop = app.login("alice").await;
    let (_, observer) = app.sign_up("observer").await;

    for_longer_than_the_away_timeout(&app, &[&laptop], &[&phone], async || {
        presence_of(&app, &observer, id).await == "online"
    })
    .await;
    // Both idle: away once the away timeout has passed since the last use, for readers at
    // once, and recorded by the next sweep with reason `idle`.
    let idle_since = Instant::now();
    let away = eventually(Duration::from_secs(10), async || {
        heartbeat(&app, &phone, false).await;
        heartbeat(&app, &laptop, false).await;
        presence_of(&app, &observer, id).await == "away"
    })
    .await;
    assert!(away);
    assert!(
        idle_since.elapsed() >= Duration::from_secs(1),
        "not before its time"
    );
    let status = status_of(&app, &observer, id).await;
    assert_eq!(status["online_status"], "online", "away is still connected");
    app.flush().await;
    app.sweep();
    assert_eq!(
        recorded(&app, id),
        [
            triple("offline", "online", "login"),
            triple("online", "away", "idle")
        ]
    );
    // Real use brings them back at once, recorded with the request's reason.
    heartbeat(&app, &phone, true).await;
    assert_eq!(presence_of(&app, &observer, id).await, "online");
    assert_eq!(
        recorded(&app, id).last(),
        Some(&triple("away", "online", "heartbeat"))
    );
    let counts = app.get("/api/users/online-count/", Some(&observer)).await;
    assert_eq!(
        counts.body,
        json!({ "count": 2, "online": 2, "away": 0, "dnd": 0 })
    );
}

#[actix_web::test]
async fn when_one_device_logs_out_the_devices_left_decide() {
    let app = spawn().await;
    let (id, desk) = app.sign_up("bob").await;
    let tablet = app.login("bob").await;
    let (_, observer) = app.sign_up("observer").await;
    for_longer_than_the_away_timeout(&app, &[&desk], &[&tablet], async || {
        presence_of(&app, &observer, id).await == "online"
    })
    .await;
    app.flush().await;
    // The active device leaves; the tablet has been idle for longer than the timeout.
    let response = app.post("/api/users/logout/", Some(&desk), None).await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert_eq!(presence_of(&app, &observer, id).await, "away");
    assert_eq!(
        recorded(&app, id).last(),
        Some(&triple("online", "away", "logout"))
    );
    let response = app.post("/api/users/logout/", Some(&tablet), None).await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert_eq!(presence_of(&app, &observer, id).await, "offline");
    assert_eq!(
        recorded(&app, id).last(),
        Some(&triple("away", "offline", "logout"))
    );
}

#[actix_web::test]
async fn a_manual_dnd_beats_activity_shows_only_while_connected_and_ends_on_time() {
    let app = spawn().await;
    let (id, token) = app.sign_up("carol").await;
    let (_, observer) = app.sign_up("observer").await;
    let until = Utc::now() + TimeDelta::seconds(2);
    let own = set_status(
        &app,
        &token,
        json!({ "availability": "dnd", "until": until.to_rfc3339() }),
    )
    .await;
    assert_eq!(own["presence"], "dnd");
    assert_eq!(own["availability"], "dnd");
    let seen = status_of(&app, &observer, id).await;
    assert_eq!(seen["presence"], "dnd");
    assert_eq!(seen["online_status"], "online");
    let dnd_until: DateTime<Utc> = serde_json::from_value(seen["dnd_until"].clone()).unwrap();
    assert_eq!(dnd_until.timestamp_micros(), until.timestamp_micros());
    assert!(seen.get("availability").is_none(), "the caller's own only");
    // Activity changes nothing others are shown while dnd lasts.
    heartbeat(&app, &token, true).await;
    app.get("/api/users/me/", Some(&token)).await;
    assert_eq!(presence_of(&app, &observer, id).await, "dnd");
    assert_eq!(
        recorded(&app, id),
        [
            triple("offline", "online", "login"),
            triple("online", "dnd", "manual")
        ]
    );
    // At `until`, readers see the user (still using the app) back to automatic presence
    // at once...
    let ended = eventually(Duration::from_secs(5), async || {
        heartbeat(&app, &token, true).await;
        presence_of(&app, &observer, id).await == "online"
    })
    .await;
    assert!(ended);
    assert!(Utc::now() >= until);
    assert!(status_of(&app, &observer, id).await["dnd_until"].is_null());
    // ... and the end is recorded (by the job scheduled for it, or the sweep).
    app.sweep();
    assert_eq!(
        recorded(&app, id).last(),
        Some(&triple("dnd", "online", "expiry"))
    );
    let own = app.get("/api/users/me/status/", Some(&token)).await;
    assert_eq!(own.body["availability"], "auto");

    // Offline wins over a manual status. (The activity deferred so far is written first,
    // so no flush lands after the silence set here.)
    set_status(&app, &token, json!({ "availability": "dnd" })).await;
    app.flush().await;
    app.db.execute(&format!(
        "UPDATE users SET last_seen = now() - interval '1 hour' WHERE id = {id}"
    ));
    // Written by another writer than this replica: heard within a poll of its listener.
    let heard = eventually(Duration::from_secs(1), async || {
        presence_of(&app, &observer, id).await == "offline"
    })
    .await;
    assert!(heard, "offline once the write is heard");
    app.sweep();
    assert_eq!(
        recorded(&app, id).last(),
        Some(&triple("dnd", "offline", "sweep"))
    );
}

#[actix_web::test]
async fn an_invisible_user_is_to_others_exactly_a_user_who_logged_out() {
    let app = spawn().await;
    let (id, token) = app.sign_up("dave").await;
    let (gone, gone_token) = app.sign_up("erin").await;
    let (_, observer) = app.sign_up("observer").await;
    let admin = app.admin().await;
    set_status(
        &app,
        &token,
        json!({ "text": "in a meeting", "emoji": "📅" }),
    )
    .await;
    set_status(
        &app,
        &gone_token,
        json!({ "text": "in a meeting", "emoji": "📅" }),
    )
    .await;

    let own = set_status(&app, &token, json!({ "availability": "invisible" })).await;
    let went_invisible = Utc::now();
    app.post("/api/users/logout/", Some(&gone_token), None)
        .await;
    // Still using the app, and changing the custom status, while invisible.
    heartbeat(&app, &token, true).await;
    set_status(&app, &token, json!({ "text": "heads down" })).await;
    app.get("/api/users/me/", Some(&token)).await;

    assert_eq!(own["presence"], "online", "the user sees the truth");
    assert_eq!(own["availability"], "invisible");
    let hidden = status_of(&app, &observer, id).await;
    let logged_out = status_of(&app, &observer, gone).await;
    let without_id_and_time = |mut v: Value| {
        let object = v.as_object_mut().unwrap();
        object.remove("id");
        object.remove("last_seen");
        v
    };
    assert_eq!(
        without_id_and_time(hidden.clone()),
        without_id_and_time(logged_out.clone()),
        "same shape, same values"
    );
    assert_eq!(hidden["presence"], "offline");
    assert_eq!(hidden["status_text"], Value::Null);
    let frozen: DateTime<Utc> = serde_json::from_value(hidden["last_seen"].clone()).unwrap();
    assert!(
        frozen <= went_invisible,
        "last_seen frozen when they went invisible"
    );

    // The bulk lookup and the counts tell the same.
    let bulk = app
        .post(
            "/api/users/statuses/",
            Some(&observer),
            Some(&json!({ "ids": [id, gone] })),
        )
        .await;
    assert_eq!(bulk.body["statuses"][0], hidden);
    assert_eq!(bulk.body["statuses"][1], logged_out);
    let counts = app.get("/api/users/online-count/", Some(&observer)).await;
    assert_eq!(
        counts.body,
        json!({ "count": 2, "online": 2, "away": 0, "dnd": 0 }),
        "observer and admin, not the invisible user"
    );
    // The history others could read holds what a logout holds.
    let recorded_hidden = recorded(&app, id);
    assert_eq!(
        recorded_hidden[1..],
        [
            triple("online", "online", "status_text"),
            triple("online", "offline", "logout")
        ]
    );
    assert_eq!(recorded(&app, gone)[1..], recorded_hidden[1..]);
    let history = app
        .get(
            &format!("/api/users/{id}/presence-history/"),
            Some(&observer),
        )
        .await;
    assert_eq!(history.status, StatusCode::FORBIDDEN);

    // A status lookup shows admins what everyone is shown; their list shows the truth.
    assert_eq!(status_of(&app, &admin, id).await, hidden);
    let listed = app
        .get("/api/users/all-users/?presence=online", Some(&admin))
        .await;
    let truth = listed.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == id)
        .unwrap_or_else(|| panic!("{}", listed.body));
    assert_eq!(truth["presence"], "online");
    assert_eq!(truth["invisible"], true);
    assert_eq!(truth["status_text"], "heads down");

    // Coming back is what a login would look like, with the text set meanwhile.
    set_status(&app, &token, json!({ "availability": "auto" })).await;
    assert_eq!(
        recorded(&app, id).last(),
        Some(&triple("offline", "online", "login"))
    );
    assert_eq!(
        status_of(&app, &observer, id).await["status_text"],
        "heads down"
    );
}

#[actix_web::test]
async fn a_custom_status_is_kept_until_it_expires_and_its_changes_are_recorded() {
    let app = spawn().await;
    let (id, token) = app.sign_up("frank").await;
    let (_, observer) = app.sign_up("observer").await;
    let expires = Utc::now() + TimeDelta::seconds(1);
    set_status(
        &app,
        &token,
        json!({ "text": "lunch", "emoji": "🍜", "text_expires_at": expires.to_rfc3339() }),
    )
    .await;
    let seen = status_of(&app, &observer, id).await;
    assert_eq!(
        (seen["status_text"].as_str(), seen["status_emoji"].as_str()),
        (Some("lunch"), Some("🍜"))
    );
    // Fields left out keep their value.
    set_status(&app, &token, json!({ "availability": "away" })).await;
    let seen = status_of(&app, &observer, id).await;
    assert_eq!(seen["status_text"], "lunch");
    assert_eq!(seen["presence"], "away");
    let cleared = eventually(Duration::from_secs(5), async || {
        status_of(&app, &observer, id).await["status_text"].is_null()
    })
    .await;
    assert!(cleared);
    assert!(status_of(&app, &observer, id).await["status_emoji"].is_null());
    app.sweep();
    assert_eq!(
        recorded(&app, id),
        [
            triple("offline", "online", "login"),
            triple("online", "online", "status_text"),
            triple("online", "away", "manual"),
            triple("away", "away", "expiry"),
        ]
    );
    // Cleared on purpose with null.
    set_status(
        &app,
        &token,
        json!({ "text": "back", "availability": "auto" }),
    )
    .await;
    set_status(&app, &token, json!({ "text": null })).await;
    assert!(status_of(&app, &observer, id).await["status_text"].is_null());
}

#[actix_web::test]
async fn statuses_are_looked_up_in_bulk_in_the_order_asked() {
    let app = spawn().await;
    let (a, token) = app.sign_up("gina").await;
    let b = app.register("hank").await;
    let response = app
        .post(
            "/api/users/statuses/",
            Some(&token),
            Some(&json!({ "ids": [b, 999_999, a, b] })),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let ids: Vec<i64> = response.body["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [b, a, b]);
    assert_eq!(response.body["missing"], json!([999_999]));
    assert_eq!(response.body["statuses"][0]["presence"], "offline");
    assert_eq!(response.body["statuses"][1]["presence"], "online");
    // Each missing id once, in the order first asked, adjacent or not.
    let repeated = app
        .post(
            "/api/users/statuses/",
            Some(&token),
            Some(&json!({ "ids": [-1, -2, -1, a, -2] })),
        )
        .await;
    assert_eq!(repeated.body["missing"], json!([-1, -2]));

    let many: Vec<i64> = (1..=500).collect();
    let response = app
        .post(
            "/api/users/statuses/",
            Some(&token),
            Some(&json!({ "ids": many })),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body["missing"].as_array().unwrap().len(), 498);
    // `2.0` is an integer to JSON Schema, and so an id here.
    let response = app
        .post(
            "/api/users/statuses/",
            Some(&token),
            Some(&json!({ "ids": [a as f64] })),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.body["statuses"][0]["id"], a);
    let too_many: Vec<i64> = (1..=501).collect();
    for (body, field) in [
        (json!({ "ids": too_many }), "ids"),
        (json!({ "ids": [] }), "ids"),
        (json!({ "ids": [1, "2"] }), "ids[1]"),
        (json!({ "ids": [1.5] }), "ids[0]"),
    ] {
        let response = app
            .post("/api/users/statuses/", Some(&token), Some(&body))
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(response.body["error"]["field"], field, "{}", response.body);
    }
}

/// A body sent as written (JSON a `Value` cannot hold, such as a key twice).
async fn raw_json(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> (u16, String) {
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let (method, path, token, body) = (
        method.to_owned(),
        path.to_owned(),
        token.to_owned(),
        body.to_owned(),
    );
    tokio::task::spawn_blocking(move || {
        presence_testkit::raw_http(port, &method, &path, Some(&token), &body)
    })
    .await
    .unwrap()
}

#[actix_web::test]
async fn bad_status_changes_are_refused_naming_the_field() {
    let app = spawn().await;
    let (_, token) = app.sign_up("ivan").await;
    let past = (Utc::now() - TimeDelta::minutes(1)).to_rfc3339();
    let future = (Utc::now() + TimeDelta::minutes(1)).to_rfc3339();
    let far_future = (Utc::now() + TimeDelta::days(31)).to_rfc3339();
    for (body, field) in [
        (json!({ "availability": "busy" }), "availability"),
        (json!({ "availability": "dnd", "until": past }), "until"),
        (json!({ "availability": "auto", "until": future }), "until"),
        (
            json!({ "availability": "invisible", "until": future }),
            "until",
        ),
        (json!({ "until": future }), "until"),
        (json!({ "availability": null, "until": future }), "until"),
        (json!({ "text": "x".repeat(101) }), "text"),
        (json!({ "emoji": "x".repeat(33) }), "emoji"),
        (
            json!({ "text": "x", "text_expires_at": past }),
            "text_expires_at",
        ),
        (json!({ "text": 5 }), "text"),
        (json!({ "text": "a\u{0}b" }), "text"),
        (json!({ "emoji": "\u{0}" }), "emoji"),
        (json!({ "text": "evil\u{202E}txt.exe" }), "text"),
        (json!({ "text": "ok\u{2066}isolated" }), "text"),
        (json!({ "text": "line\nbreak" }), "text"),
        (json!({ "text": "\u{1b}[31mred" }), "text"),
        (
            json!({ "availability": "dnd", "until": far_future }),
            "until",
        ),
        (
            json!({ "text": "x", "text_expires_at": far_future }),
            "text_expires_at",
        ),
        (json!({ "mood": "happy" }), "mood"),
    ] {
        let response = app
            .put("/api/users/me/status/", Some(&token), Some(&body))
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}");
        let error = &response.body["error"];
        let named = error["field"].as_str().unwrap_or_default();
        assert!(
            named == field
                || error["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(field),
            "{body}: {}",
            response.body
        );
    }
    let response = app
        .put(
            "/api/users/me/status/",
            Some(&token),
            Some(&json!({ "text": "x".repeat(100) })),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK);
    // Emoji sequences (a zero-width joiner) and right-to-left text are fine; an end a
    // month less a minute away too.
    let response = app
        .put(
            "/api/users/me/status/",
            Some(&token),
            Some(&json!({ "text": "שלום", "emoji": "👩\u{200D}💻",
                "text_expires_at": (Utc::now() + TimeDelta::days(30) - TimeDelta::minutes(1)).to_rfc3339() })),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    // A key given twice is refused, whichever would win.
    let (status, body) = raw_json(
        &app,
        "PUT",
        "/api/users/me/status/",
        &token,
        r#"{"availability": "dnd", "availability": "auto"}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("duplicate key"), "{body}");
    assert_eq!(
        app.get("/api/users/me/status/", Some(&token))
            .await
            .headers
            .get("x-content-type-options")
            .unwrap(),
        "nosniff"
    );
    let response = app
        .post(
            "/api/users/heartbeat/",
            Some(&token),
            Some(&json!({ "active": "no" })),
        )
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.body["error"]["field"], "active");
    // The body is the object or nothing: JSON `null` is neither.
    let response = app
        .post("/api/users/heartbeat/", Some(&token), Some(&Value::Null))
        .await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.body
    );
    let empty = app.post("/api/users/heartbeat/", Some(&token), None).await;
    assert_eq!(empty.status, StatusCode::OK);
}

#[actix_web::test]
async fn the_admin_list_filters_by_presence_and_returns_who_went_away() {
    let app = spawn().await;
    let (online, _) = app.sign_up("jane").await;
    let (away, _) = app.sign_up("kim").await;
    let (dnd, dnd_token) = app.sign_up("lee").await;
    let offline = app.register("max").await;
    let admin = app.admin().await;
    set_status(&app, &dnd_token, json!({ "availability": "dnd" })).await;
    app.db.execute(&format!(
        "UPDATE users SET active_at = now() - interval '1 minute' WHERE id = {away}"
    ));
    let ids = |body: &Value| -> Vec<i64> {
        body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_i64().unwrap())
            .collect()
    };
    for (presence, expected) in [
        ("online", vec![online]),
        ("away", vec![away]),
        ("dnd", vec![dnd]),
        ("offline", vec![offline]),
    ] {
        let response = app
            .get(
                &format!("/api/users/all-users/?presence={presence}"),
                Some(&admin),
            )
            .await;
        let mut listed = ids(&response.body);
        listed.retain(|id| [online, away, dnd, offline].contains(id));
        assert_eq!(listed, expected, "{presence}");
    }
    // Going away with no write at all is a change: `online` crossed the away edge half a
    // second ago, `away` long ago, and nobody was written since. (The activity deferred
    // so far is written first, so no flush lands after the times set here.)
    app.flush().await;
    app.db
        .execute("UPDATE users SET changed_at = now() - interval '1 hour'");
    app.db.execute(&format!(
        "UPDATE users SET active_at = now() - interval '2.5 seconds' WHERE id = {online}"
    ));
    let since = (Utc::now() - TimeDelta::seconds(1)).to_rfc3339();
    let changes = app
        .get(
            &format!("/api/users/all-users/?changed_since={}", urlencode(&since)),
            Some(&admin),
        )
        .await;
    assert_eq!(ids(&changes.body), [online], "{}", changes.body);
    let response = app
        .get("/api/users/all-users/?presence=busy", Some(&admin))
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
}

fn urlencode(text: &str) -> String {
    text.replace(':', "%3A").replace('+', "%2B")
}
