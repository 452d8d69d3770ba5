//! The worker's jobs: the inactivity sweep (per schedule tick), publishing the
//! transitions waiting in the outbox (when nudged, and on a timer), and ending statuses
//! at their moment (a job per second of ends).

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use apalis_core::backend::Vacuum;
use apalis_cron::Tick;
use apalis_redis::ConnectionManager;
use chrono::{DateTime, Utc};
use presence_model::event_log;
use presence_model::events::{self, Transition};
use presence_model::feed;
use presence_model::jobs::{EndStatuses, SCHEDULE_AHEAD};
use presence_model::purges;
use presence_model::samples::{self, SweepFigures};
use presence_model::status_ends;
use presence_model::sweeps::{self, SweepRun};
use presence_model::{DbPool, settings};
use presence_runtime::nudges::StatusEnds;
use presence_runtime::redis_conn::{Followed, follow_channel};
use presence_runtime::stream_counts;
use presence_runtime::workers::{self, WorkerReport};

use crate::config::EventLogRetention;
use crate::metrics::{self, Metrics};
use crate::queue::ExpiryStorage;

/// How often a worker process vacuums finished jobs (apalis reads the whole job hash to do
/// it; the expiry queue holds at most one job per second of `SCHEDULE_AHEAD`, so it is
/// small).
pub const VACUUM_EVERY: Duration = Duration::from_secs(60);
/// Finished jobs are kept this long in Redis (a job's use ends when it has run), then
/// vacuumed.
const KEEP_FINISHED_JOBS: Duration = Duration::from_secs(60);
/// Rows one purge statement deletes at most: a short transaction, few row locks.
const PURGE_BATCH: i64 = 1000;
/// Batches one purge runs at most; what is left waits for the next.
const PURGE_BATCHES: usize = 100;
/// Transitions published per Redis round trip (and per outbox transaction): a 500,000
/// backlog took 14.3 s at 1,000, 8.5 s at 5,000 and 8.3 s at 10,000 (one worker, no
/// subscriber, this machine).
const PUBLISH_BATCH: i64 = 5000;
/// The longest one batch may wait for Redis before the attempt counts as failed.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a sample waits for the stream counts: past it, they are unknown.
const SAMPLE_REDIS_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] presence_model::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("job queue: {0}")]
    Queue(String),
    #[error("cannot start: {0}")]
    Startup(String),
    #[error(transparent)]
    Blocking(#[from] presence_runtime::blocking::BlockingError),
}

/// What every job shares.
pub struct WorkerState {
    pub pool: DbPool,
    pub metrics: Metrics,
    pub redis: ConnectionManager,
    /// The queue of scheduled status ends this worker consumes.
    pub expiries: ExpiryStorage,
    /// Where this worker queues the ends a sweep finds coming near.
    pub status_ends: StatusEnds,
    /// Set when the outbox should be published now (a nudge, a sweep): any number of
    /// wake-ups while a publication runs make one more run, not many.
    pub publish_wanted: tokio::sync::Notify,
    /// Where recorded transitions are published.
    pub channel: String,
    /// This process, as `sweep_runs.swept_by` and its report to operators name it.
    pub name: String,
    /// The Redis prefix, for the report.
    pub prefix: String,
    pub started_at: DateTime<Utc>,
    /// The time between two ticks of the sweep schedule: for the report, and for the sweep
    /// to tell an outage (a longer gap between sweeps) from the schedule.
    pub sweep_every_secs: u64,
}

impl WorkerState {
    /// Runs diesel on the blocking pool with a pooled connection.
    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut presence_model::db::PgConnection) -> Result<T, presence_model::Error>
        + Send
        + 'static,
    ) -> Result<T, Error> {
        presence_runtime::blocking::with_connection(&self.pool, f)
            .await
            .map_err(Error::from)
    }

    /// Publishes everything in the outbox, in batches, in id order; returns how many.
    pub async fn publish_pending(&self) -> Result<usize, Error> {
        let (pool, redis, channel) = (self.pool.clone(), self.redis.clone(), self.channel.clone());
        let published = self.metrics.events_published.clone();
        let runtime = tokio::runtime::Handle::current();
        let total = presence_runtime::blocking::blocking(move || {
            let mut conn = pool.get()?;
            let mut total = 0;
            loop {
                let count = events::publish_pending(&mut conn, PUBLISH_BATCH, |batch| {
                    runtime.block_on(publish(redis.clone(), &channel, batch))
                })?;
                published.inc_by(count as u64);
                total += count;
                if count < PUBLISH_BATCH as usize {
                    return Ok(total);
                }
            }
        })
        .await?;
        Ok(total)
    }

    /// Publishes what is pending and updates the backlog gauges: the catch-up that makes a
    /// lost nudge, a Redis outage or a killed process a delay rather than a loss.
    pub async fn catch_up(&self) {
        if let Err(e) = self.publish_pending().await {
            log::warn!("could not publish pending transitions, will retry: {e}");
        }
        match self.db(|conn| Ok(feed::unpublished_backlog(conn)?)).await {
            Ok((count, oldest)) => {
                let age = oldest.map_or(0.0, |oldest| {
                    (Utc::now() - oldest).num_milliseconds().max(0) as f64 / 1000.0
                });
                self.metrics.unpublished_events.set(count);
                self.metrics.oldest_unpublished_age.set(age);
            }
            Err(e) => log::warn!("could not measure the unpublished backlog: {e}"),
        }
    }

    /// Records the operator page's sample of the tick whose sweep this worker ran
    /// (`presence_model::samples`), with the streams the API replicas report. A sample
    /// that fails is only missing from the charts: the sweep has committed.
    async fn take_sample(&self, tick_at: DateTime<Utc>, sweep: SweepFigures) {
        let counted = tokio::time::timeout(
            SAMPLE_REDIS_TIMEOUT,
            stream_counts::total(&mut self.redis.clone(), &self.prefix),
        )
        .await;
        let streams_open = match counted {
            Ok(Ok(open)) => Some(open),
            Ok(Err(e)) => {
                log::warn!("could not count the open streams: {e}");
                None
            }
            Err(_) => None,
        };
        let recorded = self
            .db(move |conn| samples::record_sample(conn, tick_at, sweep, streams_open))
            .await;
        if let Err(e) = recorded {
            log::warn!("could not record the sample of {tick_at}: {e}");
        }
    }

    /// Deletes sessions nobody can use any more and sweep runs older than `retention`, and
    /// the operator page's samples past [`samples::KEEP`], a batch at a time until a batch
    /// comes back short (or `PURGE_BATCHES` ran).
    pub async fn purge(&self, retention: chrono::TimeDelta) -> Result<(), Error> {
        for (table, purge, retention) in [
            (
                "sessions",
                purges::purge_sessions as purges::Purge,
                retention,
            ),
            ("sweep_runs", purges::purge_sweep_runs, retention),
            ("presence_samples", purges::purge_samples, samples::KEEP),
        ] {
            for _ in 0..PURGE_BATCHES {
                let gone = self
                    .db(move |conn| Ok(purge(conn, retention, PURGE_BATCH)?))
                    .await?;
                self.metrics
                    .purged
                    .with_label_values(&[table])
                    .inc_by(gone as u64);
                if gone < PURGE_BATCH as usize {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The event log's maintenance: makes the partitions the next writes need, and drops
    /// those past the retention (`presence_model::event_log`).
    pub async fn keep_event_log(&self, retention: EventLogRetention) -> Result<(), Error> {
        let kept = self
            .db(move |conn| {
                Ok(event_log::keep(
                    conn,
                    retention.partition,
                    retention.keep,
                    retention.grace,
                    PURGE_BATCH,
                )?)
            })
            .await?;
        self.metrics
            .event_partitions_dropped
            .inc_by(kept.dropped.unsigned_abs().into());
        self.metrics.event_partitions.set(kept.partitions);
        Ok(())
    }

    /// Keeps Redis memory bounded: drops finished jobs older than a minute, and the set of
    /// finished job ids (kept by apalis for statistics only).
    pub async fn vacuum(&self) -> Result<(), Error> {
        let mut expiry = self.expiries.clone();
        let removed = expiry
            .vacuum_before(KEEP_FINISHED_JOBS)
            .await
            .map_err(|e| Error::Queue(e.to_string()))?;
        redis::cmd("DEL")
            .arg(expiry.get_config().done_jobs_set())
            .query_async::<()>(&mut self.redis.clone())
            .await?;
        log::debug!("vacuumed {removed} finished jobs");
        Ok(())
    }
}

/// Publishes `batch` on `channel` in one pipeline, each event as JSON.
async fn publish(
    mut redis: ConnectionManager,
    channel: &str,
    batch: &[Transition],
) -> Result<(), String> {
    let mut pipeline = redis::pipe();
    for event in batch {
        let json = serde_json::to_string(event).map_err(|e| e.to_string())?;
        pipeline.publish(channel, json).ignore();
    }
    match tokio::time::timeout(PUBLISH_TIMEOUT, pipeline.query_async::<()>(&mut redis)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer from Redis within {PUBLISH_TIMEOUT:?}")),
    }
}

/// Sweeps for `tick_at` unless another replica has, then queues the transitions.
pub async fn sweep_tick(
    state: &WorkerState,
    tick_at: DateTime<Utc>,
) -> Result<Option<SweepRun>, Error> {
    let started = std::time::Instant::now();
    let run = state
        .db({
            let name = state.name.clone();
            let period =
                chrono::TimeDelta::seconds(i64::try_from(state.sweep_every_secs).unwrap_or(60));
            move |conn| sweeps::run_sweep(conn, tick_at, period, &name)
        })
        .await?;
    if let Some(run) = &run {
        let metrics = &state.metrics;
        metrics.sweeps.inc();
        metrics
            .users_marked_offline
            .inc_by(run.users_marked_offline() as u64);
        let sweep_took = started.elapsed();
        log::info!(
            "sweep {tick_at}: {} transitions, {} users marked offline, swept in {sweep_took:?}",
            run.changes.len(),
            run.users_marked_offline()
        );
        metrics.sweep_duration.observe(sweep_took.as_secs_f64());
        metrics
            .last_successful_sweep
            .set(Utc::now().timestamp_millis() as f64 / 1000.0);
        if !run.changes.is_empty() {
            state.publish_wanted.notify_one();
        }
        // The ends coming near get their jobs (an end further away had none).
        let ends = state
            .db(|conn| Ok(status_ends::ends_within(conn, SCHEDULE_AHEAD)?))
            .await?;
        for end in ends {
            state.status_ends.schedule(end).await;
        }
        state
            .take_sample(
                tick_at,
                SweepFigures {
                    took: sweep_took,
                    users_marked_offline: run.users_marked_offline(),
                },
            )
            .await;
    }
    Ok(run)
}

/// The cron job: one tick of the inactivity sweep. An error makes apalis retry it with
/// backoff; the tick's claim in `sweep_runs` rolled back with the failure.
pub async fn sweep(tick: Tick, state: Data<Arc<WorkerState>>) -> Result<(), BoxDynError> {
    let tick_at = i64::try_from(tick.get_timestamp())
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .ok_or("tick out of range")?;
    let outcome = sweep_tick(&state, tick_at).await;
    state.metrics.job(metrics::SWEEP, &outcome);
    match outcome {
        Ok(Some(_)) => Ok(()),
        Ok(None) => {
            log::debug!("sweep {tick_at}: already run by another worker");
            Ok(())
        }
        Err(e) => {
            log::warn!("sweep {tick_at} failed, will retry: {e}");
            Err(e.into())
        }
    }
}

/// Publishes whenever asked (a nudge, a sweep), until the process stops. Asks that come
/// while a publication runs make one more run: they coalesce.
pub async fn publish_when_wanted(state: Arc<WorkerState>) {
    loop {
        state.publish_wanted.notified().await;
        let outcome = state.publish_pending().await;
        state.metrics.job(metrics::PUBLISH, &outcome);
        match outcome {
            Ok(count) => log::debug!("published {count} presence changes"),
            // The catch-up timer tries again.
            Err(e) => log::warn!("publishing failed, will retry: {e}"),
        }
    }
}

/// Follows the publish nudges (`presence_model::jobs::publish_nudges_channel`) for as
/// long as the process runs; on every (re)subscription, publishes once, for the nudges
/// sent while it was not listening.
pub async fn follow_nudges(state: Arc<WorkerState>, redis_url: String, channel: String) {
    follow_channel(&redis_url, &channel, |followed| {
        if !matches!(followed, Followed::Lost) {
            state.publish_wanted.notify_one();
        }
    })
    .await;
}

/// The scheduled job: end the statuses due within the second `job.at`, each at its
/// moment. apalis releases it at the start of that second; it ends what is due, waits
/// for the next end within the second, and so on (a job released late waits for
/// nothing). Redelivery is harmless: nothing is left to end.
pub async fn end_statuses(
    job: EndStatuses,
    state: Data<Arc<WorkerState>>,
) -> Result<(), BoxDynError> {
    let second_ends = job.at + chrono::TimeDelta::seconds(1);
    let outcome = async {
        let mut ended = 0;
        loop {
            let changes = state
                .db(|conn| {
                    let timings = settings::timings(conn)?;
                    Ok(status_ends::expire_statuses(conn, timings)?)
                })
                .await?;
            if !changes.is_empty() {
                ended += changes.len();
                state.publish_wanted.notify_one();
            }
            let next = state
                .db(move |conn| Ok(status_ends::time_to_next_end(conn, second_ends)?))
                .await?;
            match next {
                Some(wait) => tokio::time::sleep(wait.min(MAX_EARLY_RELEASE)).await,
                None => return Ok::<_, Error>(ended),
            }
        }
    }
    .await;
    state.metrics.job(metrics::EXPIRY, &outcome);
    match outcome {
        Ok(count) => {
            log::debug!("ended statuses due at {}: {count} changes", job.at);
            Ok(())
        }
        Err(e) => {
            log::warn!("ending statuses due at {} failed, will retry: {e}", job.at);
            Err(e.into())
        }
    }
}

/// The longest an expiry job sleeps before looking again (apalis schedules to the second;
/// an end moved meanwhile is found at the next look).
const MAX_EARLY_RELEASE: Duration = Duration::from_secs(2);

/// Runs the catch-up every `interval` until the process stops.
pub async fn catch_up_periodically(state: Arc<WorkerState>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        state.catch_up().await;
    }
}

/// Reports this worker to operators (`presence_runtime::workers`) every
/// [`workers::REPORT_EVERY`] until the process stops.
pub async fn report_periodically(state: Arc<WorkerState>) {
    let mut ticker = tokio::time::interval(workers::REPORT_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let host = presence_runtime::replicas::host_name();
    loop {
        ticker.tick().await;
        let report = WorkerReport {
            name: state.name.clone(),
            host: host.clone(),
            started_at: state.started_at,
            jobs_done: state.metrics.jobs_done(),
            sweep_every_secs: state.sweep_every_secs,
        };
        if let Err(e) = workers::report(&mut state.redis.clone(), &state.prefix, &report).await {
            log::warn!("could not report this worker to operators: {e}");
        }
    }
}

/// Purges what nobody can use any more (see [`WorkerState::purge`]) every `interval`.
/// Every replica purges; two deleting the same batch at once delete it once.
pub async fn purge_periodically(
    state: Arc<WorkerState>,
    interval: Duration,
    retention: chrono::TimeDelta,
    log_retention: EventLogRetention,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(e) = state.keep_event_log(log_retention).await {
            log::warn!("could not prepare or drop the event log's partitions: {e}");
        }
        if let Err(e) = state.purge(retention).await {
            log::warn!("could not purge old sessions and sweep runs: {e}");
        }
    }
}

/// Queue maintenance, on its own schedule: vacuums finished jobs every `interval`.
pub async fn vacuum_periodically(state: Arc<WorkerState>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(e) = state.vacuum().await {
            log::warn!("could not vacuum finished jobs: {e}");
        }
    }
}
