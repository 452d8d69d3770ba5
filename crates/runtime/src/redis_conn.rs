//! A Redis connection made on first use: a process starts and serves while Redis is down,
//! and every use waits at most a bounded time for it.

use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

pub struct LazyRedis {
    url: String,
    conn: OnceCell<ConnectionManager>,
    timeout: Duration,
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

    /// The connection, connecting on first use (and again after a failed connect).
    pub async fn get(&self) -> Result<ConnectionManager, String> {
        let connect = self.conn.get_or_try_init(|| async {
            let client = redis::Client::open(self.url.as_str())?;
            ConnectionManager::new(client).await
        });
        match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(conn)) => Ok(conn.clone()),
            Ok(Err(e)) => Err(format!("cannot connect to Redis: {e}")),
            Err(_) => Err(format!("no connection to Redis within {:?}", self.timeout)),
        }
    }

    /// Runs `query` on the connection, waiting at most the timeout.
    pub async fn run<T, F>(&self, query: impl FnOnce(ConnectionManager) -> F) -> Result<T, String>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.get().await?;
        match tokio::time::timeout(self.timeout, query(conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer from Redis within {:?}", self.timeout)),
        }
    }
}
