//! Job payloads and the Redis names the binaries share: plain serde types and strings.
//! The queue itself (apalis over Redis) is the binaries' business.

use serde::{Deserialize, Serialize};

/// Queue and channel names are `<prefix>:<name>`, so deployments (and tests) sharing one
/// Redis stay apart. The default prefix, `presence`, gives the channel `presence:changes`.
pub const DEFAULT_REDIS_PREFIX: &str = "presence";

/// The queue of [`PublishPending`] jobs.
pub fn publish_queue(prefix: &str) -> String {
    format!("{prefix}:publish")
}

/// The pub/sub channel each recorded transition is published on, as JSON.
pub fn presence_changes_channel(prefix: &str) -> String {
    format!("{prefix}:changes")
}

/// A nudge to the worker, queued after a commit that recorded transitions: publish what
/// is unpublished now rather than at the next catch-up. It carries nothing, because the
/// transitions themselves are rows in the outbox; a lost nudge only delays them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishPending {}

/// The queue of [`EndStatuses`] jobs.
pub fn expiry_queue(prefix: &str) -> String {
    format!("{prefix}:expiry")
}

/// Scheduled for the moment `at` a manual status (`until`) or a custom status
/// (`text_expires_at`) ends: end whatever is due then, and record what others are shown
/// change. It carries only the time: the statuses are rows, and a second run (or the
/// sweep, which ends overdue statuses too) finds nothing left to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndStatuses {
    pub at: chrono::DateTime<chrono::Utc>,
}
