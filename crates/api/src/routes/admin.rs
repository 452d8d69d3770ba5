//! The operator page's data: one call answers "who is online, is the sweep running, are
//! the workers alive"; another returns the recent history its charts draw.

use actix_web::{HttpResponse, web};
use presence_model::counts::PresenceTotals;
use presence_model::samples::{self, HistoryPoint};
use presence_model::sweeps::{self, SweepRecord};
use presence_runtime::workers::{self, QueueDepth, WorkerReport};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Admin;
use crate::errors::{ApiError, ErrorBody};
use crate::state::{AppState, db};

/// Sweeps listed on the page.
const RECENT_SWEEPS: i64 = 20;

#[derive(Serialize, ToSchema)]
pub struct Overview {
    /// Users by presence, as admins see it (invisible users by their true presence).
    presence: PresenceTotals,
    /// When `presence` was counted (the database's clock, as this replica reads it): the
    /// page polls the counts, so
    /// they may be a poll older than the table, which follows the stream.
    counted_at: chrono::DateTime<chrono::Utc>,
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
    let counted_at = presence_model::clock::now();
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
        counted_at,
        sweeps,
        workers,
        queue,
    }))
}

/// How far back the history goes, and so how wide each of its points is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HistoryRange {
    /// The last hour, a point per minute.
    #[default]
    Hour,
    /// The last day, a point per five minutes.
    Day,
}

impl HistoryRange {
    fn span(self) -> chrono::TimeDelta {
        match self {
            Self::Hour => chrono::TimeDelta::hours(1),
            Self::Day => chrono::TimeDelta::days(1),
        }
    }

    fn bucket_secs(self) -> i64 {
        match self {
            Self::Hour => 60,
            Self::Day => 300,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ServiceHistoryQuery {
    /// `hour` (default) or `day`.
    range: Option<HistoryRange>,
}

#[derive(Serialize, ToSchema)]
pub struct ServiceHistory {
    range: HistoryRange,
    /// How wide each point is: its counts of transitions and users swept are over this
    /// long (60 s for `hour`, 300 s for `day`).
    bucket_secs: i64,
    /// Oldest first, at most 60 (`hour`) or 288 (`day`); a bucket in which no sweep ran
    /// has no point (the gap is the outage).
    points: Vec<HistoryPoint>,
}

/// The service's recent history, sampled at every sweep tick: connected users by presence,
/// transitions by reason, the sweeps, the publisher's lag and the streams open.
#[utoipa::path(get, path = "/api/admin/history/", tag = "admin", security(("bearer" = [])),
    params(ServiceHistoryQuery),
    responses(
        (status = 200, description = "The history", body = ServiceHistory),
        (status = 400, description = "An unknown `range`", body = ErrorBody),
        (status = 401, description = "Missing, unknown, expired or revoked token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "PostgreSQL is unreachable; see `Retry-After`",
            body = ErrorBody)))]
pub async fn history(
    state: web::Data<AppState>,
    _admin: Admin,
    query: web::Query<ServiceHistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let range = query.range.unwrap_or_default();
    let bucket = chrono::TimeDelta::seconds(range.bucket_secs());
    let points = db(&state, move |conn| {
        samples::history(conn, range.span(), bucket)
    })
    .await?;
    Ok(HttpResponse::Ok().json(ServiceHistory {
        range,
        bucket_secs: range.bucket_secs(),
        points,
    }))
}
