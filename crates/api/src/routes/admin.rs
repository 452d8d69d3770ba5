//! The operator page's data: one call answers "who is online, is the sweep running, are
//! the workers alive".

use actix_web::{HttpResponse, web};
use presence_model::counts::PresenceTotals;
use presence_model::sweeps::{self, SweepRecord};
use presence_runtime::workers::{self, QueueDepth, WorkerReport};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Admin;
use crate::errors::{ApiError, ErrorBody};
use crate::state::{AppState, db};

/// Sweeps listed on the page.
const RECENT_SWEEPS: i64 = 20;

#[derive(Serialize, ToSchema)]
pub struct Overview {
    /// Users by presence, as admins see it (invisible users by their true presence).
    presence: PresenceTotals,
    /// The latest sweeps, newest first.
    sweeps: Vec<SweepRecord>,
    /// Set when the sweep has fallen behind the schedule the workers announce.
    sweep_warning: Option<String>,
    /// The workers that reported in the last 30 s.
    workers: Vec<WorkerReport>,
    queue: QueueDepth,
}

/// Counts by presence, the last 20 sweeps, the live workers and the queue depth.
#[utoipa::path(get, path = "/api/admin/overview/", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "The overview", body = Overview),
        (status = 401, description = "Missing, unknown, expired or revoked token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "PostgreSQL or Redis is unreachable; see `Retry-After`",
            body = ErrorBody)))]
pub async fn overview(state: web::Data<AppState>, _admin: Admin) -> Result<HttpResponse, ApiError> {
    let timings = state.policy().timings();
    let (presence, sweeps) = db(&state, move |conn| {
        Ok::<_, presence_model::Error>((
            presence_model::counts::presence_totals(conn, timings)?,
            sweeps::recent_sweeps(conn, RECENT_SWEEPS)?,
        ))
    })
    .await?;
    let prefix = state.config_prefix.clone();
    let (workers, queue) = state
        .redis
        .run(|mut conn| {
            let prefix = &prefix;
            async move {
                let workers = workers::alive(&mut conn, prefix).await?;
                let queue = workers::queue_depth(&mut conn, prefix).await?;
                Ok((workers, queue))
            }
        })
        .await
        .map_err(|e| {
            log::warn!("overview: {e}");
            ApiError::Unavailable {
                reason: "the workers' reports are in Redis, which is unreachable",
            }
        })?;
    let last_tick = sweeps.first().map(|sweep| sweep.tick_at);
    Ok(HttpResponse::Ok().json(Overview {
        sweep_warning: workers::sweep_warning(last_tick, &workers, chrono::Utc::now()),
        presence,
        sweeps,
        workers,
        queue,
    }))
}
