//! Readiness: whether PostgreSQL and Redis each answer within a second. Both binaries
//! serve it as `GET /readyz`, with the same body.

use std::future::Future;
use std::time::Duration;

use actix_web::HttpResponse;
use presence_model::DbPool;
use serde::Serialize;

/// How long a dependency may take to answer a readiness check.
pub const READY_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    /// `ok` when every check is.
    status: &'static str,
    /// `ok`, or what failed, for `postgres` and `redis`.
    checks: Checks,
}

#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Checks {
    postgres: String,
    redis: String,
}

/// Checks a round trip to PostgreSQL (through `pool`) and `redis_ping`, at once: 200 when
/// both answer within [`READY_TIMEOUT`], else 503 naming the failing check.
pub async fn readyz(
    pool: &DbPool,
    redis_ping: impl Future<Output = Result<(), String>>,
) -> HttpResponse {
    let readiness = check_dependencies(pool, redis_ping).await;
    if readiness.is_ready() {
        HttpResponse::Ok().json(readiness)
    } else {
        HttpResponse::ServiceUnavailable().json(readiness)
    }
}

/// The checks of [`readyz`], for its answer and for the `ready` gauge every scrape sets
/// (so an alert sees a replica that cannot reach its dependencies without probing it).
pub async fn check_dependencies(
    pool: &DbPool,
    redis_ping: impl Future<Output = Result<(), String>>,
) -> Readiness {
    let pool = pool.clone();
    let postgres = check(async move {
        crate::blocking::blocking(move || presence_model::db::ping(&pool))
            .await
            .map_err(|e| e.to_string())
    });
    let (postgres, redis) = tokio::join!(postgres, check(redis_ping));
    let ready = postgres == "ok" && redis == "ok";
    Readiness {
        status: if ready { "ok" } else { "unavailable" },
        checks: Checks { postgres, redis },
    }
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.status == "ok"
    }
}

async fn check(probe: impl Future<Output = Result<(), String>>) -> String {
    match tokio::time::timeout(READY_TIMEOUT, probe).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => format!("error: {e}"),
        Err(_) => format!("no answer within {READY_TIMEOUT:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_check_says_ok_what_failed_or_that_nothing_answered() {
        assert_eq!(check(async { Ok(()) }).await, "ok");
        assert_eq!(
            check(async { Err("connection refused".to_owned()) }).await,
            "error: connection refused"
        );
        assert_eq!(
            check(std::future::pending()).await,
            format!("no answer within {READY_TIMEOUT:?}")
        );
    }
}
