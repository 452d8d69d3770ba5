//! Job payloads and the Redis names the binaries share: plain serde types and strings.
//! The queue itself (apalis over Redis) is the binaries' business.

use serde::{Deserialize, Serialize};

/// Queue and channel names are `<prefix>:<name>`, so deployments (and tests) sharing one
/// Redis stay apart. The default prefix, `presence`, gives the channel `presence:changes`.
pub const DEFAULT_REDIS_PREFIX: &str = "presence";

/// The pub/sub channel each recorded transition is published on, as JSON.
pub fn presence_changes_channel(prefix: &str) -> String {
    format!("{prefix}:changes")
}

/// The pub/sub channel of publish nudges: after a commit that recorded transitions, a
/// process asks every worker to publish what is unpublished now rather than at its next
/// catch-up. A nudge carries nothing and is stored nowhere (the transitions are rows in
/// the outbox): nudges coalesce in each worker, and a lost one only delays.
pub fn publish_nudges_channel(prefix: &str) -> String {
    format!("{prefix}:publish-nudges")
}

/// The queue of [`EndStatuses`] jobs.
pub fn expiry_queue(prefix: &str) -> String {
    format!("{prefix}:expiry")
}

/// Scheduled for the second `at` (a whole second) in which manual statuses (`until`) or
/// custom statuses (`text_expires_at`) end: end each at its moment within that second,
/// and record what others are shown change. It carries only the second: the statuses are
/// rows, so one job serves every end in it, and a second run (or the sweep, which ends
/// overdue statuses too) finds nothing left to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndStatuses {
    pub at: chrono::DateTime<chrono::Utc>,
}

impl EndStatuses {
    /// The job for the second `end` falls in.
    pub fn for_end(end: chrono::DateTime<chrono::Utc>) -> Self {
        use chrono::DurationRound;
        Self {
            at: end
                .duration_trunc(chrono::TimeDelta::seconds(1))
                .unwrap_or(end),
        }
    }

    /// One job per second: queuing the same second again adds nothing.
    pub fn job_id(&self) -> String {
        format!("end-{}", self.at.timestamp())
    }
}

/// How far ahead ends are queued as jobs: an end further away is queued by a sweep once it
/// comes this near (each sweep queues the ends of the next `SCHEDULE_AHEAD`), so the queue
/// holds at most one job per second of this horizon, whatever users set.
pub const SCHEDULE_AHEAD: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
