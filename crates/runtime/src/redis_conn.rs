//! A Redis connection made on first use: a process starts and serves while Redis is down,
//! and every use waits at most a bounded time for it.
//!
//! After Redis restarts, the first command on a held connection fails (the socket it was
//! sent on is dead) while the connection manager reconnects: [`LazyRedis::run`] then sends
//! it once more, on the new connection, so no caller sees that failure.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

/// Clones share one connection (multiplexed: commands from every task are pipelined on
/// it), each with its own timeout.
#[derive(Clone)]
pub struct LazyRedis {
    url: Arc<str>,
    conn: Arc<OnceCell<ConnectionManager>>,
    timeout: Duration,
}

/// Whether `error` says the connection was lost (not that the command was wrong): the
/// command never ran, and may be sent again.
pub fn connection_lost(error: &redis::RedisError) -> bool {
    error.is_connection_dropped() || error.is_io_error() || error.is_connection_refusal()
}

impl LazyRedis {
    /// Uses of it wait at most `timeout` for Redis.
    pub fn new(url: &str, timeout: Duration) -> Self {
        Self {
            url: url.into(),
            conn: Arc::new(OnceCell::new()),
            timeout,
        }
    }

    /// The same connection, its uses waiting at most `timeout`.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            timeout,
            ..self.clone()
        }
    }

    async fn connect(&self) -> Result<ConnectionManager, String> {
        self.conn
            .get_or_try_init(|| async {
                let client = redis::Client::open(&*self.url)?;
                ConnectionManager::new(client).await
            })
            .await
            .cloned()
            .map_err(|e| format!("cannot connect to Redis: {e}"))
    }

    /// The connection, connecting on first use (and again after a failed connect).
    pub async fn get(&self) -> Result<ConnectionManager, String> {
        match tokio::time::timeout(self.timeout, self.connect()).await {
            Ok(conn) => conn,
            Err(_) => Err(format!("no connection to Redis within {:?}", self.timeout)),
        }
    }

    /// Runs `query` on the connection, once more if the connection turned out lost, all
    /// within the timeout. `query` must be safe to send twice when it never ran.
    pub async fn run<T, F>(&self, query: impl Fn(ConnectionManager) -> F) -> Result<T, String>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async {
            let conn = self.connect().await?;
            match query(conn.clone()).await {
                Err(e) if connection_lost(&e) => query(conn).await,
                answered => answered,
            }
            .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(answered) => answered,
            Err(_) => Err(format!("no answer from Redis within {:?}", self.timeout)),
        }
    }
}

/// What a follower of a pub/sub channel is told.
pub enum Followed {
    /// (Re)subscribed: whatever was published while nobody listened was missed.
    Subscribed,
    Message(redis::Msg),
    /// The subscription was lost; it is made again after a backoff.
    Lost,
}

/// Follows `channel` for as long as the process runs, telling `on` of each message and of
/// each (re)subscription and loss; reconnects with backoff (200 ms doubling to 5 s).
pub async fn follow_channel(redis_url: &str, channel: &str, mut on: impl FnMut(Followed)) {
    use futures_util::StreamExt;
    let mut backoff = Duration::from_millis(200);
    loop {
        match subscribe(redis_url, channel).await {
            Ok(mut messages) => {
                backoff = Duration::from_millis(200);
                on(Followed::Subscribed);
                while let Some(message) = messages.next().await {
                    on(Followed::Message(message));
                }
                on(Followed::Lost);
                log::warn!("lost the subscription to {channel}");
            }
            Err(e) => log::warn!("cannot subscribe to {channel}: {e}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn subscribe(
    redis_url: &str,
    channel: &str,
) -> Result<impl futures_util::Stream<Item = redis::Msg> + use<>, redis::RedisError> {
    let client = redis::Client::open(redis_url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub.into_on_message())
}
