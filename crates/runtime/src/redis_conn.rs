//! A Redis connection made on first use: a process starts and serves while Redis is down,
//! and every use waits at most a bounded time for it.
//!
//! After Redis restarts, the first command on a held connection fails (the socket it was
//! sent on is dead) while the connection manager reconnects: [`LazyRedis::run`] then sends
//! it once more, on the new connection, so no caller sees that failure.

use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

pub struct LazyRedis {
    url: String,
    conn: OnceCell<ConnectionManager>,
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
            url: url.to_owned(),
            conn: OnceCell::new(),
            timeout,
        }
    }

    async fn connect(&self) -> Result<ConnectionManager, String> {
        self.conn
            .get_or_try_init(|| async {
                let client = redis::Client::open(self.url.as_str())?;
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
