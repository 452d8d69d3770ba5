//! What presence streams carry, with two API replicas and a worker on the test's own
//! database and Redis prefix: fan-out across replicas, resuming with `Last-Event-ID` on
//! both sides of its reach, a slow reader's resync, and privacy.

use std::time::Duration;

use presence_api::testing::{Event, EventStream, TestApp};
use presence_model::manual::Update;
use presence_testkit::eventually;
use serde_json::{Value, json};

use crate::helpers::queue_worker;

const WAIT: Duration = Duration::from_secs(10);

/// The next event that is not a keep-alive, or a panic after [`WAIT`].
async fn next(stream: &mut EventStream) -> Event {
    stream.next(WAIT).await.expect("an event within 10 s")
}

/// (user id, presence) of each status of a `presence` or `snapshot` event.
fn summary(event: &Event) -> Vec<(i64, String)> {
    let key = if event.event == "snapshot" {
        "users"
    } else {
        "changes"
    };
    let mut statuses: Vec<(i64, String)> = event.data[key]
        .as_array()
        .unwrap_or_else(|| panic!("{event:?}"))
        .iter()
        .map(|s| {
            (
                s["id"].as_i64().unwrap(),
                s["presence"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    statuses.sort_unstable();
    statuses
}

/// Until nothing waits to be published: every change so far has its revision.
async fn all_published(app: &TestApp) {
    let done = eventually(WAIT, async || {
        app.db
            .query_i64("SELECT count(*) AS n FROM unpublished_events")
            == 0
    })
    .await;
    assert!(done, "the worker published everything");
}

#[actix_web::test]
async fn a_change_made_through_one_replica_reaches_a_stream_on_another() {
    let a = TestApp::spawn().await;
    let b = a.replica(|_| {}).await;
    let _worker = queue_worker(&a);
    let alice = a.register("alice").await;
    let (_, observer) = b.sign_up("observer").await;
    let ticket = b.ticket(&observer).await;
    let mut stream = b
        .open_stream(&format!("ids={alice}&ticket={ticket}"), None, None)
        .await
        .unwrap();
    let snapshot = next(&mut stream).await;
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(summary(&snapshot), [(alice, "offline".to_owned())]);

    let token = a.login("alice").await;
    let online = next(&mut stream).await;
    assert_eq!(online.event, "presence");
    assert_eq!(summary(&online), [(alice, "online".to_owned())]);
    assert!(online.id.unwrap() > snapshot.id.unwrap());
    assert_eq!(online.id, online.data["rev"].as_i64());
    // Recorded, with that revision, before it was streamed.
    assert_eq!(
        a.db.query_i64(&format!(
            "SELECT count(*) AS n FROM presence_events WHERE revision = {} AND user_id = {alice}",
            online.id.unwrap()
        )),
        1
    );
    a.post("/api/users/logout/", Some(&token), None).await;
    let offline = next(&mut stream).await;
    assert_eq!(summary(&offline), [(alice, "offline".to_owned())]);
    assert!(offline.id > online.id);
}

#[actix_web::test]
async fn a_reconnect_with_last_event_id_gets_exactly_the_missed_changes_then_live_ones() {
    let a = TestApp::spawn().await;
    let b = a.replica(|_| {}).await;
    let _worker = queue_worker(&a);
    let (u1, u2, u3, other) = (
        a.register("user1").await,
        a.register("user2").await,
        a.register("user3").await,
        a.register("other").await,
    );
    let (_, observer) = a.sign_up("observer").await;
    let ids = format!("ids={u1},{u2},{u3}");
    let mut stream = b.open_stream(&ids, Some(&observer), None).await.unwrap();
    next(&mut stream).await;
    let t1 = a.login("user1").await;
    let seen = next(&mut stream).await;
    assert_eq!(summary(&seen), [(u1, "online".to_owned())]);
    drop(stream);

    // Missed while disconnected: u2 logs in, u1 sets a status, someone else logs in.
    a.login("user2").await;
    a.put(
        "/api/users/me/status/",
        Some(&t1),
        Some(&json!({ "availability": "dnd" })),
    )
    .await;
    a.login("other").await;
    all_published(&a).await;
    // Then all of it is in what the replica received (a resume from memory holds it all).
    assert!(a.received_everything_published().await);

    let mut resumed = a.open_stream(&ids, Some(&observer), seen.id).await.unwrap();
    let missed = next(&mut resumed).await;
    assert_eq!(missed.event, "presence", "{missed:?}");
    assert_eq!(
        summary(&missed),
        [(u1, "dnd".to_owned()), (u2, "online".to_owned())]
    );
    assert!(!summary(&missed).iter().any(|(id, _)| *id == other));
    // Then live, with nothing repeated.
    a.login("user3").await;
    let live = next(&mut resumed).await;
    assert_eq!(summary(&live), [(u3, "online".to_owned())]);
    assert!(live.id > missed.id);
}

const FROM_MEMORY: &str = r#"presence_api_stream_starts_total{kind="resume",source="memory"}"#;
const FROM_OUTBOX: &str = r#"presence_api_stream_starts_total{kind="resume",source="database"}"#;

/// How many resumes `app` has served from memory and from the outbox.
async fn resumes(app: &TestApp) -> (f64, f64) {
    (app.metric(FROM_MEMORY).await, app.metric(FROM_OUTBOX).await)
}

/// The revision of `user`'s latest change.
fn latest_revision(app: &TestApp, user: i64) -> i64 {
    app.db.query_i64(&format!(
        "SELECT max(revision) AS n FROM presence_events WHERE user_id = {user}"
    ))
}

#[actix_web::test]
async fn a_resume_inside_the_recent_window_is_served_from_memory_and_one_before_it_from_the_outbox()
{
    let a = TestApp::spawn_with(|config| config.streams.stream_resume_window = 3).await;
    let _worker = queue_worker(&a);
    let mut users = Vec::new();
    for i in 1..=5 {
        users.push(a.register(&format!("user{i}")).await);
    }
    let (_, observer) = a.sign_up("observer").await;
    let ids = format!(
        "ids={}",
        users
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    // Five logins, one revision each, in order; the window keeps the last three.
    let mut revisions = Vec::new();
    for (i, user) in users.iter().enumerate() {
        a.login(&format!("user{}", i + 1)).await;
        all_published(&a).await;
        revisions.push(latest_revision(&a, *user));
    }
    assert!(a.received_everything_published().await);
    let online = |from: usize| -> Vec<(i64, String)> {
        users[from..]
            .iter()
            .map(|id| (*id, "online".to_owned()))
            .collect()
    };
    let resume = async |after: i64| {
        let mut stream = a
            .open_stream(&ids, Some(&observer), Some(after))
            .await
            .unwrap();
        next(&mut stream).await
    };

    // The window starts after the second login: a resume from there is served from memory.
    let before = resumes(&a).await;
    let missed = resume(revisions[1]).await;
    assert_eq!(missed.event, "presence", "{missed:?}");
    assert_eq!(summary(&missed), online(2));
    assert_eq!(missed.id, Some(revisions[4]));
    assert_eq!(resumes(&a).await, (before.0 + 1.0, before.1));

    // One change earlier is outside it: the outbox, with exactly the changes it misses.
    let missed = resume(revisions[0]).await;
    assert_eq!(summary(&missed), online(1));
    assert_eq!(missed.id, Some(revisions[4]));
    assert_eq!(resumes(&a).await, (before.0 + 1.0, before.1 + 1.0));

    // At the last revision received: nothing missed, from memory; then live.
    let mut caught_up = a
        .open_stream(&ids, Some(&observer), Some(revisions[4]))
        .await
        .unwrap();
    let token = a.login("user1").await;
    a.put(
        "/api/users/me/status/",
        Some(&token),
        Some(&json!({ "availability": "dnd" })),
    )
    .await;
    let live = next(&mut caught_up).await;
    assert_eq!(live.event, "presence");
    assert_eq!(summary(&live), [(users[0], "dnd".to_owned())]);
    assert_eq!(resumes(&a).await, (before.0 + 2.0, before.1 + 1.0));
}

/// A replica that has heard no change since it subscribed (a quiet deployment, or one just
/// restarted when another's clients come to it) resumes from memory all the same: once
/// subscribed it reads the greatest revision given, and every later one arrives.
#[actix_web::test]
async fn a_replica_that_heard_nothing_yet_resumes_from_the_latest_revision_from_memory() {
    let a = TestApp::spawn().await;
    let _worker = queue_worker(&a);
    let alice = a.register("alice").await;
    let (_, observer) = a.sign_up("observer").await;
    let token = a.login("alice").await;
    all_published(&a).await;
    let latest =
        a.db.query_i64("SELECT max(revision) AS n FROM presence_events");
    assert_eq!(
        latest,
        latest_revision(&a, alice),
        "alice's login is the last change"
    );
    let b = a.replica(|_| {}).await;
    let ids = format!("ids={alice}");

    let seeded = eventually(WAIT, async || {
        let before = resumes(&b).await;
        let _stream = b
            .open_stream(&ids, Some(&observer), Some(latest))
            .await
            .unwrap();
        resumes(&b).await.0 > before.0
    })
    .await;
    assert!(
        seeded,
        "a resume from the latest revision is served from memory"
    );

    // One before it may have been sent before B subscribed: the outbox, exactly.
    let before = resumes(&b).await;
    let mut earlier = b
        .open_stream(&ids, Some(&observer), Some(latest - 1))
        .await
        .unwrap();
    let missed = next(&mut earlier).await;
    assert_eq!(summary(&missed), [(alice, "online".to_owned())]);
    assert_eq!(missed.id, Some(latest));
    assert_eq!(resumes(&b).await, (before.0, before.1 + 1.0));

    // From the latest: nothing missed, from memory, then the next change live.
    let mut caught_up = b
        .open_stream(&ids, Some(&observer), Some(latest))
        .await
        .unwrap();
    assert_eq!(resumes(&b).await, (before.0 + 1.0, before.1 + 1.0));
    a.post("/api/users/logout/", Some(&token), None).await;
    let live = next(&mut caught_up).await;
    assert_eq!(live.event, "presence");
    assert_eq!(summary(&live), [(alice, "offline".to_owned())]);
    assert!(live.id > Some(latest));
}

#[actix_web::test]
async fn resuming_reaches_back_as_far_as_configured_and_no_further() {
    let a = TestApp::spawn_with(|config| config.streams.stream_resume_secs = 2).await;
    let _worker = queue_worker(&a);
    let u1 = a.register("user1").await;
    let (_, observer) = a.sign_up("observer").await;
    let query = format!("ids={u1}");
    let mut stream = a.open_stream(&query, Some(&observer), None).await.unwrap();
    let start = next(&mut stream).await;
    drop(stream);
    let token = a.login("user1").await;
    all_published(&a).await;

    // Inside the reach: the change itself.
    let mut inside = a
        .open_stream(&query, Some(&observer), start.id)
        .await
        .unwrap();
    let change = next(&mut inside).await;
    assert_eq!(change.event, "presence");
    assert_eq!(summary(&change), [(u1, "online".to_owned())]);
    drop(inside);

    // The first change after that revision is now older than the reach: a snapshot.
    let aged = eventually(WAIT, async || {
        a.db.query_i64(
            "SELECT count(*) AS n FROM presence_events \
             WHERE revision_at > now() - interval '2 seconds'",
        ) == 0
    })
    .await;
    assert!(aged);
    a.post("/api/users/logout/", Some(&token), None).await;
    all_published(&a).await;
    let mut outside = a
        .open_stream(&query, Some(&observer), start.id)
        .await
        .unwrap();
    let resync = next(&mut outside).await;
    assert_eq!(resync.event, "resync");
    assert_eq!(resync.data["reason"], "too_old");
    let snapshot = next(&mut outside).await;
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(summary(&snapshot), [(u1, "offline".to_owned())]);
    // A revision never given is no resume either.
    let mut future = a
        .open_stream(&query, Some(&observer), Some(snapshot.id.unwrap() + 1000))
        .await
        .unwrap();
    assert_eq!(next(&mut future).await.event, "resync");
}

#[actix_web::test]
async fn changes_are_coalesced_into_one_batch_per_interval() {
    let a = TestApp::spawn_with(|config| config.streams.stream_batch_ms = 1500).await;
    let _worker = queue_worker(&a);
    let (u1, t1) = a.sign_up("user1").await;
    let (_, observer) = a.sign_up("observer").await;
    all_published(&a).await;
    let mut stream = a
        .open_stream(&format!("ids={u1}"), Some(&observer), None)
        .await
        .unwrap();
    next(&mut stream).await;
    // After a quiet interval, a lone change goes out at once...
    a.put(
        "/api/users/me/status/",
        Some(&t1),
        Some(&json!({ "availability": "away" })),
    )
    .await;
    let first = stream
        .next(Duration::from_millis(1200))
        .await
        .expect("at once");
    assert_eq!(summary(&first), [(u1, "away".to_owned())]);
    // ... and what follows within the interval is held, the latest of each user only.
    for availability in ["dnd", "away", "dnd"] {
        a.put(
            "/api/users/me/status/",
            Some(&t1),
            Some(&json!({ "availability": availability })),
        )
        .await;
    }
    all_published(&a).await;
    let batch = next(&mut stream).await;
    assert_eq!(summary(&batch), [(u1, "dnd".to_owned())]);
    assert_eq!(batch.data["changes"].as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn a_reader_too_slow_to_keep_up_gets_resync_and_a_new_snapshot() {
    let a = TestApp::spawn_with(|config| {
        config.streams.stream_batch_ms = 1;
        config.streams.stream_stall_ms = 300;
    })
    .await;
    let _worker = queue_worker(&a);
    // Many users with long custom statuses: a lot of bytes per batch.
    let ids: Vec<i64> = (0..200)
        .map(|n| {
            a.db.query_i64(&format!(
                "INSERT INTO users (username, password_hash) VALUES ('slow{n}', 'x') \
                 RETURNING id AS n"
            ))
        })
        .collect();
    let timings = a.config.timings();
    let pool = a.db.pool().clone();
    let (_, observer) = a.sign_up("observer").await;
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    // A client that reads nothing, with a tiny receive window.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let port: u16 = a.address.rsplit(':').next().unwrap().parse().unwrap();
    socket
        .connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    let mut client: std::net::TcpStream = socket.into();
    {
        use std::io::Write;
        write!(
            client,
            "GET /api/presence/stream/?ids={} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {observer}\r\n\r\n",
            list.join(",")
        )
        .unwrap();
    }
    {
        let mut conn = pool.get().unwrap();
        for id in &ids {
            presence_model::presence::mark_user_online(
                &mut conn,
                timings,
                presence_model::ids::UserId(*id),
                presence_model::vocabulary::ChangeReason::Activity,
            )
            .unwrap();
        }
    }
    // Changes keep coming (each status some 550 bytes: four-byte characters) while the
    // client reads nothing, until the stream gives up on what it holds (a resync is
    // counted).
    let round = std::sync::atomic::AtomicU32::new(0);
    // How many rounds that takes depends on how far the kernel lets the server's send
    // buffer grow, and each round on the machine's load: a generous bound.
    let resynced = eventually(Duration::from_secs(120), async || {
        let (pool, ids) = (pool.clone(), ids.clone());
        let round = round.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        actix_web::rt::task::spawn_blocking(move || {
            let mut conn = pool.get().unwrap();
            let change = presence_model::manual::StatusUpdate {
                text: Update::Set(Some(format!("{}{round}", "😀".repeat(95)))),
                emoji: Update::Set(Some("😀".repeat(32))),
                ..Default::default()
            };
            for id in ids {
                presence_model::manual::set_status(
                    &mut conn,
                    timings,
                    presence_model::ids::UserId(id),
                    &change,
                )
                .unwrap();
            }
        })
        .await
        .unwrap();
        a.metric("presence_api_stream_resyncs_total").await >= 1.0
    })
    .await;
    assert!(resynced, "the stalled stream dropped what it held");
    // When the client reads again, it finds a resync followed by a complete snapshot.
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 65536];
    // Keep-alives arrive every few seconds, so each read returns: bound the whole search.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let found = loop {
        use std::io::Read;
        assert!(
            std::time::Instant::now() < deadline,
            "no resync and snapshot in {} bytes read",
            seen.len()
        );
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended");
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if let Some(at) = text.find("event: resync") {
            let after = &text[at..];
            if let Some(snapshot) = after.find("event: snapshot")
                && let Some(end) = after[snapshot..].find("\n\n")
            {
                break after[snapshot..snapshot + end].to_owned();
            }
        }
    };
    let data = found
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    let snapshot: Value = serde_json::from_str(data).unwrap();
    assert_eq!(snapshot["users"].as_array().unwrap().len(), ids.len());
}

#[actix_web::test]
async fn a_stream_never_tells_an_invisible_user_from_a_logged_out_one() {
    let a = TestApp::spawn().await;
    let _worker = queue_worker(&a);
    let (hidden, hidden_token) = a.sign_up("hidden").await;
    let (gone, gone_token) = a.sign_up("gone").await;
    let (_, observer) = a.sign_up("observer").await;
    for token in [&hidden_token, &gone_token] {
        a.put(
            "/api/users/me/status/",
            Some(token),
            Some(&json!({ "text": "busy" })),
        )
        .await;
    }
    all_published(&a).await;
    let mut stream = a
        .open_stream(&format!("ids={hidden},{gone}"), Some(&observer), None)
        .await
        .unwrap();
    next(&mut stream).await;
    a.put(
        "/api/users/me/status/",
        Some(&hidden_token),
        Some(&json!({ "availability": "invisible" })),
    )
    .await;
    a.post("/api/users/logout/", Some(&gone_token), None).await;
    let mut statuses: Vec<Value> = Vec::new();
    while statuses.len() < 2 {
        let event = next(&mut stream).await;
        statuses.extend(event.data["changes"].as_array().unwrap().iter().cloned());
    }
    let comparable = |mut status: Value| {
        let object = status.as_object_mut().unwrap();
        object.remove("id");
        object.remove("last_seen");
        status
    };
    assert_eq!(
        comparable(statuses[0].clone()),
        comparable(statuses[1].clone())
    );
    assert_eq!(statuses[0]["presence"], "offline");
    assert!(statuses[0]["status_text"].is_null());
    // Still using the app while invisible: the stream stays silent about it.
    a.post("/api/users/heartbeat/", Some(&hidden_token), None)
        .await;
    a.put(
        "/api/users/me/status/",
        Some(&hidden_token),
        Some(&json!({ "text": "hiding" })),
    )
    .await;
    all_published(&a).await;
    assert!(stream.next(Duration::from_millis(500)).await.is_none());
    // A fresh snapshot says the same, from memory (changes have arrived since the
    // subscription began)...
    a.flush().await;
    assert!(a.received_everything_published().await);
    let from_memory = r#"presence_api_stream_starts_total{kind="snapshot",source="memory"}"#;
    let before = a.metric(from_memory).await;
    let mut fresh = a
        .open_stream(&format!("ids={hidden},{gone}"), Some(&observer), None)
        .await
        .unwrap();
    let snapshot = next(&mut fresh).await;
    assert_eq!(a.metric(from_memory).await, before + 1.0);
    let users = snapshot.data["users"].as_array().unwrap();
    assert_eq!(comparable(users[0].clone()), comparable(users[1].clone()));
    // ... exactly as PostgreSQL's (an admin's stream of everyone is read there).
    let admin = a.admin().await;
    let mut everyone = a
        .open_stream("scope=all", Some(&admin), None)
        .await
        .unwrap();
    let from_database = next(&mut everyone).await;
    for user in users {
        let same = from_database.data["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|other| other["id"] == user["id"]);
        assert_eq!(same, Some(user));
    }
}
