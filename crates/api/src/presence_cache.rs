//! What this replica remembers of users (their account and presence facts), so that
//! `/me` and the status lookups are answered from memory, as exactly as PostgreSQL would
//! answer them.
//!
//! An entry holds the stored facts, never a shown presence: what a reader is shown is
//! computed from them at the time of the read (`ShownRow::from_facts`), so offline at the
//! window, away at the away timeout and a manual status at its end come at their moment
//! without any write. Every write of a user's row, by any replica or worker, is announced
//! by a trigger (migration `000012`) and heard by `crate::listener` within a poll (50 ms),
//! and the entry is forgotten; the replica that wrote forgets it at once (read your
//! writes). While the listener is not hearing (its connection lost, not yet caught up),
//! nothing is remembered and every read goes to PostgreSQL. A read from PostgreSQL is
//! remembered only if its user was not forgotten while it ran (it may predate that
//! write; [`crate::remembered`]).
//!
//! How stale an answer may be: a write on another replica is seen here within a poll of
//! the listener; `last_seen` is what is stored, which deferred activity refreshes every
//! flush (`LAST_SEEN_FLUSH_MS`), as reads from PostgreSQL always were. Memory: at most
//! `PRESENCE_CACHE_USERS` users (about 400 bytes each); past it the least used are
//! evicted and read from PostgreSQL when asked for again.
//!
//! A cold replica warms without a storm: what concurrent requests miss is read together
//! ([`crate::coalesced_reads`]), at most [`READS_IN_FLIGHT`] queries at a time of at most
//! [`READ_BATCH`] users each, a user missed by many requests once for all of them.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use presence_model::DbPool;
use presence_model::ids::UserId;
use presence_model::users::{self, UserRecord};
use presence_runtime::blocking::BlockingError;
use prometheus::{IntCounter, IntGauge};

use crate::coalesced_reads::{CoalescedReads, ReadFailed};
use crate::remembered::Remembered;

/// Queries reading missed users at once: a quarter of the default pool, so that misses
/// never take every connection from the writes.
pub const READS_IN_FLIGHT: usize = 4;
/// Users one query reads at most (ten bulk lookups' worth).
pub const READ_BATCH: usize = 5000;

/// One query for missed users, with what it found.
type RecordsRead =
    std::pin::Pin<Box<dyn Future<Output = Result<Vec<(UserId, Arc<UserRecord>)>, BlockingError>>>>;

/// The cache's counters, registered with the process's metrics.
#[derive(Clone)]
pub struct CacheMetrics {
    pub hits: IntCounter,
    pub misses: IntCounter,
    pub fallbacks: IntCounter,
    pub forgotten: IntCounter,
    pub hearing: IntGauge,
    /// Queries made for what was missed (each for many users, and many requests).
    pub reads: IntCounter,
}

pub struct PresenceCache {
    users: Arc<Remembered<Arc<UserRecord>>>,
    /// Whether every write is heard: entries are trusted only then.
    hearing: Arc<AtomicBool>,
    reads: CoalescedReads<UserId, Arc<UserRecord>, BlockingError>,
    metrics: CacheMetrics,
}

impl PresenceCache {
    /// Remembers at most `capacity` users; trusts nothing until told it hears every write.
    pub fn new(capacity: u64, metrics: CacheMetrics) -> Self {
        Self {
            users: Arc::new(Remembered::new(capacity)),
            hearing: Arc::new(AtomicBool::new(false)),
            reads: CoalescedReads::new(READS_IN_FLIGHT, READ_BATCH),
            metrics,
        }
    }

    /// Whether every write is heard from now on (the listener is caught up) or may be
    /// missed (its connection is lost). Either way what is remembered goes: it may
    /// predate a write that was missed.
    pub fn set_hearing(&self, hearing: bool) {
        if !hearing {
            self.hearing.store(false, Ordering::SeqCst);
        }
        self.forget_everyone();
        if hearing {
            self.hearing.store(true, Ordering::SeqCst);
        }
        self.metrics.hearing.set(i64::from(hearing));
    }

    /// These users' rows were written: what is remembered of them goes.
    pub fn forget(&self, ids: &[UserId]) {
        self.users.forget(ids);
        self.metrics.forgotten.inc_by(ids.len() as u64);
    }

    /// Forgets every user: writes may have gone unannounced to this replica's streams
    /// (their subscription began again).
    pub fn forget_everyone(&self) {
        self.users.forget_everyone();
    }

    /// The records of `ids` (unknown ids left out), from memory where held, the rest
    /// from PostgreSQL, read together with what concurrent requests miss.
    pub async fn records(
        &self,
        pool: &DbPool,
        ids: &[UserId],
    ) -> Result<HashMap<UserId, Arc<UserRecord>>, ReadFailed<BlockingError>> {
        let hearing = self.hearing.load(Ordering::SeqCst);
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        let mut asked = HashSet::with_capacity(ids.len());
        // An id asked twice is looked up once.
        for &id in ids.iter().filter(|id| asked.insert(**id)) {
            match self.users.get(id).filter(|_| hearing) {
                Some(record) => {
                    found.insert(id, record);
                }
                None => missing.push(id),
            }
        }
        self.metrics.hits.inc_by(found.len() as u64);
        if missing.is_empty() {
            return Ok(found);
        }
        let counter = if hearing {
            &self.metrics.misses
        } else {
            &self.metrics.fallbacks
        };
        counter.inc_by(missing.len() as u64);
        let read = self.reads.read(&missing, self.reader(pool)).await?;
        found.extend(read);
        Ok(found)
    }

    /// One query for `ids`: remembers each user it read if every write was heard
    /// throughout and that user was not forgotten while it ran (the read may predate the
    /// write).
    fn reader(&self, pool: &DbPool) -> impl Fn(Vec<UserId>) -> RecordsRead + 'static {
        let (users, hearing) = (self.users.clone(), self.hearing.clone());
        let (pool, queries) = (pool.clone(), self.metrics.reads.clone());
        move |ids| {
            let (users, hearing, pool) = (users.clone(), hearing.clone(), pool.clone());
            queries.inc();
            Box::pin(async move {
                let heard = hearing.load(Ordering::SeqCst);
                let start = users.read_starts();
                let read = presence_runtime::blocking::with_connection(&pool, move |conn| {
                    users::user_records(conn, &ids)
                })
                .await?;
                let remember = heard && hearing.load(Ordering::SeqCst);
                Ok(read
                    .into_iter()
                    .map(|record| {
                        let record = Arc::new(record);
                        if remember {
                            users.remember(start, record.facts.id, record.clone());
                        }
                        (record.facts.id, record)
                    })
                    .collect())
            })
        }
    }
}
