//! What one stream holds between batches: the latest status of each user that changed,
//! above what it already sent, and whether it owes its client a resync. Pure state, so
//! its rules (coalescing, the floor, giving up) are tested here without a server.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use presence_model::ids::{Revision, UserId};
use presence_model::views::PublicStatus;

/// Users' changes not yet sent to one stream.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// User id → (revision, status): the latest only.
    changes: HashMap<UserId, (Revision, PublicStatus)>,
    /// Changes up to this revision are already in what the stream sent.
    floor: Revision,
    /// What was held was dropped: the stream owes its client a new snapshot.
    resync: bool,
    /// When the oldest change held arrived.
    waiting_since: Option<Instant>,
}

/// A batch to send: each user's latest status once, in the order of their latest change,
/// and the revision of the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Batch {
    pub rev: Revision,
    pub changes: Vec<PublicStatus>,
}

impl Batch {
    /// The latest of each user among `changes` (revision, status); `None` if there are
    /// none.
    pub fn coalesce(changes: impl IntoIterator<Item = (Revision, PublicStatus)>) -> Option<Self> {
        let mut latest: HashMap<UserId, (Revision, PublicStatus)> = HashMap::new();
        for (revision, status) in changes {
            match latest.get(&status.id) {
                Some((held, _)) if *held > revision => {}
                _ => {
                    latest.insert(status.id, (revision, status));
                }
            }
        }
        let mut changes: Vec<(Revision, PublicStatus)> = latest.into_values().collect();
        changes.sort_unstable_by_key(|(revision, _)| *revision);
        let rev = changes.last()?.0;
        Some(Self {
            rev,
            changes: changes.into_iter().map(|(_, status)| status).collect(),
        })
    }
}

impl Pending {
    /// Holds a change for the next batch: a user's latest wins; one at or below what was
    /// sent, or arriving while a resync is owed, is dropped. Gives up on everything held
    /// (and owes a resync) when the oldest held change has waited longer than `stall` (the
    /// client reads nothing) or `cap` users are held; returns whether it gave up.
    pub fn offer(
        &mut self,
        revision: Revision,
        status: &PublicStatus,
        now: Instant,
        stall: Duration,
        cap: usize,
    ) -> bool {
        if revision <= self.floor || self.resync {
            return false;
        }
        let stalled = self
            .waiting_since
            .is_some_and(|since| now.saturating_duration_since(since) > stall);
        if stalled || self.changes.len() >= cap {
            self.demand_resync();
            return true;
        }
        let entry = self
            .changes
            .entry(status.id)
            .or_insert_with(|| (revision, status.clone()));
        if revision >= entry.0 {
            *entry = (revision, status.clone());
        }
        self.waiting_since.get_or_insert(now);
        false
    }

    /// Drops everything held: the stream owes its client a resync and a snapshot.
    pub fn demand_resync(&mut self) {
        self.changes = HashMap::new();
        self.waiting_since = None;
        self.resync = true;
    }

    /// Whether a resync is owed, forgetting it (the caller sends it now).
    pub fn take_resync(&mut self) -> bool {
        std::mem::take(&mut self.resync)
    }

    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Everything up to `floor` has been sent (a snapshot or resume as of it): drops it.
    pub fn settle(&mut self, floor: Revision) {
        self.floor = self.floor.max(floor);
        self.changes.retain(|_, (revision, _)| *revision > floor);
        if self.changes.is_empty() {
            self.waiting_since = None;
        }
    }

    /// The batch to send now, if anything is held; what follows must be above it.
    pub fn take_batch(&mut self) -> Option<Batch> {
        self.waiting_since = None;
        let batch = Batch::coalesce(std::mem::take(&mut self.changes).into_values())?;
        self.floor = self.floor.max(batch.rev);
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use presence_model::vocabulary::Presence;

    use super::*;

    const STALL: Duration = Duration::from_millis(300);

    /// Read from JSON, as subscribers read it: the fields not given are empty, so a field
    /// added to the status needs nothing here.
    fn status(id: i64, presence: Presence) -> PublicStatus {
        serde_json::from_value(serde_json::json!({
            "id": id,
            "presence": presence,
            "online_status": presence.online_status(),
        }))
        .unwrap()
    }

    fn ids_and_presence(batch: &Batch) -> Vec<(i64, Presence)> {
        batch.changes.iter().map(|s| (s.id.0, s.presence)).collect()
    }

    #[test]
    fn a_batch_holds_each_users_latest_in_the_order_of_their_latest_change() {
        let mut pending = Pending::default();
        let now = Instant::now();
        for (revision, id, presence) in [
            (1, 7, Presence::Online),
            (2, 8, Presence::Online),
            (3, 7, Presence::Away),
            (4, 9, Presence::Dnd),
        ] {
            assert!(!pending.offer(Revision(revision), &status(id, presence), now, STALL, 100));
        }
        let batch = pending.take_batch().unwrap();
        assert_eq!(batch.rev, Revision(4));
        assert_eq!(
            ids_and_presence(&batch),
            [
                (8, Presence::Online),
                (7, Presence::Away),
                (9, Presence::Dnd)
            ]
        );
        assert!(pending.take_batch().is_none(), "taken once");
        // What was sent is the floor: a late copy of revision 3 is not sent again.
        assert!(!pending.offer(Revision(3), &status(7, Presence::Away), now, STALL, 100));
        assert!(!pending.has_changes());
    }

    #[test]
    fn an_older_revision_arriving_late_never_replaces_a_newer_one() {
        let mut pending = Pending::default();
        let now = Instant::now();
        pending.offer(Revision(5), &status(7, Presence::Dnd), now, STALL, 100);
        pending.offer(Revision(4), &status(7, Presence::Online), now, STALL, 100);
        let batch = pending.take_batch().unwrap();
        assert_eq!(
            (batch.rev, ids_and_presence(&batch)),
            (Revision(5), vec![(7, Presence::Dnd)])
        );
    }

    #[test]
    fn a_snapshot_settles_what_it_already_holds() {
        let mut pending = Pending::default();
        let now = Instant::now();
        pending.offer(Revision(1), &status(7, Presence::Online), now, STALL, 100);
        pending.offer(Revision(2), &status(8, Presence::Online), now, STALL, 100);
        pending.settle(Revision(1));
        let batch = pending.take_batch().unwrap();
        assert_eq!(ids_and_presence(&batch), [(8, Presence::Online)]);
    }

    #[test]
    fn a_stalled_client_or_too_many_users_makes_it_give_up_and_owe_a_resync() {
        let mut pending = Pending::default();
        let start = Instant::now();
        assert!(!pending.offer(Revision(1), &status(7, Presence::Online), start, STALL, 100));
        // The oldest held change waited past the stall: everything is dropped.
        let late = start + STALL + Duration::from_millis(1);
        assert!(pending.offer(Revision(2), &status(8, Presence::Online), late, STALL, 100));
        assert!(!pending.has_changes());
        // Nothing is held while the resync is owed; once sent, changes are held again.
        assert!(!pending.offer(Revision(3), &status(9, Presence::Online), late, STALL, 100));
        assert!(!pending.has_changes());
        assert!(pending.take_resync());
        assert!(!pending.take_resync(), "owed once");
        assert!(!pending.offer(Revision(4), &status(9, Presence::Online), late, STALL, 100));
        assert!(pending.has_changes());
        // At the cap of users held, the next change gives up too.
        let mut capped = Pending::default();
        assert!(!capped.offer(Revision(1), &status(1, Presence::Online), start, STALL, 2));
        assert!(!capped.offer(Revision(2), &status(2, Presence::Online), start, STALL, 2));
        assert!(capped.offer(Revision(3), &status(3, Presence::Online), start, STALL, 2));
    }

    #[test]
    fn resuming_coalesces_like_a_batch() {
        let batch = Batch::coalesce([
            (Revision(10), status(1, Presence::Online)),
            (Revision(11), status(2, Presence::Away)),
            (Revision(12), status(1, Presence::Offline)),
        ])
        .unwrap();
        assert_eq!(batch.rev, Revision(12));
        assert_eq!(
            ids_and_presence(&batch),
            [(2, Presence::Away), (1, Presence::Offline)]
        );
        assert!(Batch::coalesce([]).is_none());
    }
}
