//! The expiry queue as the worker consumes it (apalis-redis storage).

use std::task::{Context, Poll};
use std::time::Duration;

use apalis::prelude::{PollSnapshot, PollStrategy};
use apalis_redis::{ConnectionManager, RedisStorage};
use presence_model::jobs::{EndStatuses, expiry_queue};

pub type ExpiryStorage = RedisStorage<EndStatuses>;

/// How often an idle worker asks Redis for jobs pushed by other processes.
pub const JOB_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The storage of [`EndStatuses`] jobs under `prefix`.
pub fn expiry_storage(conn: ConnectionManager, prefix: &str) -> ExpiryStorage {
    RedisStorage::new(conn).with_config(config(expiry_queue(prefix)))
}

/// Workers beat every 5 s; the in-flight jobs of one silent for 15 s are handed to the
/// others.
fn config(queue: String) -> apalis_redis::Config {
    apalis_redis::Config::default()
        .queue(queue)
        .heartbeat_interval(Duration::from_secs(5))
        .missed_heartbeats(3)
}

/// Wakes the worker every `interval` so it fetches jobs pushed by other processes.
///
/// apalis-redis does not notice another process's pushes by itself, and the stock
/// `IntervalStrategy` re-arms its timer without polling it, so a wake-up can be lost;
/// `tokio::time::Interval::poll_tick` registers the waker every time it returns `Pending`.
pub struct PollEvery(tokio::time::Interval);

impl PollEvery {
    pub fn new(interval: Duration) -> Self {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self(ticker)
    }
}

impl PollStrategy for PollEvery {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        let mut fired = false;
        while self.0.poll_tick(cx).is_ready() {
            fired = true;
        }
        if fired {
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}
