//! Nudges the worker to publish transitions, through the apalis-redis job queue.
//!
//! Transitions are recorded in PostgreSQL's outbox by the transaction that makes them;
//! the job only tells a worker to publish now rather than at its next catch-up. So a nudge
//! never fails a request: if Redis is down or slow, it is counted as failed after
//! [`ENQUEUE_TIMEOUT`] and the transition is published late, not lost.

use std::time::Duration;

use apalis_core::backend::TaskSink;
use apalis_redis::RedisStorage;
use presence_model::events::PresenceChanged;
use presence_model::jobs::{PublishPending, publish_queue};
use prometheus::IntCounter;
use tokio::sync::OnceCell;

/// The longest a transition may delay its request.
pub const ENQUEUE_TIMEOUT: Duration = Duration::from_millis(500);

pub struct PresenceQueue {
    redis_url: String,
    queue: String,
    storage: OnceCell<RedisStorage<PublishPending>>,
    enqueued: IntCounter,
    failed: IntCounter,
}

impl PresenceQueue {
    /// Connects lazily, on the first enqueue: the API starts and serves while Redis is down.
    /// Counts queued jobs in `enqueued` and failed ones in `failed`.
    pub fn new(redis_url: &str, prefix: &str, enqueued: IntCounter, failed: IntCounter) -> Self {
        Self {
            redis_url: redis_url.to_owned(),
            queue: publish_queue(prefix),
            storage: OnceCell::new(),
            enqueued,
            failed,
        }
    }

    /// Asks a worker to publish `change` (if the write made one) now.
    pub async fn nudge_publisher(&self, change: Option<&PresenceChanged>) {
        let Some(change) = change else { return };
        let pushed = tokio::time::timeout(ENQUEUE_TIMEOUT, self.push()).await;
        let cause = match pushed {
            Ok(Ok(())) => return self.enqueued.inc(),
            Ok(Err(e)) => e,
            Err(_) => format!("no answer within {ENQUEUE_TIMEOUT:?}"),
        };
        self.failed.inc();
        log::warn!(
            "could not queue the publishing of transition {} (user {}); a worker's catch-up \
             will publish it: {cause}",
            change.id,
            change.user_id
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
