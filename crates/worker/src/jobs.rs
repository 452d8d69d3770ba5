//! The worker's two jobs: the inactivity sweep (per schedule tick) and recording and
//! publishing presence changes (per queued job).

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data, TaskSink};
use apalis_core::backend::Vacuum;
use apalis_cron::Tick;
use apalis_redis::ConnectionManager;
use chrono::{DateTime, TimeDelta, Utc};
use presence_model::jobs::{PresenceChanged, PresenceChanges};
use presence_model::sweeps::{self, SweepRun};
use presence_model::{DbPool, events};

use crate::metrics::{self, Metrics};
use crate::queue::ChangesStorage;

/// How often a worker process vacuums finished jobs (apalis reads the whole job hash to do
/// it, so not on every tick).
const VACUUM_EVERY: Duration = Duration::from_secs(600);
/// Finished jobs are kept this long in Redis (for inspection), then vacuumed.
const KEEP_FINISHED_JOBS: Duration = Duration::from_secs(3600);

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
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What every job shares.
pub struct WorkerState {
    pub pool: DbPool,
    pub metrics: Metrics,
    pub offline_after: TimeDelta,
    pub redis: ConnectionManager,
    pub changes: ChangesStorage,
    /// Where recorded transitions are published.
    pub channel: String,
    pub last_vacuum: std::sync::Mutex<Option<std::time::Instant>>,
}

impl WorkerState {
    /// Runs diesel on the blocking pool with a pooled connection.
    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut presence_model::db::PgConnection) -> Result<T, presence_model::Error>
        + Send
        + 'static,
    ) -> Result<T, Error> {
        let pool = self.pool.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await?;
        Ok(result?)
    }

    /// Queues transitions as a few bounded jobs. A Redis failure is logged, not raised:
    /// the statuses are already committed in PostgreSQL, the source of truth.
    pub async fn enqueue(&self, changes: Vec<PresenceChanged>) {
        if changes.is_empty() {
            return;
        }
        let count = changes.len();
        let mut storage = self.changes.clone();
        if let Err(e) = storage.push_bulk(PresenceChanges::batched(changes)).await {
            log::error!("could not queue {count} presence changes: {e}");
        }
    }

    /// Vacuums unless this process did within [`VACUUM_EVERY`].
    async fn vacuum_if_due(&self) {
        {
            let mut last = self.last_vacuum.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < VACUUM_EVERY) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        if let Err(e) = self.vacuum().await {
            log::warn!("could not vacuum finished jobs: {e}");
        }
    }

    /// Keeps Redis memory bounded: drops finished jobs older than an hour, and the set of
    /// finished job ids (kept by apalis for statistics only).
    async fn vacuum(&self) -> Result<(), Error> {
        let mut storage = self.changes.clone();
        let removed = storage
            .vacuum_before(KEEP_FINISHED_JOBS)
            .await
            .map_err(|e| Error::Queue(e.to_string()))?;
        let done = storage.get_config().done_jobs_set();
        redis::cmd("DEL")
            .arg(done)
            .query_async::<()>(&mut self.redis.clone())
            .await?;
        log::debug!("vacuumed {removed} finished jobs");
        Ok(())
    }
}

/// Sweeps for `tick_at` unless another replica has, then queues the transitions.
pub async fn sweep_tick(
    state: &WorkerState,
    tick_at: DateTime<Utc>,
) -> Result<Option<SweepRun>, Error> {
    let window = state.offline_after;
    let started = std::time::Instant::now();
    let run = state
        .db(move |conn| Ok(sweeps::run_sweep(conn, tick_at, window)?))
        .await?;
    if let Some(run) = &run {
        let metrics = &state.metrics;
        metrics.sweeps.inc();
        metrics
            .users_marked_offline
            .inc_by(run.user_ids.len() as u64);
        metrics
            .sweep_duration
            .observe(started.elapsed().as_secs_f64());
        metrics
            .last_successful_sweep
            .set(Utc::now().timestamp_millis() as f64 / 1000.0);
        state.enqueue(run.changes()).await;
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
    if matches!(outcome, Ok(Some(_))) {
        state.vacuum_if_due().await;
    }
    match outcome {
        Ok(Some(run)) => {
            log::info!(
                "sweep {tick_at}: {} users marked offline",
                run.user_ids.len()
            );
            Ok(())
        }
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

/// The queued job: append the transitions to `presence_events`, then publish each as
/// JSON. Redelivery is harmless: recording skips rows already there.
pub async fn record_changes(
    job: PresenceChanges,
    state: Data<Arc<WorkerState>>,
) -> Result<(), BoxDynError> {
    let outcome = record_and_publish(job, &state).await;
    state.metrics.job(metrics::PRESENCE_CHANGES, &outcome);
    if let Err(e) = &outcome {
        log::warn!("presence changes job failed, will retry: {e}");
    }
    outcome
}

async fn record_and_publish(job: PresenceChanges, state: &WorkerState) -> Result<(), BoxDynError> {
    let changes = state
        .db(move |conn| {
            events::record_presence_changes(conn, &job.0)?;
            Ok(job.0)
        })
        .await?;
    let mut publish = redis::pipe();
    for change in &changes {
        publish
            .publish(&state.channel, serde_json::to_string(change)?)
            .ignore();
    }
    publish.query_async::<()>(&mut state.redis.clone()).await?;
    log::debug!("recorded and published {} presence changes", changes.len());
    Ok(())
}
