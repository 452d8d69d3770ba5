//! Jobs queued (apalis over Redis) by the processes that make changes: a `PublishPending`
//! nudge after a commit that recorded transitions, so a worker publishes them now rather
//! than at its next catch-up; an `EndStatuses` scheduled for the moment a manual or
//! custom status ends.
//!
//! What the jobs act on is in PostgreSQL (the outbox, the statuses), so queuing never
//! fails its caller: if Redis is down or slow it is counted as failed after
//! [`NUDGE_TIMEOUT`], and the work is done late by a worker's catch-up or sweep, not lost.

use std::time::Duration;

use apalis_core::backend::TaskSink;
use apalis_core::task::builder::TaskBuilder;
use apalis_redis::RedisStorage;
use chrono::{DateTime, Utc};
use presence_model::jobs::{EndStatuses, PublishPending, expiry_queue, publish_queue};
use prometheus::IntCounter;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

/// The longest queuing a job may delay its caller.
pub const NUDGE_TIMEOUT: Duration = Duration::from_millis(500);

/// One queue, connected lazily: a process starts and serves while Redis is down.
pub struct JobQueue<J> {
    redis_url: String,
    queue: String,
    storage: OnceCell<RedisStorage<J>>,
    sent: IntCounter,
    failed: IntCounter,
}

/// The publish nudges.
pub type PublishNudges = JobQueue<PublishPending>;
/// The scheduled ends of statuses.
pub type StatusEnds = JobQueue<EndStatuses>;

impl PublishNudges {
    /// The publish queue under `prefix`, counting queued jobs in `sent` and failed ones
    /// in `failed`.
    pub fn publish(redis_url: &str, prefix: &str, sent: IntCounter, failed: IntCounter) -> Self {
        Self::new(redis_url, publish_queue(prefix), sent, failed)
    }

    /// Asks a worker to publish what the outbox holds; `what` says what for the log line
    /// if the job cannot be queued.
    pub async fn nudge(&self, what: &str) {
        self.push(PublishPending {}, None, what).await;
    }
}

impl StatusEnds {
    /// The expiry queue under `prefix`.
    pub fn expiry(redis_url: &str, prefix: &str, sent: IntCounter, failed: IntCounter) -> Self {
        Self::new(redis_url, expiry_queue(prefix), sent, failed)
    }

    /// Asks a worker to end the statuses due at `at`, at that moment.
    pub async fn schedule(&self, at: DateTime<Utc>) {
        let what = format!("the status end at {at}");
        // apalis schedules to the second: the job is released at the start of `at`'s
        // second and waits for `at` itself (see the worker's `end_statuses`).
        self.push(EndStatuses { at }, Some(at), &what).await;
    }
}

impl<J> JobQueue<J>
where
    J: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static,
{
    fn new(redis_url: &str, queue: String, sent: IntCounter, failed: IntCounter) -> Self {
        Self {
            redis_url: redis_url.to_owned(),
            queue,
            storage: OnceCell::new(),
            sent,
            failed,
        }
    }

    /// Queues `job`, to run from `run_at` (now if `None`); never fails its caller.
    async fn push(&self, job: J, run_at: Option<DateTime<Utc>>, what: &str) {
        let pushed = tokio::time::timeout(NUDGE_TIMEOUT, self.try_push(job, run_at)).await;
        let cause = match pushed {
            Ok(Ok(())) => return self.sent.inc(),
            Ok(Err(e)) => e,
            Err(_) => format!("no answer within {NUDGE_TIMEOUT:?}"),
        };
        self.failed.inc();
        log::warn!("could not queue {what}; a worker will catch up later: {cause}");
    }

    /// The storage, connecting on first use (and again after a failed connect).
    async fn storage(&self) -> Result<RedisStorage<J>, String> {
        self.storage
            .get_or_try_init(|| async {
                let conn = apalis_redis::connect(self.redis_url.as_str()).await?;
                let config = apalis_redis::Config::default().queue(&self.queue);
                Ok::<_, apalis_redis::RedisError>(RedisStorage::new(conn).with_config(config))
            })
            .await
            .cloned()
            .map_err(|e| format!("cannot connect to Redis: {e}"))
    }

    async fn try_push(&self, job: J, run_at: Option<DateTime<Utc>>) -> Result<(), String> {
        let mut storage = self.storage().await?;
        let mut task = TaskBuilder::new(job);
        if let Some(at) = run_at {
            task = task.run_at_timestamp(u64::try_from(at.timestamp()).unwrap_or_default());
        }
        storage
            .push_task(task.build())
            .await
            .map_err(|e| e.to_string())
    }

    /// A round trip to Redis, for readiness checks.
    pub async fn ping(&self) -> Result<(), String> {
        let mut storage = self.storage().await?;
        redis::cmd("PING")
            .query_async::<String>(storage.get_connection())
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}
