//! Hands presence transitions to the worker through the apalis-redis job queue.
//!
//! PostgreSQL is the source of truth; the queue only feeds the history and real-time
//! subscribers. So an enqueue never fails a request: if Redis is down or slow, the
//! transition is logged and counted as lost after [`ENQUEUE_TIMEOUT`], and the next
//! enqueue tries to connect again.

use std::time::Duration;

use apalis_core::backend::TaskSink;
use apalis_redis::RedisStorage;
use presence_model::jobs::{
    PresenceChanged, PresenceChanges, presence_changes_queue, revocations_channel,
};
use prometheus::IntCounter;
use tokio::sync::OnceCell;

/// The longest a transition may delay its request.
pub const ENQUEUE_TIMEOUT: Duration = Duration::from_millis(500);

pub struct PresenceQueue {
    redis_url: String,
    queue: String,
    revocations: String,
    storage: OnceCell<RedisStorage<PresenceChanges>>,
    enqueued: IntCounter,
    failed: IntCounter,
}

impl PresenceQueue {
    /// Connects lazily, on the first enqueue: the API starts and serves while Redis is down.
    /// Counts queued jobs in `enqueued` and lost ones in `failed`.
    pub fn new(redis_url: &str, prefix: &str, enqueued: IntCounter, failed: IntCounter) -> Self {
        Self {
            redis_url: redis_url.to_owned(),
            queue: presence_changes_queue(prefix),
            revocations: revocations_channel(prefix),
            storage: OnceCell::new(),
            enqueued,
            failed,
        }
    }

    /// Queues `change` (if there is one) for the worker.
    pub async fn enqueue(&self, change: Option<PresenceChanged>) {
        let Some(change) = change else { return };
        let pushed = tokio::time::timeout(ENQUEUE_TIMEOUT, self.push(change.clone())).await;
        match pushed {
            Ok(Ok(())) => self.enqueued.inc(),
            Ok(Err(e)) => self.lost(&change, &e),
            Err(_) => self.lost(&change, &format!("no answer within {ENQUEUE_TIMEOUT:?}")),
        }
    }

    /// The storage, connecting on first use (and again after a failed connect).
    async fn storage(&self) -> Result<RedisStorage<PresenceChanges>, String> {
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

    async fn push(&self, change: PresenceChanged) -> Result<(), String> {
        self.storage()
            .await?
            .push(PresenceChanges(vec![change]))
            .await
            .map_err(|e| e.to_string())
    }

    /// Tells every replica that the session with this token hash is revoked, so they stop
    /// answering it from their caches. If Redis is down, so are their subscriptions, and
    /// they trust cached sessions for a second only.
    pub async fn publish_revocation(&self, token_hash: &[u8]) {
        let published = tokio::time::timeout(ENQUEUE_TIMEOUT, async {
            let mut storage = self.storage().await?;
            redis::cmd("PUBLISH")
                .arg(&self.revocations)
                .arg(token_hash)
                .query_async::<i64>(storage.get_connection())
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await;
        match published {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::warn!("could not publish a revocation: {e}"),
            Err(_) => {
                log::warn!("could not publish a revocation: no answer within {ENQUEUE_TIMEOUT:?}")
            }
        }
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

    fn lost(&self, change: &PresenceChanged, cause: &str) {
        self.failed.inc();
        log::error!(
            "could not queue presence change of user {} ({} -> {}): {cause}",
            change.user_id,
            change.from.as_str(),
            change.to.as_str()
        );
    }
}
