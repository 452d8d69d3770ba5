//! Liveness, readiness and metrics, for orchestrators and operators.

use actix_web::{HttpResponse, web};
use serde::Serialize;

use presence_runtime::readiness::{self, Readiness};

use crate::state::{AppState, db};

#[derive(Serialize, utoipa::ToSchema)]
pub struct Status {
    status: &'static str,
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
    readiness::readyz(&state.pool, state.nudges.ping()).await
}

/// Prometheus metrics of this process (text format), on `METRICS_LISTEN_ADDR` only: the
/// request counters would let anyone who can reach the API tell, say, an invisible user's
/// status change from a logout.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let timings = state.policy().timings();
    match db(&state, move |conn| {
        presence_model::counts::presence_counts(conn, timings)
    })
    .await
    {
        Ok(counts) => state.metrics.users_online.set(counts.count),
        Err(e) => log::warn!("metrics: could not count online users: {e}"),
    }
    let readiness = readiness::check_dependencies(&state.pool, state.nudges.ping()).await;
    state.metrics.ready.set(readiness.is_ready().into());
    state.metrics.response()
}
