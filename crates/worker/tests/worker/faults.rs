//! Redis killed under the API and the worker (a server of the test's own): every
//! transition made meanwhile is recorded at once and published once Redis is back.

use std::time::Duration;

use actix_web::http::StatusCode;
use presence_api::testing::TestApp;
use presence_testkit::{OwnRedis, Process};

use crate::helpers::{NEVER, WorkerEnv, eventually, published_changes, timings};

/// A Redis server of the test's own, an API and a worker on it (the worker catching up on
/// the outbox every 100 ms, its sweep never firing).
async fn on_own_redis() -> (OwnRedis, TestApp, Process) {
    let redis = OwnRedis::start();
    let redis_url = redis.url();
    let app = TestApp::spawn_with(|config| config.redis.redis_url = redis_url.clone()).await;
    let worker = Process::spawn(worker_command(&app));
    (redis, app, worker)
}

/// A worker on `app`'s database and Redis, catching up every 100 ms, its sweep never
/// firing.
fn worker_command(app: &TestApp) -> std::process::Command {
    let mut command = WorkerEnv {
        database_url: app.db.url(),
        redis_prefix: &app.config.redis.redis_prefix,
        schedule: NEVER,
        timings: timings(120),
    }
    .command("run");
    command
        .env("REDIS_URL", &app.config.redis.redis_url)
        .env("PUBLISH_CATCH_UP_MS", "100");
    command
}

/// Transitions recorded and not yet published.
fn unpublished(app: &TestApp) -> i64 {
    app.db
        .query_i64("SELECT count(*) AS n FROM unpublished_events")
}

#[actix_web::test]
async fn transitions_made_while_redis_is_down_are_published_when_it_returns() {
    let (mut redis, app, worker) = on_own_redis().await;
    let unpublished = || unpublished(&app);

    let (_, alice) = app.sign_up("alice").await;
    let (_, bob) = app.sign_up("bob").await;
    assert!(eventually(Duration::from_secs(10), || unpublished() == 0).await);

    redis.kill();
    assert_eq!(
        app.post("/api/users/logout/", Some(&alice), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.post("/api/users/logout/", Some(&bob), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    app.sign_up("carol").await;
    app.login("alice").await;
    // Recorded at once, in the transactions that made them; none published yet.
    assert_eq!(
        app.db
            .query_i64("SELECT count(*) AS n FROM presence_events"),
        6
    );
    assert_eq!(unpublished(), 4);

    redis.start_again();
    assert!(
        eventually(Duration::from_secs(15), || unpublished() == 0).await,
        "{}",
        worker.log()
    );
    // Published in id order: nothing later went out before anything earlier.
    assert_eq!(
        app.db.query_i64(
            "SELECT count(*) AS n FROM presence_events a JOIN presence_events b \
             ON a.id < b.id WHERE a.revision > b.revision"
        ),
        0
    );
    let (status, log) = worker.terminate(Duration::from_secs(25));
    assert!(status.is_some_and(|s| s.success()), "{log}");
}

/// An outage of PostgreSQL longer than the window, under heartbeats: silence during an
/// outage is not silence, so nobody who heartbeats again after it is swept, while a user
/// who really left is swept once a window of heard time has passed.
#[actix_web::test]
async fn an_outage_longer_than_the_window_sweeps_nobody_who_heartbeats_after_it() {
    use presence_model::testing::TestDatabase;
    use presence_testkit::OwnPostgres;

    let postgres = OwnPostgres::start();
    let app = TestApp::spawn_on(TestDatabase::on_server(&postgres.url()), |config| {
        config.offline_after_secs = 8;
        // Clients beat every 3 s: after the outage, sweeps (every second) come first.
        config.heartbeat_interval_ms = 3000;
        config.database.database_pool_timeout_ms = 300;
    })
    .await;
    let _worker = WorkerEnv {
        database_url: app.db.url(),
        redis_prefix: &app.config.redis.redis_prefix,
        schedule: "* * * * * *",
        timings: app.config.timings(),
    }
    .spawn();
    let mut heartbeating = Vec::new();
    for name in ["ann", "ben", "cat"] {
        heartbeating.push(app.sign_up(name).await);
    }
    let (left, _) = app.sign_up("gone").await;
    let beat = async || {
        for (_, token) in &heartbeating {
            // Answered 503 while PostgreSQL is down: the client just beats again.
            let _ = app.post("/api/users/heartbeat/", Some(token), None).await;
        }
    };
    let swept_at = |ids: &[i64]| {
        let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
        app.db.query_i64(&format!(
            "SELECT count(*) AS n FROM presence_events WHERE to_status = 'offline' \
             AND user_id IN ({})",
            ids.join(",")
        ))
    };
    // The client's cadence, a heartbeat every 3 s: a pace, not a wait for anything.
    let mut pace = actix_web::rt::time::interval(Duration::from_secs(1));
    let mut second = 0;
    let mut tick = async || {
        pace.tick().await;
        second += 1;
        if second % 3 == 0 {
            beat().await;
        }
    };
    for _ in 0..6 {
        tick().await;
    }
    postgres.stop();
    for _ in 0..16 {
        tick().await;
    }
    postgres.start_again();
    let mut gone_swept = false;
    for _ in 0..14 {
        tick().await;
        gone_swept = gone_swept || swept_at(&[left]) == 1;
    }
    let ids: Vec<i64> = heartbeating.iter().map(|(id, _)| *id).collect();
    assert_eq!(swept_at(&ids), 0, "a user who kept heartbeating was swept");
    assert!(gone_swept, "the user who left was swept after the outage");
}

/// Redis killed under a replica that resumes streams from memory: while its subscription
/// is down it may miss changes, so resumes and snapshots are read from PostgreSQL, which
/// holds the change made meanwhile; once it hears again, from memory.
#[actix_web::test]
async fn while_its_subscription_is_down_a_replica_resumes_from_the_outbox_not_from_memory() {
    let (mut redis, app, worker) = on_own_redis().await;
    let unpublished = || unpublished(&app);
    let latest = |user: i64| {
        app.db.query_i64(&format!(
            "SELECT coalesce(max(revision), 0) AS n FROM presence_events WHERE user_id = {user}"
        ))
    };
    let started = async |kind: &str, source: &str| {
        app.metric(&format!(
            "presence_api_stream_starts_total{{kind=\"{kind}\",source=\"{source}\"}}"
        ))
        .await
    };
    let wait = Duration::from_secs(15);

    let (alice, alice_token) = app.sign_up("alice").await;
    let (_, observer) = app.sign_up("observer").await;
    assert!(eventually(wait, || unpublished() == 0).await);
    assert!(app.received_everything_published().await);
    let ids = format!("ids={alice}");
    let seen = latest(alice);
    let resumed = app.open_stream(&ids, Some(&observer), Some(seen)).await;
    drop(resumed.unwrap());
    assert_eq!(started("resume", "memory").await, 1.0);

    redis.kill();
    assert!(eventually(wait, || !app.is_following()).await);
    app.post("/api/users/logout/", Some(&alice_token), None)
        .await;
    // The worker gives it a revision (a transaction of its own, no Redis needed) but
    // cannot send it: only PostgreSQL knows of it.
    assert!(
        eventually(wait, || latest(alice) > seen).await,
        "{}",
        worker.log()
    );
    let mut stream = app
        .open_stream(&ids, Some(&observer), Some(seen))
        .await
        .unwrap();
    let missed = stream.next(wait).await.expect("the missed change");
    assert_eq!(missed.event, "presence");
    assert_eq!(missed.data["changes"][0]["presence"], "offline");
    assert_eq!(missed.id, Some(latest(alice)));
    assert_eq!(started("resume", "memory").await, 1.0);
    assert_eq!(started("resume", "database").await, 1.0);
    let mut fresh = app.open_stream(&ids, Some(&observer), None).await.unwrap();
    let snapshot = fresh.next(wait).await.expect("a snapshot");
    assert_eq!(snapshot.data["users"][0]["presence"], "offline");
    assert!(started("snapshot", "database").await >= 1.0);

    redis.start_again();
    assert!(eventually(wait, || app.is_following()).await);
    assert!(
        eventually(wait, || unpublished() == 0).await,
        "{}",
        worker.log()
    );
    // Once changes arrive again, resumes after them come from memory again.
    app.login("alice").await;
    assert!(eventually(wait, || unpublished() == 0).await);
    assert!(app.received_everything_published().await);
    let again = app
        .open_stream(&ids, Some(&observer), Some(latest(alice)))
        .await;
    drop(again.unwrap());
    assert_eq!(started("resume", "memory").await, 2.0);
    let (status, log) = worker.terminate(Duration::from_secs(25));
    assert!(status.is_some_and(|s| s.success()), "{log}");
}

/// A worker killed between giving a batch its revisions and sending it (Redis hung, so
/// the send cannot finish): the next worker sends those rows with the revisions they were
/// given, then the rest, and a subscriber gets every revision, in order, with nothing
/// missing; a repeat is the same change.
#[actix_web::test]
async fn a_publisher_killed_between_numbering_and_sending_loses_and_reorders_nothing() {
    use futures_util::StreamExt;
    let (redis, app, worker) = on_own_redis().await;
    let mut messages = published_changes(&app).await;
    let (id, _) = app.sign_up("alice").await;
    assert!(eventually(Duration::from_secs(10), || unpublished(&app) == 0).await);

    redis.pause();
    app.db.execute(&format!(
        "INSERT INTO presence_events (user_id, from_status, to_status, reason, at) \
         SELECT {id}, 'online', 'away', 'idle', now() FROM generate_series(1, 5000)"
    ));
    let numbered = || {
        app.db.query_i64(
            "SELECT count(*) AS n FROM presence_events WHERE reason = 'idle' \
             AND revision IS NOT NULL",
        )
    };
    assert!(eventually(Duration::from_secs(10), || numbered() > 0).await);
    drop(worker); // SIGKILL, with a numbered batch unsent
    let sent_through = app
        .db
        .query_i64("SELECT sent_through AS n FROM event_publication");
    assert!(
        numbered() > 0 && unpublished(&app) == 5000,
        "none of them sent yet"
    );
    redis.resume();
    let worker = Process::spawn(worker_command(&app));
    assert!(
        eventually(Duration::from_secs(20), || unpublished(&app) == 0).await,
        "{}",
        worker.log()
    );

    let out_of_order = app.db.query_i64(
        "SELECT count(*) AS n FROM (SELECT revision, lag(revision) OVER (ORDER BY id) AS before \
         FROM presence_events) AS numbered WHERE revision <= before",
    );
    assert_eq!(out_of_order, 0, "numbered in id order");
    let mut first_seen: Vec<serde_json::Value> = Vec::new();
    while first_seen.len() < 5001 {
        let message = actix_web::rt::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("every revision arrives")
            .unwrap();
        let change: serde_json::Value =
            serde_json::from_slice(message.get_payload_bytes()).unwrap();
        let revision = change["revision"].as_i64().unwrap();
        match first_seen.iter().find(|seen| seen["revision"] == revision) {
            Some(seen) => assert_eq!(seen, &change, "a repeat is the same change"),
            None => {
                let last = first_seen
                    .last()
                    .map_or(0, |seen| seen["revision"].as_i64().unwrap());
                assert!(revision > last, "in revision order");
                first_seen.push(change);
            }
        }
    }
    let received: Vec<String> = first_seen
        .iter()
        .map(|seen| seen["revision"].to_string())
        .collect();
    let numbered_as_received = app.db.query_i64(&format!(
        "SELECT count(*) AS n FROM presence_events WHERE revision = ANY('{{{}}}'::bigint[])",
        received.join(",")
    ));
    assert_eq!(
        numbered_as_received, 5001,
        "every revision given was received"
    );
    assert_eq!(
        sent_through.to_string(),
        received[0],
        "the kill came before any of them was sent"
    );
}
