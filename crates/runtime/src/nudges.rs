//! What the processes that make changes ask of the workers: a publish nudge after a
//! commit that recorded transitions (pub/sub on `<prefix>:publish-nudges`, so a worker
//! publishes them now rather than at its next catch-up), and an `EndStatuses` job
//! (apalis over Redis) for each second in which a manual or custom status ends.
//!
//! What the jobs act on is in PostgreSQL (the outbox, the statuses), so asking never
//! fails its caller: if Redis is down or slow it is counted as failed after
//! [`NUDGE_TIMEOUT`], and the work is done late by a worker's catch-up or sweep, not lost.
//! Nothing a caller can repeat piles up in Redis: a nudge is stored nowhere, and there is
//! at most one end job per second of the next [`SCHEDULE_AHEAD`].

use std::time::Duration;

use apalis_core::backend::{TaskSink, TaskSinkError};
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::TaskId;
use apalis_redis::RedisStorage;
use chrono::{DateTime, Utc};
use presence_model::jobs::{EndStatuses, SCHEDULE_AHEAD, expiry_queue, publish_nudges_channel};
use prometheus::IntCounter;
use tokio::sync::OnceCell;

use crate::redis_conn::{LazyRedis, connection_lost};

/// The longest asking may delay its caller.
pub const NUDGE_TIMEOUT: Duration = Duration::from_millis(500);

/// Counts what was asked, and what could not be.
#[derive(Clone)]
pub struct Asked {
    pub sent: IntCounter,
    pub failed: IntCounter,
}

impl Asked {
    fn outcome(&self, outcome: Result<(), String>, what: &str) {
        match outcome {
            Ok(()) => self.sent.inc(),
            Err(cause) => {
                self.failed.inc();
                log::warn!("could not queue {what}; a worker will catch up later: {cause}");
            }
        }
    }
}

/// Publish nudges, sent on the nudge channel.
pub struct PublishNudges {
    redis: LazyRedis,
    channel: String,
    asked: Asked,
}

impl PublishNudges {
    /// Nudges are sent on `redis`, each waiting at most [`NUDGE_TIMEOUT`].
    pub fn new(redis: &LazyRedis, prefix: &str, asked: Asked) -> Self {
        Self {
            redis: redis.with_timeout(NUDGE_TIMEOUT),
            channel: publish_nudges_channel(prefix),
            asked,
        }
    }

    /// Asks every worker to publish what the outbox holds; `what` says what for the log
    /// line if the nudge cannot be sent.
    pub async fn nudge(&self, what: &str) {
        let sent = self
            .redis
            .run(|mut conn| {
                let channel = &self.channel;
                async move {
                    redis::cmd("PUBLISH")
                        .arg(channel)
                        .arg("")
                        .query_async::<i64>(&mut conn)
                        .await
                }
            })
            .await
            .map(drop);
        self.asked.outcome(sent, what);
    }

    /// A round trip to Redis, for readiness checks.
    pub async fn ping(&self) -> Result<(), String> {
        self.redis
            .run(
                |mut conn| async move { redis::cmd("PING").query_async::<String>(&mut conn).await },
            )
            .await
            .map(drop)
    }
}

/// The scheduled ends of statuses (the expiry queue), connected lazily: a process starts
/// and serves while Redis is down.
pub struct StatusEnds {
    redis_url: String,
    queue: String,
    storage: OnceCell<RedisStorage<EndStatuses>>,
    asked: Asked,
}

impl StatusEnds {
    pub fn new(redis_url: &str, prefix: &str, asked: Asked) -> Self {
        Self {
            redis_url: redis_url.to_owned(),
            queue: expiry_queue(prefix),
            storage: OnceCell::new(),
            asked,
        }
    }

    /// Asks a worker to end the statuses due at `end`, at that moment, if it is within
    /// [`SCHEDULE_AHEAD`]; a later end is queued by a sweep as it comes near.
    pub async fn schedule(&self, end: DateTime<Utc>) {
        if end > Utc::now() + SCHEDULE_AHEAD {
            return;
        }
        let job = EndStatuses::for_end(end);
        let what = format!("the status ends at {}", job.at);
        let pushed = tokio::time::timeout(NUDGE_TIMEOUT, self.push(job)).await;
        let pushed = pushed.unwrap_or_else(|_| Err(format!("no answer within {NUDGE_TIMEOUT:?}")));
        self.asked.outcome(pushed, &what);
    }

    /// The storage, connecting on first use (and again after a failed connect).
    async fn storage(&self) -> Result<RedisStorage<EndStatuses>, String> {
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

    /// Pushes the job of its second (a no-op if that second's job is queued already),
    /// once more if the connection turned out lost (Redis restarted).
    async fn push(&self, job: EndStatuses) -> Result<(), String> {
        let mut storage = self.storage().await?;
        let task = || {
            // apalis schedules to the second: the job is released at the start of `at`'s
            // second and waits for each end in it (see the worker's `end_statuses`).
            TaskBuilder::new(job.clone())
                .task_id(TaskId::from_string(job.job_id()))
                .run_at_timestamp(u64::try_from(job.at.timestamp()).unwrap_or_default())
                .build()
        };
        match storage.push_task(task()).await {
            Err(TaskSinkError::PushError(apalis_redis::Error::Database(e)))
                if connection_lost(&e) =>
            {
                storage.push_task(task()).await
            }
            pushed => pushed,
        }
        .map_err(|e| e.to_string())
    }
}
