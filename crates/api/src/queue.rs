//! Hands presence transitions to the worker through the apalis-redis job queue.
//!
//! PostgreSQL is the source of truth; the queue only feeds the history and real-time
//! subscribers. So an enqueue never fails a request: if Redis is down or slow, the
//! transition is logged and counted as lost after [`ENQUEUE_TIMEOUT`], and the next
//! enqueue tries to connect again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use apalis_core::backend::TaskSink;
use apalis_redis::RedisStorage;
use presence_model::jobs::{PresenceChanged, PresenceChanges, presence_changes_queue};
use tokio::sync::OnceCell;

/// The longest a transition may delay its request.
pub const ENQUEUE_TIMEOUT: Duration = Duration::from_millis(500);

pub struct PresenceQueue {
    redis_url: String,
    queue: String,
    storage: OnceCell<RedisStorage<PresenceChanges>>,
    enqueued: AtomicU64,
    failed: AtomicU64,
}

impl PresenceQueue {
    /// Connects lazily, on the first enqueue: the API starts and serves while Redis is down.
    pub fn new(redis_url: &str, prefix: &str) -> Self {
        Self {
            redis_url: redis_url.to_owned(),
            queue: presence_changes_queue(prefix),
            storage: OnceCell::new(),
            enqueued: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Queues `change` (if there is one) for the worker.
    pub async fn enqueue(&self, change: Option<PresenceChanged>) {
        let Some(change) = change else { return };
        let pushed = tokio::time::timeout(ENQUEUE_TIMEOUT, self.push(change.clone())).await;
        match pushed {
            Ok(Ok(())) => {
                self.enqueued.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => self.lost(&change, &e),
            Err(_) => self.lost(&change, &format!("no answer within {ENQUEUE_TIMEOUT:?}")),
        }
    }

    async fn push(&self, change: PresenceChanged) -> Result<(), String> {
        let storage = self
            .storage
            .get_or_try_init(|| async {
                let conn = apalis_redis::connect(self.redis_url.as_str()).await?;
                let config = apalis_redis::Config::default().queue(&self.queue);
                Ok::<_, apalis_redis::RedisError>(RedisStorage::new(conn).with_config(config))
            })
            .await
            .map_err(|e| format!("cannot connect to Redis: {e}"))?;
        storage
            .clone()
            .push(PresenceChanges(vec![change]))
            .await
            .map_err(|e| e.to_string())
    }

    fn lost(&self, change: &PresenceChanged, cause: &str) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        log::error!(
            "could not queue presence change of user {} ({} -> {}): {cause}",
            change.user_id,
            change.from.as_str(),
            change.to.as_str()
        );
    }

    /// Jobs queued since start.
    pub fn enqueued(&self) -> u64 {
        self.enqueued.load(Ordering::Relaxed)
    }

    /// Transitions that could not be queued since start.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}
