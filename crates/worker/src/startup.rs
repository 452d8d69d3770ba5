//! Wiring: connections, the apalis `Monitor` with both workers, graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apalis::layers::retry::backoff::{ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use apalis::layers::retry::{BackoffRetryPolicy, HasherRng, RetryPolicy};
use apalis::prelude::{BackendExt, Monitor, WorkerBuilder, WorkerBuilderExt};
use apalis_cron::CronScheduler;
use presence_model::db;
use presence_model::jobs::{presence_changes_channel, publish_nudges_channel};

use crate::config::Config;
use crate::jobs::{self, Error, WorkerState};
use crate::metrics::Metrics;
use crate::queue::{JOB_POLL_INTERVAL, PollEvery, expiry_storage};
use presence_runtime::nudges::{Asked, StatusEnds};
use presence_runtime::replicas::replica_name;

/// How long one attempt to reach Redis at startup may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a job waits for a database connection before failing (and being retried).
const POOL_CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// After SIGTERM, the job in hand gets this long to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Connects to Redis (PostgreSQL connects lazily, per job).
pub async fn connect(config: &Config) -> Result<Arc<WorkerState>, Error> {
    let metrics = Metrics::new().map_err(|e| Error::Startup(e.to_string()))?;
    let redis = apalis_redis::connect(config.redis.redis_url.as_str()).await?;
    let status_ends = StatusEnds::new(
        &config.redis.redis_url,
        &config.redis.redis_prefix,
        Asked {
            sent: metrics.jobs_enqueued.clone(),
            failed: metrics.enqueue_failures.clone(),
        },
    );
    Ok(Arc::new(WorkerState {
        pool: db::build_pool(
            &config.url.database_url,
            config.database_pool_size,
            POOL_CHECKOUT_TIMEOUT,
        ),
        metrics,
        expiries: expiry_storage(redis.clone(), &config.redis.redis_prefix),
        status_ends,
        publish_wanted: tokio::sync::Notify::new(),
        redis,
        channel: presence_changes_channel(&config.redis.redis_prefix),
        name: replica_name("worker"),
        prefix: config.redis.redis_prefix.clone(),
        // Microseconds, as every time the API answers (PostgreSQL's precision).
        started_at: chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6),
        sweep_every_secs: sweep_period_secs(&config.sweep_schedule),
    }))
}

/// The time between the next two ticks of `schedule` (a minute if it has none).
fn sweep_period_secs(schedule: &cron::Schedule) -> u64 {
    let mut ticks = schedule.upcoming(chrono::Utc);
    match (ticks.next(), ticks.next()) {
        (Some(first), Some(second)) => u64::try_from((second - first).num_seconds()).unwrap_or(60),
        _ => 60,
    }
}

/// Retries a failed job 5 times, waiting 200 ms doubling up to 5 s (with jitter).
fn retry_policy() -> BackoffRetryPolicy<ExponentialBackoff> {
    let backoff = ExponentialBackoffMaker::new(
        Duration::from_millis(200),
        Duration::from_secs(5),
        0.5,
        HasherRng::default(),
    )
    .expect("valid backoff bounds")
    .make_backoff();
    RetryPolicy::retries(5).with_backoff(backoff)
}

/// Runs the sweep schedule, the expiry consumer, publishing (nudged, and the catch-up)
/// until `shutdown` resolves, then lets the job in hand finish (up to `SHUTDOWN_GRACE`).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let mut shutdown = Box::pin(shutdown);
    // Redis down at start: wait for it (logging) rather than exit, until told to stop.
    let mut backoff = Duration::from_millis(500);
    let state = loop {
        tokio::select! {
            connected = tokio::time::timeout(CONNECT_TIMEOUT, connect(&config)) => match connected {
                Ok(Ok(state)) => break state,
                Ok(Err(e)) => log::warn!("waiting for Redis ({e}); retrying in {backoff:?}"),
                Err(_) => log::warn!(
                    "waiting for Redis (no connection within {CONNECT_TIMEOUT:?}); retrying in {backoff:?}"
                ),
            },
            () = &mut shutdown => {
                log::info!("stopped before Redis was reachable");
                return Ok(());
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = &mut shutdown => {
                log::info!("stopped before Redis was reachable");
                return Ok(());
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    };
    let (http, bound) =
        crate::http::serve(config.http_addr.as_deref(), state.clone()).map_err(|e| {
            let addr = config
                .http_addr
                .as_deref()
                .unwrap_or(crate::http::DEFAULT_ADDR);
            Error::Startup(format!("cannot listen on {addr}: {e}"))
        })?;
    log::info!("http (/healthz, /readyz, /metrics) listening on {bound}");
    presence_runtime::addresses::announce(&[("http", bound)])
        .map_err(|e| Error::Startup(e.to_string()))?;
    let http_handle = http.handle();
    tokio::spawn(http);
    let schedule = config.sweep_schedule.clone();
    let state_for_report = state.clone();
    let sweep_state = state.clone();
    let sweep_name = replica_name("sweep");
    let expiry_name = replica_name("expiry");
    let expiry_state = state.clone();
    tokio::spawn(jobs::vacuum_periodically(state.clone(), jobs::VACUUM_EVERY));
    tokio::spawn(jobs::purge_periodically(
        state.clone(),
        config.purge_every(),
        config.purge_after(),
        config.event_log(),
    ));
    tokio::spawn(jobs::report_periodically(state.clone()));
    tokio::spawn(jobs::publish_when_wanted(state.clone()));
    tokio::spawn(jobs::follow_nudges(
        state.clone(),
        config.redis.redis_url.clone(),
        publish_nudges_channel(&config.redis.redis_prefix),
    ));
    tokio::spawn(jobs::catch_up_periodically(
        state.clone(),
        config.publish_catch_up(),
    ));

    let monitor = Monitor::new()
        .register(move |_| {
            WorkerBuilder::new(sweep_name.clone())
                .backend(CronScheduler::new(schedule.clone()))
                .data(sweep_state.clone())
                .retry(retry_policy())
                .build(jobs::sweep)
        })
        .register(move |restarts| {
            // A restarted worker must not reuse a name Redis still holds.
            let pause = Duration::from_secs(1).min(Duration::from_millis(200) * restarts as u32);
            let backend = expiry_state
                .expiries
                .clone()
                .poll_with_strategy(PollEvery::new(JOB_POLL_INTERVAL))
                .before_start(move |_| async move {
                    tokio::time::sleep(pause).await;
                    Ok(())
                });
            WorkerBuilder::new(format!("{expiry_name}-{restarts}"))
                .backend(backend)
                .data(expiry_state.clone())
                .retry(retry_policy())
                .build(jobs::end_statuses)
        })
        .should_restart(|worker, error| {
            log::error!("worker {} stopped: {error}", worker.name());
            !worker.is_shutting_down()
        });

    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel();
    let signal = async move {
        shutdown.await;
        log::info!("stopping: finishing the job in hand");
        let _ = stopping_tx.send(());
        Ok(())
    };
    tokio::select! {
        result = monitor.run_with_signal(signal) => {
            result.map_err(|e| Error::Queue(e.to_string()))?;
        }
        () = async {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => log::warn!("jobs did not finish within {SHUTDOWN_GRACE:?}; stopping anyway"),
    }
    http_handle.stop(true).await;
    presence_runtime::workers::withdraw(
        &mut state_for_report.redis.clone(),
        &state_for_report.prefix,
        &state_for_report.name,
    )
    .await;
    log::info!("stopped");
    Ok(())
}
