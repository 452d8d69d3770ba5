//! How many streams the API replicas hold, through Redis, for the operator page's history:
//! each replica reports its count under its name in one hash, with the time it did, and
//! the worker taking a sample adds up the reports younger than [`REPORT_TTL`] (a replica
//! that died stops counting by itself, and its field is removed then).

use chrono::Utc;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

pub use crate::workers::REPORT_TTL;

fn counts_key(prefix: &str) -> String {
    format!("{prefix}:streams_open")
}

/// Stores that `replica` holds `open` streams now.
pub async fn report(
    conn: &mut ConnectionManager,
    prefix: &str,
    replica: &str,
    open: usize,
) -> redis::RedisResult<()> {
    let value = format!("{open} {}", Utc::now().timestamp());
    conn.hset(counts_key(prefix), replica, value).await
}

/// Removes the report of a replica stopping gracefully.
pub async fn withdraw(conn: &mut ConnectionManager, prefix: &str, replica: &str) {
    let _: redis::RedisResult<()> = conn.hdel(counts_key(prefix), replica).await;
}

/// The streams open on every replica that reported within [`REPORT_TTL`]; the reports of
/// the others are deleted.
pub async fn total(conn: &mut ConnectionManager, prefix: &str) -> redis::RedisResult<u64> {
    let key = counts_key(prefix);
    let reports: Vec<(String, String)> = conn.hgetall(&key).await?;
    let since = Utc::now().timestamp() - i64::try_from(REPORT_TTL.as_secs()).unwrap_or(30);
    let mut open = 0;
    let mut gone = Vec::new();
    for (replica, value) in reports {
        match parse(&value) {
            Some((count, at)) if at >= since => open += count,
            _ => gone.push(replica),
        }
    }
    if !gone.is_empty() {
        let _: () = conn.hdel(&key, gone).await?;
    }
    Ok(open)
}

/// A report's `count at` (unix seconds).
fn parse(value: &str) -> Option<(u64, i64)> {
    let (count, at) = value.split_once(' ')?;
    Some((count.parse().ok()?, at.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_report_reads_back_and_garbage_does_not() {
        assert_eq!(parse("12 1700000000"), Some((12, 1_700_000_000)));
        assert_eq!(parse("12"), None);
        assert_eq!(parse("x 1"), None);
    }
}
