//! The worker's health, readiness and metrics endpoints.

use std::time::Duration;

use actix_web::http::StatusCode;
use presence_api::testing::TestApp;
use presence_testkit::{Process, metric_value};

use crate::helpers::{NEVER, WorkerEnv, eventually, timings};

async fn get(port: u16, path: &str) -> (StatusCode, String) {
    let mut response = awc::Client::default()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .unwrap();
    let body = response.body().await.unwrap();
    (
        response.status(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[actix_web::test]
async fn health_readiness_and_metrics_after_real_work() {
    let app = TestApp::spawn_with(|config| config.offline_after_secs = 2).await;
    let worker = WorkerEnv {
        database_url: app.db.url(),
        redis_prefix: &app.config.redis.redis_prefix,
        schedule: "* * * * * *",
        timings: timings(2),
    }
    .spawn();
    let port = worker.port();
    for name in ["alice", "bob", "carol"] {
        app.sign_up(name).await;
    }
    assert!(
        eventually(Duration::from_secs(10), || {
            app.db.query_i64(
                "SELECT count(*) AS n FROM presence_events WHERE reason = 'sweep' \
                 AND revision <= (SELECT sent_through FROM event_publication)",
            ) == 3
        })
        .await,
        "{}",
        worker.log()
    );

    let (status, body) = get(port, "/healthz").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"status":"ok"}"#)
    );
    let (status, body) = get(port, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains(r#""postgres":"ok""#) && body.contains(r#""redis":"ok""#),
        "{body}"
    );

    let (status, text) = get(port, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metric_value(&text, "presence_worker_sweeps_total") >= 2.0,
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "presence_worker_users_marked_offline_total"),
        3.0
    );
    assert!(metric_value(&text, "presence_worker_sweep_duration_seconds_count") >= 2.0);
    assert_eq!(metric_value(&text, "presence_worker_ready"), 1.0);
    assert!(
        metric_value(
            &text,
            r#"presence_worker_jobs_processed_total{kind="sweep"}"#
        ) >= 2.0
    );
    // Three logins and three sweeps, each published once (by a job or the catch-up).
    assert_eq!(
        metric_value(&text, "presence_worker_events_published_total"),
        6.0
    );
    assert!(
        metric_value(
            &text,
            r#"presence_worker_jobs_processed_total{kind="publish"}"#
        ) >= 1.0
    );
    assert_eq!(
        metric_value(
            &text,
            r#"presence_worker_jobs_failed_total{kind="publish"}"#
        ),
        0.0
    );
    assert_eq!(
        metric_value(&text, "presence_worker_job_enqueue_failures_total"),
        0.0
    );
    let last = metric_value(
        &text,
        "presence_worker_last_successful_sweep_timestamp_seconds",
    );
    let now = chrono::Utc::now().timestamp() as f64;
    assert!((now - 30.0..=now + 1.0).contains(&last), "{last} vs {now}");
}

#[actix_web::test]
async fn readiness_fails_while_postgres_is_unreachable() {
    let app = TestApp::spawn().await;
    let missing = app
        .db
        .url()
        .replacen(app.db.name(), &format!("{}_missing", app.db.name()), 1);
    let worker = WorkerEnv {
        database_url: &missing,
        redis_prefix: &app.config.redis.redis_prefix,
        schedule: "0 0 0 1 1 * 2099",
        timings: timings(120),
    }
    .spawn();
    let port = worker.port();
    let (status, body) = get(port, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains(r#""redis":"ok""#), "{body}");
    assert!(!body.contains(r#""postgres":"ok""#), "{body}");
    assert_eq!(get(port, "/healthz").await.0, StatusCode::OK);
    // Every scrape runs the same checks, for the alert on readiness.
    let (_, text) = get(port, "/metrics").await;
    assert_eq!(metric_value(&text, "presence_worker_ready"), 0.0, "{text}");
}

#[actix_web::test]
async fn workers_on_one_host_start_without_settings_and_an_explicit_address_is_strict() {
    let app = TestApp::spawn().await;
    let env = WorkerEnv {
        database_url: app.db.url(),
        redis_prefix: &app.config.redis.redis_prefix,
        schedule: "0 0 0 1 1 * 2099",
        timings: timings(120),
    };
    let workers: Vec<Process> = (0..2)
        .map(|_| {
            let mut command = env.command("run");
            command.env_remove("WORKER_HTTP_ADDR");
            Process::spawn(command)
        })
        .collect();
    let ports: Vec<u16> = workers.iter().map(Process::port).collect();
    assert_ne!(ports[0], ports[1]);
    for port in &ports {
        assert_eq!(get(*port, "/healthz").await.0, StatusCode::OK);
    }
    let mut command = env.command("run");
    command.env("WORKER_HTTP_ADDR", format!("127.0.0.1:{}", ports[0]));
    let (status, log) = Process::spawn(command).wait(Duration::from_secs(15));
    assert!(status.is_some_and(|s| !s.success()), "{log}");
    for worker in workers {
        let (status, log) = worker.terminate(Duration::from_secs(25));
        assert!(status.is_some_and(|s| s.success()), "{log}");
    }
}

#[actix_web::test]
async fn a_running_worker_reports_itself_and_its_sweeps_to_the_overview() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let worker = WorkerEnv {
        database_url: app.db.url(),
        redis_prefix: &app.config.redis.redis_prefix,
        schedule: "* * * * * *",
        timings: timings(120),
    }
    .spawn();
    let overview = || async { app.get("/api/admin/overview/", Some(&admin)).await.body };
    let reported = presence_testkit::eventually(Duration::from_secs(15), async || {
        let body = overview().await;
        body["workers"].as_array().is_some_and(|w| w.len() == 1)
            && body["sweeps"].as_array().is_some_and(|s| !s.is_empty())
    })
    .await;
    assert!(reported, "{}", overview().await);
    let body = overview().await;
    let report = &body["workers"][0];
    assert!(report["name"].as_str().unwrap().starts_with("worker-"));
    assert_eq!(report["sweep_every_secs"], 1);
    // Microseconds at most, as every time the API answers.
    let started = report["started_at"].as_str().unwrap();
    let fraction = started
        .trim_end_matches('Z')
        .rsplit_once('.')
        .map_or(0, |(_, f)| f.len());
    assert!(fraction <= 6, "{started}");
    assert_eq!(body["sweeps"][0]["swept_by"], report["name"]);
    assert!(body["sweep_warning"].is_null(), "{body}");
    // A worker that stops withdraws its report.
    let (status, log) = worker.terminate(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{log}");
    assert_eq!(overview().await["workers"], serde_json::json!([]));
}

#[actix_web::test]
async fn the_worker_purges_revoked_sessions_and_old_sweep_runs_and_nothing_else() {
    let app = TestApp::spawn().await;
    let (_, kept) = app.sign_up("kept").await;
    let (_, gone) = app.sign_up("gone").await;
    app.post("/api/users/logout/", Some(&gone), None).await;
    let mut command = WorkerEnv {
        database_url: app.db.url(),
        redis_prefix: &app.config.redis.redis_prefix,
        schedule: "* * * * * *",
        timings: timings(120),
    }
    .command("run");
    command
        .env("PURGE_EVERY_MS", "100")
        .env("PURGE_AFTER_SECS", "1");
    let worker = Process::spawn(command);
    let count = |sql: &str| app.db.query_i64(sql);
    let purged = async |table: &str| {
        let (_, text) = get(worker.port(), "/metrics").await;
        metric_value(
            &text,
            &format!("presence_worker_purged_rows_total{{table=\"{table}\"}}"),
        )
    };
    // Sweep runs pile up (one a second) and go once a second old; the revoked session
    // goes once revoked a second ago.
    assert!(
        presence_testkit::eventually(Duration::from_secs(15), async || {
            purged("sweep_runs").await >= 1.0 && purged("sessions").await >= 1.0
        })
        .await,
        "{}",
        worker.log()
    );
    assert_eq!(
        count("SELECT count(*) AS n FROM sessions WHERE revoked_at IS NOT NULL"),
        0
    );
    assert_eq!(
        count(
            "SELECT count(*) AS n FROM sweep_runs WHERE started_at < now() - interval '3 seconds'"
        ),
        0
    );
    // The live session, and only it, is still there and still works.
    assert_eq!(purged("sessions").await, 1.0);
    assert_eq!(
        count("SELECT count(*) AS n FROM sessions WHERE revoked_at IS NULL"),
        1
    );
    assert_eq!(
        app.get("/api/users/me/", Some(&kept)).await.status,
        StatusCode::OK
    );
}

/// Over a run that crosses several retention periods (compressed: one-second partitions
/// kept two seconds), the event log stays the same size: partitions are made ahead (no
/// row lands in the default one), published old ones are dropped whole, and a user's
/// history reaches back as far as the retention.
#[actix_web::test]
async fn the_event_log_stays_flat_across_retention_periods() {
    let app = TestApp::spawn().await;
    let mut command = WorkerEnv {
        database_url: app.db.url(),
        redis_prefix: &app.config.redis.redis_prefix,
        schedule: NEVER,
        timings: app.config.timings(),
    }
    .command("run");
    command
        .env("PURGE_EVERY_MS", "100")
        .env("EVENTS_PARTITION_SECS", "1")
        .env("EVENTS_RETENTION_SECS", "2");
    let worker = Process::spawn(command);
    let count = |sql: &str| app.db.query_i64(sql);
    let partitions = || count("SELECT count(*) AS n FROM event_partitions");
    assert!(eventually(Duration::from_secs(10), || partitions() >= 3).await);

    let (id, token) = app.sign_up("alice").await;
    let (mut most_partitions, mut at_half_time) = (0, None);
    let started = std::time::Instant::now();
    let mut cycles = 0;
    // Four retention periods of changes, as fast as they come.
    while started.elapsed() < Duration::from_secs(8) {
        for availability in ["dnd", "auto"] {
            let body = serde_json::json!({ "availability": availability });
            let set = app
                .put("/api/users/me/status/", Some(&token), Some(&body))
                .await;
            assert_eq!(set.status, StatusCode::OK);
        }
        cycles += 1;
        let now = partitions();
        most_partitions = most_partitions.max(now);
        if started.elapsed() >= Duration::from_secs(4) {
            at_half_time.get_or_insert(now);
        }
    }
    // Flat: without drops, four more partitions would have come in the second half.
    let (at_half_time, at_end) = (at_half_time.unwrap(), partitions());
    assert!(at_end <= at_half_time + 1, "{at_half_time} then {at_end}");
    // Those within the retention and the grace, the one being written, two ahead.
    assert!(most_partitions <= 9, "{most_partitions} partitions at most");
    assert_eq!(
        count("SELECT count(*) AS n FROM presence_events_default"),
        0
    );
    let recorded = 2 * cycles + 1;
    let kept = count("SELECT count(*) AS n FROM presence_events");
    assert!(kept < recorded, "{kept} of {recorded} kept");
    // A user's history reaches as far back as the log, no further (a drop may come
    // between the two reads).
    let admin = app.admin().await;
    let history = app
        .get(
            &format!("/api/users/{id}/presence-history/?limit=1000"),
            Some(&admin),
        )
        .await;
    let shown = history.body["events"].as_array().unwrap().len() as i64;
    assert!(0 < shown && shown <= kept, "{shown} of {kept}");
    // Gone once past the retention, a partition's width and the grace.
    assert!(
        eventually(Duration::from_secs(10), || count(
            "SELECT count(*) AS n FROM presence_events WHERE at < now() - interval '4 seconds'"
        ) == 0)
        .await
    );
    let (_, text) = get(worker.port(), "/metrics").await;
    assert!(
        metric_value(&text, "presence_worker_event_partitions_dropped_total") >= 4.0,
        "{text}"
    );
    assert!(metric_value(&text, "presence_worker_event_partitions") >= 3.0);
}
