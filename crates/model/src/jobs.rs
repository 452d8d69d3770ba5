//! Job payloads: plain serde types shared by the API, which enqueues them, and the worker,
//! which runs them. The queue itself (apalis over Redis) is the binaries' business.

use chrono::{DateTime, Utc};
use diesel::Queryable;
use serde::{Deserialize, Serialize};

use crate::OnlineStatus;

/// Queue and channel names are `<prefix>:<name>`, so deployments (and tests) sharing one
/// Redis stay apart. The default prefix, `presence`, gives the channel `presence:changes`.
pub const DEFAULT_REDIS_PREFIX: &str = "presence";

/// The queue of [`PresenceChanges`] jobs.
pub fn presence_changes_queue(prefix: &str) -> String {
    format!("{prefix}:presence-changes")
}

/// The pub/sub channel each recorded transition is published on, as JSON.
pub fn presence_changes_channel(prefix: &str) -> String {
    format!("{prefix}:changes")
}

/// The pub/sub channel on which API replicas announce revoked sessions (by token hash),
/// so that every replica drops them from its session cache at once.
pub fn revocations_channel(prefix: &str) -> String {
    format!("{prefix}:revoked")
}

/// The most transitions one job carries: the sweep after an outage can take thousands of
/// users offline at once, and they travel as a few jobs, not thousands.
pub const MAX_CHANGES_PER_JOB: usize = 5000;

crate::text_enum::text_enum! {
    /// What caused a transition.
    pub enum ChangeReason {
        Login = "login",
        Logout = "logout",
        Heartbeat = "heartbeat",
        Activity = "activity",
        Sweep = "sweep",
    }
}

/// One user's online status changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Queryable)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PresenceChanged {
    pub user_id: i64,
    pub from: OnlineStatus,
    pub to: OnlineStatus,
    pub at: DateTime<Utc>,
    pub reason: ChangeReason,
}

/// A job on the presence-changes queue: transitions in the order they happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PresenceChanges(pub Vec<PresenceChanged>);

impl PresenceChanges {
    /// Splits `changes` into jobs of at most [`MAX_CHANGES_PER_JOB`].
    pub fn batched(changes: Vec<PresenceChanged>) -> Vec<Self> {
        changes
            .chunks(MAX_CHANGES_PER_JOB)
            .map(|chunk| Self(chunk.to_vec()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_the_worker_and_subscribers_expect() {
        let change = PresenceChanged {
            user_id: 7,
            from: OnlineStatus::Offline,
            to: OnlineStatus::Online,
            at: DateTime::parse_from_rfc3339("2024-01-15T10:30:45.123456Z")
                .unwrap()
                .into(),
            reason: ChangeReason::Login,
        };
        let json = serde_json::to_value(PresenceChanges(vec![change.clone()])).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{
                "user_id": 7, "from": "offline", "to": "online",
                "at": "2024-01-15T10:30:45.123456Z", "reason": "login"
            }])
        );
        let back: PresenceChanges = serde_json::from_value(json).unwrap();
        assert_eq!(back.0, vec![change]);
    }

    #[test]
    fn batches_are_bounded() {
        let change = |user_id| PresenceChanged {
            user_id,
            from: OnlineStatus::Online,
            to: OnlineStatus::Offline,
            at: Utc::now(),
            reason: ChangeReason::Sweep,
        };
        let jobs = PresenceChanges::batched((0..12_001).map(change).collect());
        let sizes: Vec<_> = jobs.iter().map(|job| job.0.len()).collect();
        assert_eq!(sizes, [5000, 5000, 2001]);
        assert_eq!(jobs[2].0.last().unwrap().user_id, 12_000);
        assert!(PresenceChanges::batched(Vec::new()).is_empty());
    }
}
