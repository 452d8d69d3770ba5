//! The changes this replica received lately from its subscription, so that a reconnect
//! with `Last-Event-ID` inside them resumes from memory, without PostgreSQL. Pure state,
//! so its edges are tested here without a server.
//!
//! Changes arrive in revision order (one publisher at a time sends them so) and, while the
//! subscription holds, every one published arrives: so once a revision has arrived, every
//! later one is here or still on its way. The window therefore answers a resume from `R`
//! exactly when `R` is at or after the first revision it holds and at or before the last;
//! anything still on its way reaches the stream live, after what the window gave. The
//! window is emptied whenever the subscription is (re)established or lost (what was
//! published meanwhile never arrived), and is bounded by a count and by the resume reach.
//!
//! A replica that has heard nothing since it subscribed would know nothing, and send every
//! resume to PostgreSQL (a quiet deployment, or a replica just restarted when another's
//! clients storm it). So once subscribed it reads the greatest revision given so far and
//! is [`seeded`](RecentChanges::seed) with it: a revision is sent only after it is given,
//! so every revision given later arrives here, and a resume from that one on is answered
//! from memory.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use presence_model::feed::ResumeRefused;
use presence_model::ids::{Revision, UserId};
use presence_model::views::PublicStatus;

/// Recent changes, oldest first.
#[derive(Debug)]
pub(super) struct RecentChanges {
    capacity: usize,
    reach: Duration,
    /// (revision, when it arrived, the status after it).
    changes: VecDeque<(Revision, Instant, PublicStatus)>,
    /// Every revision after this one is held (or on its way); `None`: nothing is known
    /// since the subscription began.
    complete_after: Option<Revision>,
    /// The last revision that arrived since the subscription began (a seed never did).
    last_arrived: Option<Revision>,
    /// Counts the subscriptions: a seed read during an earlier one is not taken.
    subscription: u64,
}

impl RecentChanges {
    /// Holds at most `capacity` changes, none older than `reach`.
    pub fn new(capacity: usize, reach: Duration) -> Self {
        Self {
            capacity,
            reach,
            changes: VecDeque::new(),
            complete_after: None,
            last_arrived: None,
            subscription: 0,
        }
    }

    /// Forgets everything: the subscription began again or was lost, and what was
    /// published meanwhile never arrived.
    /// Returns the subscription now begun, for [`seed`](Self::seed).
    pub fn clear(&mut self) -> u64 {
        self.changes.clear();
        self.complete_after = None;
        self.last_arrived = None;
        self.subscription += 1;
        self.subscription
    }

    /// Every revision after `latest` arrives: it was the greatest given when read, after
    /// `subscription` was confirmed. Taken only if that subscription still holds and
    /// nothing has arrived in it yet (the first arrival already starts the window, and
    /// what came before it may have been evicted). Returns whether it was taken.
    pub fn seed(&mut self, subscription: u64, latest: Revision) -> bool {
        if subscription != self.subscription || self.complete_after.is_some() {
            return false;
        }
        self.complete_after = Some(latest);
        true
    }

    /// The last revision that arrived since the subscription began, if any: a snapshot
    /// from what this replica heard is as of it.
    pub fn last_arrived(&self) -> Option<Revision> {
        self.last_arrived
    }

    /// The last revision known since the subscription began (arrived, or the seed).
    pub fn last(&self) -> Option<Revision> {
        self.changes
            .back()
            .map(|(revision, _, _)| *revision)
            .or(self.complete_after)
    }

    /// Keeps a change that arrived at `now`; one at or below the last (sent again after a
    /// publisher died before marking it) is not kept twice. Returns whether it was new.
    pub fn push(&mut self, revision: Revision, status: PublicStatus, now: Instant) -> bool {
        match self.last() {
            Some(last) if revision <= last => return false,
            // The first since the subscription began: what came before it is unknown.
            None => self.complete_after = Some(revision),
            Some(_) => {}
        }
        self.changes.push_back((revision, now, status));
        self.last_arrived = Some(revision);
        self.evict(now);
        true
    }

    /// Drops what is past the count or older than the reach; the window then starts
    /// after the last dropped.
    fn evict(&mut self, now: Instant) {
        while let Some((revision, at, _)) = self.changes.front() {
            let too_many = self.changes.len() > self.capacity;
            let too_old = now.saturating_duration_since(*at) > self.reach;
            if !too_many && !too_old {
                break;
            }
            self.complete_after = Some(*revision);
            self.changes.pop_front();
        }
    }

    /// The changes after `after` to `ids` (everyone if `None`), in revision order, if the
    /// window reaches back to `after` and `after` is not past what arrived; `None`
    /// otherwise (the outbox answers). More than `max` changes: `TooMany`, as the outbox
    /// would say. It only reads (what is older than the reach is passed over, as
    /// eviction would drop it), so resumes run side by side, under a read lock, while
    /// changes go on arriving.
    pub fn since(
        &self,
        after: Revision,
        ids: Option<&[UserId]>,
        max: usize,
        now: Instant,
    ) -> Option<Result<Vec<(Revision, PublicStatus)>, ResumeRefused>> {
        // Arrival times only grow: the first change still inside the reach.
        let fresh = self
            .changes
            .partition_point(|(_, at, _)| now.saturating_duration_since(*at) > self.reach);
        let complete_after = match fresh {
            0 => self.complete_after?,
            n => self.changes[n - 1].0,
        };
        let last = self.last()?;
        if after < complete_after || after > last {
            return None;
        }
        let start = self
            .changes
            .partition_point(|(revision, _, _)| *revision <= after)
            .max(fresh);
        let watched =
            |status: &PublicStatus| ids.is_none_or(|ids| ids.binary_search(&status.id).is_ok());
        let mut found = Vec::new();
        for (revision, _, status) in self.changes.range(start..) {
            if watched(status) {
                if found.len() == max {
                    return Some(Err(ResumeRefused::TooMany));
                }
                found.push((*revision, status.clone()));
            }
        }
        Some(Ok(found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REACH: Duration = Duration::from_secs(60);

    /// Read from JSON, as subscribers read it: the fields not given are empty, so a field
    /// added to the status needs nothing here.
    fn status(id: i64) -> PublicStatus {
        serde_json::from_value(serde_json::json!({
            "id": id,
            "presence": "online",
            "online_status": "online",
        }))
        .unwrap()
    }

    fn revisions(found: &[(Revision, PublicStatus)]) -> Vec<i64> {
        found.iter().map(|(revision, _)| revision.0).collect()
    }

    /// A window holding revisions 10..=14 of users 1..=5, arrived at `now`.
    fn window(capacity: usize, now: Instant) -> RecentChanges {
        let mut recent = RecentChanges::new(capacity, REACH);
        for (revision, user) in (10..=14).zip(1..) {
            assert!(recent.push(Revision(revision), status(user), now));
        }
        recent
    }

    #[test]
    fn answers_from_its_first_revision_to_its_last_and_nothing_outside() {
        let now = Instant::now();
        let mut recent = window(100, now);
        let since = |recent: &mut RecentChanges, after| {
            recent
                .since(Revision(after), None, 100, now)
                .map(|found| revisions(&found.unwrap()))
        };
        // Before its first revision something may be missing: the outbox answers.
        assert_eq!(since(&mut recent, 9), None);
        assert_eq!(since(&mut recent, 10), Some(vec![11, 12, 13, 14]));
        assert_eq!(since(&mut recent, 13), Some(vec![14]));
        assert_eq!(since(&mut recent, 14), Some(vec![]));
        // Past what arrived here (the client heard it from a replica ahead of this one).
        assert_eq!(since(&mut recent, 15), None);
    }

    #[test]
    fn keeps_only_the_watched_users_and_refuses_past_the_most() {
        let now = Instant::now();
        let recent = window(100, now);
        let found = recent
            .since(Revision(10), Some(&[UserId(2), UserId(4)]), 100, now)
            .unwrap()
            .unwrap();
        assert_eq!(revisions(&found), [11, 13]);
        assert_eq!(
            recent.since(Revision(10), None, 3, now),
            Some(Err(ResumeRefused::TooMany))
        );
        assert_eq!(
            recent
                .since(Revision(10), None, 4, now)
                .unwrap()
                .unwrap()
                .len(),
            4
        );
    }

    #[test]
    fn a_repeat_is_kept_once_and_a_clear_forgets_everything() {
        let now = Instant::now();
        let mut recent = window(100, now);
        assert!(!recent.push(Revision(12), status(3), now));
        assert!(!recent.push(Revision(14), status(5), now));
        assert_eq!(recent.last(), Some(Revision(14)));
        recent.clear();
        assert_eq!(recent.last(), None);
        assert_eq!(recent.since(Revision(14), None, 100, now), None);
        // After a clear, the first change to arrive starts the window again.
        assert!(recent.push(Revision(20), status(1), now));
        assert_eq!(recent.since(Revision(19), None, 100, now), None);
        assert_eq!(recent.since(Revision(20), None, 100, now), Some(Ok(vec![])));
    }

    #[test]
    fn a_seed_answers_resumes_from_it_on_and_claims_no_arrival() {
        let now = Instant::now();
        let mut recent = RecentChanges::new(100, REACH);
        let subscription = recent.clear();
        assert!(recent.seed(subscription, Revision(30)));
        assert_eq!(recent.since(Revision(29), None, 100, now), None);
        assert_eq!(recent.since(Revision(30), None, 100, now), Some(Ok(vec![])));
        assert_eq!(recent.since(Revision(31), None, 100, now), None);
        // A snapshot from memory is not as of the seed: nothing arrived.
        assert_eq!(recent.last_arrived(), None);
        // Given before the seed was read, sent after the subscription: already had.
        assert!(!recent.push(Revision(30), status(1), now));
        assert!(recent.push(Revision(31), status(2), now));
        let found = recent.since(Revision(30), None, 100, now).unwrap().unwrap();
        assert_eq!(revisions(&found), [31]);
        assert_eq!(recent.last_arrived(), Some(Revision(31)));
    }

    #[test]
    fn a_seed_is_refused_once_a_change_arrived_or_the_subscription_changed() {
        let now = Instant::now();
        let mut recent = RecentChanges::new(100, REACH);
        let first = recent.clear();
        assert!(recent.push(Revision(40), status(1), now));
        assert!(!recent.seed(first, Revision(38)));
        assert_eq!(recent.since(Revision(38), None, 100, now), None);

        let second = recent.clear();
        let third = recent.clear();
        assert!(!recent.seed(second, Revision(41)));
        assert_eq!(recent.last(), None);
        assert!(recent.seed(third, Revision(41)));
        assert_eq!(recent.last(), Some(Revision(41)));
    }

    #[test]
    fn the_count_and_the_reach_bound_it_and_move_its_start() {
        let now = Instant::now();
        let recent = window(3, now);
        // 10 and 11 went: the window starts after 11.
        assert_eq!(recent.since(Revision(10), None, 100, now), None);
        let found = recent.since(Revision(11), None, 100, now).unwrap().unwrap();
        assert_eq!(revisions(&found), [12, 13, 14]);

        let later = now + REACH + Duration::from_millis(1);
        assert_eq!(recent.since(Revision(11), None, 100, later), None);
        // Everything aged out; the last revision is still known, and nothing follows it.
        assert_eq!(recent.last(), Some(Revision(14)));
        assert_eq!(
            recent.since(Revision(14), None, 100, later),
            Some(Ok(vec![]))
        );
    }
}
