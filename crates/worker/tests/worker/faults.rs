//! Redis killed under the API and the worker (a server of the test's own): every
//! transition made meanwhile is recorded at once and published once Redis is back.

use std::time::Duration;

use actix_web::http::StatusCode;
use presence_api::testing::{OwnRedis, Process, TestApp};

use crate::helpers::{WorkerEnv, eventually, timings};

#[actix_web::test]
async fn transitions_made_while_redis_is_down_are_published_when_it_returns() {
    let mut redis = OwnRedis::start();
    let redis_url = redis.url();
    let app = TestApp::spawn_with(|config| config.redis.redis_url = redis_url.clone()).await;
    let mut command = WorkerEnv {
        database_url: app.db.url(),
        redis_prefix: &app.config.redis.redis_prefix,
        schedule: "0 0 0 1 1 * 2099",
        timings: timings(120),
    }
    .command("run");
    command
        .env("REDIS_URL", &redis_url)
        .env("PUBLISH_CATCH_UP_MS", "100");
    let worker = Process::spawn(command);
    let unpublished = || {
        app.db
            .query_i64("SELECT count(*) AS n FROM presence_events WHERE published_at IS NULL")
    };

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
             ON a.id < b.id WHERE a.published_at > b.published_at"
        ),
        0
    );
    let (status, log) = worker.terminate(Duration::from_secs(25));
    assert!(status.is_some_and(|s| s.success()), "{log}");
}
