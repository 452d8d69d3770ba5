//! What operators see of the workers, through Redis: each worker reports itself every
//! [`REPORT_EVERY`] under a key that expires after [`REPORT_TTL`] (so a worker that dies
//! disappears by itself), the depth of the job queues, and whether the sweep has fallen
//! behind the schedule the workers announce.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use presence_model::jobs::expiry_queue;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

/// How often a worker reports itself.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);
/// How long a report lasts: a worker silent this long is gone.
pub const REPORT_TTL: Duration = Duration::from_secs(30);

/// One worker, as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerReport {
    pub name: String,
    pub host: String,
    pub started_at: DateTime<Utc>,
    /// Jobs this process ran (sweeps, publications, status ends).
    pub jobs_done: u64,
    /// The time between two ticks of its sweep schedule.
    pub sweep_every_secs: u64,
}

fn report_key(prefix: &str, name: &str) -> String {
    format!("{prefix}:workers:{name}")
}

/// The names of the workers that reported, scored by when: found without scanning keys.
fn roster_key(prefix: &str) -> String {
    format!("{prefix}:workers")
}

/// Stores `report` until [`REPORT_TTL`] passes.
pub async fn report(
    conn: &mut ConnectionManager,
    prefix: &str,
    report: &WorkerReport,
) -> redis::RedisResult<()> {
    let json = serde_json::to_string(report).map_err(|e| {
        redis::RedisError::from((redis::ErrorKind::Client, "serialize", e.to_string()))
    })?;
    let now = Utc::now().timestamp();
    redis::pipe()
        .set_ex(report_key(prefix, &report.name), json, REPORT_TTL.as_secs())
        .ignore()
        .zadd(roster_key(prefix), &report.name, now)
        .ignore()
        .query_async(conn)
        .await
}

/// Removes the report of a worker stopping gracefully.
pub async fn withdraw(conn: &mut ConnectionManager, prefix: &str, name: &str) {
    let _: redis::RedisResult<()> = redis::pipe()
        .del(report_key(prefix, name))
        .ignore()
        .zrem(roster_key(prefix), name)
        .ignore()
        .query_async(conn)
        .await;
}

/// The workers that reported within [`REPORT_TTL`], by name. The roster forgets workers
/// silent for longer; their reports have expired by then.
pub async fn alive(
    conn: &mut ConnectionManager,
    prefix: &str,
) -> redis::RedisResult<Vec<WorkerReport>> {
    let since = Utc::now().timestamp() - i64::try_from(REPORT_TTL.as_secs()).unwrap_or(30);
    let roster = roster_key(prefix);
    let _: () = conn.zrembyscore(&roster, "-inf", since).await?;
    let names: Vec<String> = conn.zrange(&roster, 0, -1).await?;
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = names.iter().map(|name| report_key(prefix, name)).collect();
    let values: Vec<Option<String>> = conn.mget(&keys).await?;
    let mut reports: Vec<WorkerReport> = values
        .into_iter()
        .flatten()
        .filter_map(|json| serde_json::from_str(&json).ok())
        .collect();
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(reports)
}

/// Jobs waiting (queued or scheduled) and jobs that failed for good, over both queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueDepth {
    pub pending: u64,
    pub failed: u64,
}

/// The depth of the expiry queue (the only stored jobs), from apalis-redis's own keys.
pub async fn queue_depth(
    conn: &mut ConnectionManager,
    prefix: &str,
) -> redis::RedisResult<QueueDepth> {
    let config = apalis_redis::Config::default().queue(expiry_queue(prefix));
    let (active, scheduled, dead): (u64, u64, u64) = redis::pipe()
        .llen(config.active_jobs_list())
        .zcard(config.scheduled_jobs_set())
        .scard(config.dead_jobs_set())
        .query_async(conn)
        .await?;
    Ok(QueueDepth {
        pending: active + scheduled,
        failed: dead,
    })
}

/// Why the sweep looks behind its schedule, if it does: its last tick is older than two
/// periods (the shortest any live worker announces) and some slack, or, with workers up
/// for that long, no sweep ever ran. `None` when no worker reports (that shows by itself).
pub fn sweep_warning(
    last_tick: Option<DateTime<Utc>>,
    workers: &[WorkerReport],
    now: DateTime<Utc>,
) -> Option<String> {
    let period = workers.iter().map(|w| w.sweep_every_secs).min()?;
    let allowed = TimeDelta::seconds(i64::try_from(period).unwrap_or(i64::MAX / 4) * 2 + 5);
    match last_tick {
        Some(tick) if now - tick > allowed => Some(format!(
            "The sweep is behind its schedule: the last one ran {} s ago, and one is due every {period} s.",
            (now - tick).num_seconds()
        )),
        None if workers.iter().any(|w| now - w.started_at > allowed) => Some(format!(
            "No sweep has run, though one is due every {period} s."
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(started_secs_ago: i64, now: DateTime<Utc>) -> WorkerReport {
        WorkerReport {
            name: "worker-a".into(),
            host: "h".into(),
            started_at: now - TimeDelta::seconds(started_secs_ago),
            jobs_done: 0,
            sweep_every_secs: 60,
        }
    }

    #[test]
    fn the_sweep_is_behind_after_two_periods_without_a_tick() {
        let now = Utc::now();
        let workers = [worker(600, now)];
        assert_eq!(
            sweep_warning(Some(now - TimeDelta::seconds(100)), &workers, now),
            None
        );
        assert!(sweep_warning(Some(now - TimeDelta::seconds(200)), &workers, now).is_some());
        assert!(sweep_warning(None, &workers, now).is_some());
        assert_eq!(
            sweep_warning(None, &[worker(10, now)], now),
            None,
            "just started"
        );
        assert_eq!(sweep_warning(None, &[], now), None);
    }
}
