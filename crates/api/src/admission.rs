//! Quotas on what costs a password hash: registrations and logins, per client address
//! and for the whole deployment, counted in fixed windows in Redis so every replica sees
//! the same counts. An attempt past a quota is answered 429 with `Retry-After` before any
//! hashing. While Redis is unreachable each process counts alone (a deployment of N
//! replicas then admits up to N times the quota).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use presence_runtime::redis_conn::LazyRedis;

use crate::errors::ApiError;

/// Keys counted in memory at most (per-process fallback).
const LOCAL_CAPACITY: u64 = 100_000;

/// At most `limit` attempts per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub window: Duration,
}

/// The quotas of registrations and logins.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionQuotas {
    pub registrations_per_address: Quota,
    pub registrations: Quota,
    pub logins_per_address: Quota,
    pub logins: Quota,
}

/// What an attempt is, for its keys and its refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Registration,
    Login,
}

struct LocalWindow {
    count: u32,
    started: Instant,
}

pub struct Admission {
    quotas: AdmissionQuotas,
    redis: LazyRedis,
    prefix: String,
    local: Cache<String, Arc<Mutex<LocalWindow>>>,
}

impl Admission {
    /// Quotas are counted on `redis`, each use waiting at most `REDIS_TIMEOUT`.
    pub fn new(quotas: AdmissionQuotas, redis: &LazyRedis, prefix: &str) -> Self {
        Self {
            quotas,
            redis: redis.with_timeout(crate::throttle::REDIS_TIMEOUT),
            prefix: format!("{prefix}:admission"),
            local: Cache::builder().max_capacity(LOCAL_CAPACITY).build(),
        }
    }

    fn keys(&self, attempt: Attempt, address: Option<IpAddr>) -> Vec<(String, Quota)> {
        let (name, per_address, all) = match attempt {
            Attempt::Registration => (
                "register",
                self.quotas.registrations_per_address,
                self.quotas.registrations,
            ),
            Attempt::Login => ("login", self.quotas.logins_per_address, self.quotas.logins),
        };
        let mut keys = vec![(format!("{}:{name}:all", self.prefix), all)];
        if let Some(address) = address {
            keys.push((
                format!("{}:{name}:address:{address}", self.prefix),
                per_address,
            ));
        }
        keys
    }

    /// Counts the attempt against its quotas; 429 if one of them is used up.
    pub async fn admit(&self, attempt: Attempt, address: Option<IpAddr>) -> Result<(), ApiError> {
        let keys = self.keys(attempt, address);
        let counts = match self.shared_counts(&keys).await {
            Ok(counts) => counts,
            Err(e) => {
                log::warn!("admission counted in this process only: {e}");
                keys.iter()
                    .map(|(key, quota)| self.local_count(key, *quota))
                    .collect()
            }
        };
        for ((_, quota), (count, resets_in)) in keys.iter().zip(counts) {
            if count > quota.limit {
                return Err(ApiError::TooManyRequests {
                    what: match attempt {
                        Attempt::Registration => "too many registrations",
                        Attempt::Login => "too many logins",
                    },
                    retry_after_secs: resets_in.as_secs().max(1),
                });
            }
        }
        Ok(())
    }

    /// Adds one to each key in Redis (starting its window if new): the counts and how long
    /// until each window ends, in one round trip.
    async fn shared_counts(
        &self,
        keys: &[(String, Quota)],
    ) -> Result<Vec<(u32, Duration)>, String> {
        let mut pipeline = redis::pipe();
        for (key, quota) in keys {
            pipeline
                .incr(key, 1)
                .cmd("PEXPIRE")
                .arg(key)
                .arg(quota.window.as_millis() as u64)
                .arg("NX")
                .ignore()
                .pttl(key);
        }
        let values: Vec<i64> = self
            .redis
            .run(|mut conn| {
                let pipeline = &pipeline;
                async move { pipeline.query_async(&mut conn).await }
            })
            .await?;
        Ok(values
            .chunks(2)
            .map(|pair| {
                let count = u32::try_from(pair[0]).unwrap_or(u32::MAX);
                let ttl_ms = pair.get(1).copied().unwrap_or(0);
                (
                    count,
                    Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0)),
                )
            })
            .collect())
    }

    fn local_count(&self, key: &str, quota: Quota) -> (u32, Duration) {
        let entry = self.local.get_with(key.to_owned(), || {
            Arc::new(Mutex::new(LocalWindow {
                count: 0,
                started: Instant::now(),
            }))
        });
        let mut window = entry.lock().unwrap_or_else(|e| e.into_inner());
        if window.started.elapsed() >= quota.window {
            *window = LocalWindow {
                count: 0,
                started: Instant::now(),
            };
        }
        window.count += 1;
        (
            window.count,
            quota.window.saturating_sub(window.started.elapsed()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(limit: u32) -> Quota {
        Quota {
            limit,
            window: Duration::from_secs(60),
        }
    }

    #[actix_web::test]
    async fn counts_per_address_and_in_all_without_redis() {
        // Nothing listens on port 1: this process's counts hold the line alone.
        let redis = LazyRedis::new("redis://127.0.0.1:1", Duration::from_millis(100));
        let admission = Admission::new(
            AdmissionQuotas {
                registrations_per_address: quota(2),
                registrations: quota(3),
                logins_per_address: quota(1),
                logins: quota(100),
            },
            &redis,
            "test",
        );
        let (home, away): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..2 {
            admission
                .admit(Attempt::Registration, Some(home))
                .await
                .unwrap();
        }
        let refused = admission
            .admit(Attempt::Registration, Some(home))
            .await
            .unwrap_err();
        assert!(
            matches!(refused, ApiError::TooManyRequests { retry_after_secs, .. } if (1..=60).contains(&retry_after_secs)),
            "{refused:?}"
        );
        // The fourth registration anywhere is past the deployment's quota of three.
        assert!(
            admission
                .admit(Attempt::Registration, Some(away))
                .await
                .is_err()
        );
        // Logins have quotas of their own.
        admission.admit(Attempt::Login, Some(home)).await.unwrap();
        assert!(admission.admit(Attempt::Login, Some(home)).await.is_err());
        assert!(admission.admit(Attempt::Login, Some(away)).await.is_ok());
    }
}
