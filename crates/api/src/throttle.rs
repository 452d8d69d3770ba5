//! Brakes on password guessing: failed logins are counted per account and per client
//! address, and a login is refused (429 with `Retry-After`) once either count reaches its
//! limit within the window; and only a few password hashes run at once per process.
//!
//! The counts live in Redis, so every replica sees the same ones. Each process also
//! counts in memory and enforces the larger of the two counts: while Redis is
//! unreachable, the per-process count still holds the line and logins keep working.
//! Whatever a login is refused for, no password is hashed for it: a flood of wrong
//! passwords costs a counter lookup, not ~50 ms of a core.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use redis::aio::ConnectionManager;
use tokio::sync::{OnceCell, Semaphore, SemaphorePermit};

use crate::errors::ApiError;

/// The longest a login waits for Redis before it counts on this process alone.
const REDIS_TIMEOUT: Duration = Duration::from_millis(200);
/// The longest a login waits for a hashing slot before it is answered 503.
const HASH_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys counted in memory at most (per-process fallback).
const LOCAL_CAPACITY: u64 = 100_000;

/// How many failures are allowed, and over how long.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    pub per_account: u32,
    pub per_address: u32,
    pub window: Duration,
}

/// Failures of one key counted by this process: since `started`, for one window.
struct LocalWindow {
    failures: u32,
    started: Instant,
}

pub struct LoginThrottle {
    limits: LoginLimits,
    redis_url: String,
    key_prefix: String,
    redis: OnceCell<ConnectionManager>,
    local: Cache<String, Arc<Mutex<LocalWindow>>>,
}

/// A key's failures and the seconds until its window ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Count {
    failures: u32,
    resets_in_secs: u64,
}

impl LoginThrottle {
    pub fn new(limits: LoginLimits, redis_url: &str, prefix: &str) -> Self {
        Self {
            limits,
            redis_url: redis_url.to_owned(),
            key_prefix: format!("{prefix}:login-failures"),
            redis: OnceCell::new(),
            local: Cache::builder()
                .max_capacity(LOCAL_CAPACITY)
                .time_to_live(limits.window)
                .build(),
        }
    }

    fn keys(&self, account: &str, address: Option<IpAddr>) -> Vec<(String, u32)> {
        let mut keys = vec![(
            format!("{}:account:{}", self.key_prefix, account.to_lowercase()),
            self.limits.per_account,
        )];
        if let Some(address) = address {
            keys.push((
                format!("{}:address:{address}", self.key_prefix),
                self.limits.per_address,
            ));
        }
        keys
    }

    /// Refuses the login if the account or the address has used up its failures.
    pub async fn check(&self, account: &str, address: Option<IpAddr>) -> Result<(), ApiError> {
        let keys = self.keys(account, address);
        // One round trip for every key; without Redis, this process's counts alone.
        let shared = self.shared_counts(&keys).await.unwrap_or_default();
        for (n, (key, limit)) in keys.iter().enumerate() {
            let shared = shared.get(n).copied().unwrap_or_default();
            let local = self.local_count(key);
            let worst = if shared.failures >= local.failures {
                shared
            } else {
                local
            };
            if worst.failures >= *limit {
                return Err(ApiError::TooManyRequests {
                    what: "too many failed logins",
                    retry_after_secs: worst.resets_in_secs.max(1),
                });
            }
        }
        Ok(())
    }

    /// Counts a failed login against the account and the address.
    pub async fn record_failure(&self, account: &str, address: Option<IpAddr>) {
        let window_secs = self.limits.window.as_secs().max(1);
        let mut pipeline = redis::pipe();
        for (key, _) in self.keys(account, address) {
            let entry = self.local.get_with(key.clone(), || {
                Arc::new(Mutex::new(LocalWindow {
                    failures: 0,
                    started: Instant::now(),
                }))
            });
            entry.lock().unwrap_or_else(|e| e.into_inner()).failures += 1;
            pipeline
                .incr(&key, 1)
                .ignore()
                .cmd("EXPIRE")
                .arg(&key)
                .arg(window_secs)
                .arg("NX")
                .ignore();
        }
        if let Err(e) = self.run::<()>(pipeline).await {
            log::warn!("login failures counted in this process only: {e}");
        }
    }

    /// A successful login clears the account's count (not the address's).
    pub async fn clear(&self, account: &str) {
        let Some((key, _)) = self.keys(account, None).into_iter().next() else {
            return;
        };
        self.local.invalidate(&key);
        let mut pipeline = redis::pipe();
        pipeline.del(&key).ignore();
        if let Err(e) = self.run::<()>(pipeline).await {
            log::warn!("could not clear login failures: {e}");
        }
    }

    fn local_count(&self, key: &str) -> Count {
        let Some(entry) = self.local.get(key) else {
            return Count::default();
        };
        let window = entry.lock().unwrap_or_else(|e| e.into_inner());
        Count {
            failures: window.failures,
            resets_in_secs: self
                .limits
                .window
                .saturating_sub(window.started.elapsed())
                .as_secs(),
        }
    }

    /// The shared counts of `keys`, in order, in one pipeline.
    async fn shared_counts(&self, keys: &[(String, u32)]) -> Result<Vec<Count>, String> {
        let mut pipeline = redis::pipe();
        for (key, _) in keys {
            pipeline.get(key).pttl(key);
        }
        let values: Vec<redis::Value> = self.run(pipeline).await?;
        values
            .chunks(2)
            .map(|pair| {
                let failures: Option<u32> =
                    redis::from_redis_value_ref(&pair[0]).map_err(|e| e.to_string())?;
                let ttl_ms: i64 = pair
                    .get(1)
                    .map(redis::from_redis_value_ref)
                    .transpose()
                    .map_err(|e| e.to_string())?
                    .unwrap_or(0);
                Ok(Count {
                    failures: failures.unwrap_or(0),
                    resets_in_secs: u64::try_from(ttl_ms).unwrap_or(0).div_ceil(1000),
                })
            })
            .collect()
    }

    /// Runs `pipeline` on the shared store within [`REDIS_TIMEOUT`], connecting first if
    /// needed.
    async fn run<T: redis::FromRedisValue>(&self, pipeline: redis::Pipeline) -> Result<T, String> {
        let attempt = async {
            let conn = self
                .redis
                .get_or_try_init(|| async {
                    redis::Client::open(self.redis_url.as_str())?
                        .get_connection_manager()
                        .await
                })
                .await
                .map_err(|e| e.to_string())?;
            pipeline
                .query_async::<T>(&mut conn.clone())
                .await
                .map_err(|e| e.to_string())
        };
        tokio::time::timeout(REDIS_TIMEOUT, attempt)
            .await
            .map_err(|_| format!("no answer from Redis within {REDIS_TIMEOUT:?}"))?
    }
}

/// Bounds the password hashes (argon2: ~19 MiB and ~50 ms of a core each) running at once
/// in this process, so a flood of logins cannot take every core from heartbeats.
pub struct PasswordHashing {
    slots: Semaphore,
}

impl PasswordHashing {
    pub fn new(in_flight: usize) -> Self {
        Self {
            slots: Semaphore::new(in_flight.max(1)),
        }
    }

    /// A slot to hash in; 503 if none frees up within `HASH_QUEUE_TIMEOUT`.
    pub async fn slot(&self) -> Result<SemaphorePermit<'_>, ApiError> {
        let unavailable = ApiError::Unavailable {
            reason: "too many logins at once",
        };
        match tokio::time::timeout(HASH_QUEUE_TIMEOUT, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(unavailable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        // Nothing listens on port 1: the per-process count must hold the line alone.
        LoginThrottle::new(
            LoginLimits {
                per_account: 3,
                per_address: 5,
                window: Duration::from_secs(60),
            },
            "redis://127.0.0.1:1",
            "test",
        )
    }

    #[actix_web::test]
    async fn counts_per_account_and_per_address_without_redis() {
        let throttle = throttle();
        let home: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            throttle.check("Alice", Some(home)).await.unwrap();
            throttle.record_failure("alice", Some(home)).await;
        }
        let refused = throttle.check("ALICE", None).await.unwrap_err();
        assert!(
            matches!(refused, ApiError::TooManyRequests { retry_after_secs, .. } if (1..=60).contains(&retry_after_secs)),
            "{refused:?}"
        );
        throttle.check("bob", Some(home)).await.unwrap();
        throttle.record_failure("bob", Some(home)).await;
        throttle.record_failure("carol", Some(home)).await;
        assert!(
            throttle.check("dave", Some(home)).await.is_err(),
            "address used up"
        );
        assert!(throttle.check("dave", None).await.is_ok());
        throttle.clear("alice").await;
        assert!(throttle.check("alice", None).await.is_ok());
    }
}
