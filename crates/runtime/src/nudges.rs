//! Nudges to the publisher: a `PublishPending` job queued (apalis over Redis) after a
//! commit that recorded transitions, so a worker publishes them now rather than at its
//! next catch-up.
//!
//! The transitions themselves are rows of the outbox, so a nudge never fails its caller:
//! if Redis is down or slow it is counted as failed after [`NUDGE_TIMEOUT`], and the
//! transitions are published late, not lost. The API (after logins, logouts, activity)
//! and the worker (after a sweep) both send them.

use std::time::Duration;

use apalis_core::backend::TaskSink;
use apalis_redis::RedisStorage;
use presence_model::jobs::{PublishPending, publish_queue};
use prometheus::IntCounter;
use tokio::sync::OnceCell;

/// The longest a nudge may delay its caller.
pub const NUDGE_TIMEOUT: Duration = Duration::from_millis(500);

pub struct PublishNudges {
    redis_url: String,
    queue: String,
    storage: OnceCell<RedisStorage<PublishPending>>,
    sent: IntCounter,
    failed: IntCounter,
}

impl PublishNudges {
    /// Connects lazily, on the first nudge: a process starts and serves while Redis is
    /// down. Counts queued jobs in `sent` and failed ones in `failed`.
    pub fn new(redis_url: &str, prefix: &str, sent: IntCounter, failed: IntCounter) -> Self {
        Self {
            redis_url: redis_url.to_owned(),
            queue: publish_queue(prefix),
            storage: OnceCell::new(),
            sent,
            failed,
        }
    }

    /// Asks a worker to publish what the outbox holds; `what` says what for the log line
    /// if the job cannot be queued.
    pub async fn nudge(&self, what: &str) {
        let pushed = tokio::time::timeout(NUDGE_TIMEOUT, self.push()).await;
        let cause = match pushed {
            Ok(Ok(())) => return self.sent.inc(),
            Ok(Err(e)) => e,
            Err(_) => format!("no answer within {NUDGE_TIMEOUT:?}"),
        };
        self.failed.inc();
        log::warn!(
            "could not queue the publishing of {what}; a worker's catch-up will publish it: {cause}"
        );
    }

    /// The storage, connecting on first use (and again after a failed connect).
    async fn storage(&self) -> Result<RedisStorage<PublishPending>, String> {
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

    async fn push(&self) -> Result<(), String> {
        self.storage()
            .await?
            .push(PublishPending {})
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
