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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use presence_runtime::redis_conn::LazyRedis;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::errors::ApiError;

/// The longest a login or registration waits for Redis before it counts on this process
/// alone.
pub(crate) const REDIS_TIMEOUT: Duration = Duration::from_millis(200);
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
    key_prefix: String,
    redis: LazyRedis,
    local: Cache<String, Arc<Mutex<LocalWindow>>>,
}

/// A key's failures and the seconds until its window ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Count {
    failures: u32,
    resets_in_secs: u64,
}

impl LoginThrottle {
    /// Failures are counted on `redis`, each use waiting at most [`REDIS_TIMEOUT`].
    pub fn new(limits: LoginLimits, redis: &LazyRedis, prefix: &str) -> Self {
        Self {
            limits,
            key_prefix: format!("{prefix}:login-failures"),
            redis: redis.with_timeout(REDIS_TIMEOUT),
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
        self.redis
            .run(|mut conn| {
                let pipeline = &pipeline;
                async move { pipeline.query_async::<T>(&mut conn).await }
            })
            .await
    }
}

/// Bounds the password hashes (argon2: ~19 MiB and ~50 ms of a core each) running at once
/// in this process, so a flood of logins cannot take every core from heartbeats; and the
/// requests waiting for one, so a burst is answered 503 at once rather than held in memory.
/// Registrations hold at most half the slots (at least one), and at most that many wait:
/// a flood of sign-ups leaves logins a share of the hashing.
pub struct PasswordHashing {
    slots: Queue,
    registrations: Queue,
}

/// Permits, and at most so many requests waiting for one.
struct Queue {
    permits: Semaphore,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Queue {
    fn new(permits: usize) -> Self {
        Self {
            permits: Semaphore::new(permits),
            waiting: AtomicUsize::new(0),
            max_waiting: permits * WAITING_PER_SLOT,
        }
    }

    async fn wait(&self) -> Result<SemaphorePermit<'_>, ApiError> {
        let unavailable = ApiError::Unavailable {
            reason: "too many logins at once",
        };
        if let Ok(permit) = self.permits.try_acquire() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(unavailable);
        }
        let acquired = tokio::time::timeout(HASH_QUEUE_TIMEOUT, self.permits.acquire()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match acquired {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(unavailable),
        }
    }
}

/// Requests that may wait for a hashing slot, per slot.
const WAITING_PER_SLOT: usize = 16;

/// A hashing slot, held while hashing.
pub struct HashSlot<'a> {
    _slot: SemaphorePermit<'a>,
    _registration: Option<SemaphorePermit<'a>>,
}

impl PasswordHashing {
    pub fn new(in_flight: usize) -> Self {
        let slots = in_flight.max(1);
        Self {
            slots: Queue::new(slots),
            registrations: Queue::new((slots / 2).max(1)),
        }
    }

    /// A slot to hash a login's password in; 503 if too many wait, or none frees up within
    /// `HASH_QUEUE_TIMEOUT`.
    pub async fn login_slot(&self) -> Result<HashSlot<'_>, ApiError> {
        let slot = self.slots.wait().await?;
        Ok(HashSlot {
            _slot: slot,
            _registration: None,
        })
    }

    /// A slot to hash a new account's password in, within the registrations' share.
    pub async fn registration_slot(&self) -> Result<HashSlot<'_>, ApiError> {
        let registration = self.registrations.wait().await?;
        let slot = self.slots.wait().await?;
        Ok(HashSlot {
            _slot: slot,
            _registration: Some(registration),
        })
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
            &LazyRedis::new("redis://127.0.0.1:1", REDIS_TIMEOUT),
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

    #[actix_web::test]
    async fn a_burst_waits_only_so_long_and_registrations_leave_logins_a_share() {
        let hashing = PasswordHashing::new(2);
        let registering = hashing.registration_slot().await.unwrap();
        // The registrations' share (one of two slots) is taken: a second registration
        // waits, and a login still hashes at once.
        let login = tokio::time::timeout(Duration::from_millis(100), hashing.login_slot())
            .await
            .expect("a login is not queued behind registrations")
            .unwrap();
        let mut waiting = Vec::new();
        for _ in 0..2 * WAITING_PER_SLOT {
            waiting.push(Box::pin(hashing.login_slot()));
        }
        for slot in &mut waiting {
            assert!(futures_util::poll!(slot.as_mut()).is_pending());
        }
        let refused = hashing.login_slot().await.err().expect("the queue is full");
        assert!(
            matches!(refused, ApiError::Unavailable { .. }),
            "{refused:?}"
        );
        drop((registering, login, waiting));
        assert!(hashing.login_slot().await.is_ok());
    }
}
