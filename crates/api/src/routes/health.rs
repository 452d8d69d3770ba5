//! Liveness, readiness and metrics, for orchestrators and operators.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use presence_model::presence;
use serde::Serialize;

use crate::state::{AppState, db};

/// How long a dependency may take to answer a readiness check.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Serialize, utoipa::ToSchema)]
pub struct Status {
    status: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ok` when every check is.
    status: &'static str,
    /// `ok`, or what failed, for `postgres` and `redis`.
    checks: Checks,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Checks {
    postgres: String,
    redis: String,
}

/// Liveness: answers without touching PostgreSQL or Redis, so a slow database never gets
/// a healthy process restarted.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = Status)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Status { status: "ok" })
}

/// Readiness: PostgreSQL and Redis each answer within a second.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Both dependencies answer", body = Readiness),
    (status = 503, description = "A dependency failed; its check says how", body = Readiness)))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.pool.clone();
    let postgres = check(async move {
        let ping = web::block(move || presence_model::db::ping(&pool));
        ping.await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    });
    let redis = check(state.queue.ping());
    let (postgres, redis) = tokio::join!(postgres, redis);
    let ready = postgres == "ok" && redis == "ok";
    let body = Readiness {
        status: if ready { "ok" } else { "unavailable" },
        checks: Checks { postgres, redis },
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn check<E: std::fmt::Display>(probe: impl Future<Output = Result<(), E>>) -> String {
    match tokio::time::timeout(READY_TIMEOUT, probe).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => format!("error: {e}"),
        Err(_) => format!("no answer within {READY_TIMEOUT:?}"),
    }
}

/// Prometheus metrics of this process (text format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", body = String,
               content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let window = state.policy.window();
    match db(&state, move |conn| {
        presence::get_online_users_count(conn, window)
    })
    .await
    {
        Ok(count) => state.metrics.users_online.set(count),
        Err(e) => log::warn!("metrics: could not count online users: {e}"),
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
