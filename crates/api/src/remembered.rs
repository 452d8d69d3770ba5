//! The users a replica remembers, and when each was last forgotten: a read from
//! PostgreSQL is remembered only if its user was not forgotten while it ran (the write
//! that made them forgotten may be newer than what it read), whatever happened to other
//! users meanwhile. A replica hears thousands of writes a second at scale; a rule of "not
//! if anyone was forgotten" would leave a cold cache cold.
//!
//! When a user was last forgotten is kept per stripe of users ([`STRIPES`] of them, a
//! generation each), not per user, so it costs a fixed 256 KiB: a read overlapping the
//! forgetting of another user of its stripe is not remembered either, which costs a miss,
//! never an answer. Forgetting and remembering a user take its stripe's lock, so a
//! remembered read never outlives the forgetting of its user.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use moka::sync::Cache;
use presence_model::ids::UserId;

/// Stripes of users sharing one "last forgotten" generation.
pub const STRIPES: usize = 16_384;

pub struct Remembered<V> {
    users: Cache<UserId, V>,
    /// Counts forgettings; each is numbered by it.
    generation: AtomicU64,
    /// The generation at which everyone was last forgotten.
    everyone_forgotten: AtomicU64,
    /// Per stripe, the generation at which one of its users was last forgotten.
    stripes: Box<[Mutex<u64>]>,
}

/// When a read began: the generation then.
#[derive(Debug, Clone, Copy)]
pub struct ReadStart(u64);

impl<V: Clone + Send + Sync + 'static> Remembered<V> {
    /// Remembers at most `capacity` users, evicting the least used past it.
    pub fn new(capacity: u64) -> Self {
        Self {
            users: Cache::builder().max_capacity(capacity).build(),
            generation: AtomicU64::new(0),
            everyone_forgotten: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| Mutex::new(0)).collect(),
        }
    }

    fn stripe(&self, id: UserId) -> &Mutex<u64> {
        &self.stripes[id.0.unsigned_abs() as usize % STRIPES]
    }

    pub fn get(&self, id: UserId) -> Option<V> {
        self.users.get(&id)
    }

    /// These users' rows were written: what is remembered of them goes, and so does any
    /// read of them running now.
    pub fn forget(&self, ids: &[UserId]) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        for &id in ids {
            let mut forgotten = self.stripe(id).lock().expect("stripe lock");
            *forgotten = generation;
            self.users.invalidate(&id);
        }
    }

    /// Every user's row may have been written unheard.
    pub fn forget_everyone(&self) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.everyone_forgotten.store(generation, Ordering::SeqCst);
        self.users.invalidate_all();
    }

    /// Taken before a read is sent.
    pub fn read_starts(&self) -> ReadStart {
        ReadStart(self.generation.load(Ordering::SeqCst))
    }

    /// Remembers `value` of `id`, read by a query sent at `start`, unless `id` (or
    /// everyone) was forgotten since; returns whether it did.
    pub fn remember(&self, start: ReadStart, id: UserId, value: V) -> bool {
        let forgotten = self.stripe(id).lock().expect("stripe lock");
        if *forgotten > start.0 || self.everyone_forgotten.load(Ordering::SeqCst) > start.0 {
            return false;
        }
        self.users.insert(id, value);
        drop(forgotten);
        // Everyone forgotten meanwhile: `invalidate_all` may have run before the insert.
        if self.everyone_forgotten.load(Ordering::SeqCst) > start.0 {
            self.users.invalidate(&id);
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_is_remembered_unless_its_user_was_forgotten_while_it_ran() {
        let remembered = Remembered::<u32>::new(100);
        let start = remembered.read_starts();
        remembered.forget(&[UserId(2)]);
        assert!(
            remembered.remember(start, UserId(1), 10),
            "another user's write"
        );
        assert!(
            !remembered.remember(start, UserId(2), 20),
            "its own: the read may be older"
        );
        assert_eq!(remembered.get(UserId(1)), Some(10));
        assert_eq!(remembered.get(UserId(2)), None);

        // A read sent after the forgetting is remembered.
        let later = remembered.read_starts();
        assert!(remembered.remember(later, UserId(2), 21));
        remembered.forget(&[UserId(2)]);
        assert_eq!(remembered.get(UserId(2)), None, "forgotten again");

        let start = remembered.read_starts();
        remembered.forget_everyone();
        assert_eq!(remembered.get(UserId(1)), None);
        assert!(!remembered.remember(start, UserId(3), 30));
        assert!(remembered.remember(remembered.read_starts(), UserId(3), 31));
    }

    #[test]
    fn users_of_one_stripe_share_when_they_were_forgotten() {
        let remembered = Remembered::<u32>::new(100);
        let start = remembered.read_starts();
        remembered.forget(&[UserId(5)]);
        let neighbour = UserId(5 + STRIPES as i64);
        assert!(
            !remembered.remember(start, neighbour, 1),
            "a miss, never an answer"
        );
    }

    #[test]
    fn racing_forgettings_never_leave_a_stale_entry() {
        // Reads of one user racing its forgetting, over many trials: once both are done,
        // an entry read before the forgetting is never there.
        let remembered = std::sync::Arc::new(Remembered::<u64>::new(100));
        for trial in 0..2000u64 {
            let start = remembered.read_starts();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let (r, b) = (remembered.clone(), barrier.clone());
            let forgetter = std::thread::spawn(move || {
                b.wait();
                r.forget(&[UserId(7)]);
            });
            barrier.wait();
            remembered.remember(start, UserId(7), trial);
            forgetter.join().unwrap();
            assert_eq!(remembered.get(UserId(7)), None, "trial {trial}");
        }
    }
}
