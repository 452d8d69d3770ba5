//! This replica's count of open streams, reported to Redis for the operator page's history
//! (`presence_runtime::stream_counts`): at once when it changes (checked every
//! [`CHECK_EVERY`]), and at least every [`REPORT_EVERY`] so that it stays counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_runtime::redis_conn::LazyRedis;
use presence_runtime::stream_counts;

use super::StreamHub;

/// How often the count is looked at: the sample a sweep tick takes is this old at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A count unchanged this long is reported again, well inside the report's lifetime.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Reports `hub`'s open streams as `replica` until the process stops.
pub async fn report_open_streams(
    hub: Arc<StreamHub>,
    redis: LazyRedis,
    prefix: String,
    replica: String,
) {
    let mut ticker = tokio::time::interval(CHECK_EVERY);
    let mut reported: Option<(usize, Instant)> = None;
    loop {
        ticker.tick().await;
        let open = hub.open();
        if reported.is_some_and(|(count, at)| count == open && at.elapsed() < REPORT_EVERY) {
            continue;
        }
        let sent = redis
            .run(|mut conn| {
                let (prefix, replica) = (&prefix, &replica);
                async move { stream_counts::report(&mut conn, prefix, replica, open).await }
            })
            .await;
        match sent {
            Ok(()) => reported = Some((open, Instant::now())),
            Err(e) => log::debug!("could not report the open streams: {e}"),
        }
    }
}

/// Removes this replica's report: it holds no stream any more.
pub async fn withdraw(redis: &LazyRedis, prefix: &str, replica: &str) {
    let _ = redis
        .run(|mut conn| async move {
            stream_counts::withdraw(&mut conn, prefix, replica).await;
            Ok(())
        })
        .await;
}
