//! Reads of what the presence cache is missing, coalesced: a cold replica (just started,
//! or just caught up after its `LISTEN` connection came back) that thousands of clients
//! ask at once must not send PostgreSQL a query per request.
//!
//! Keys missed by concurrent callers wait in one queue; at most [`CoalescedReads::new`]'s
//! `most_in_flight` reads run at a time, each taking up to `batch` of the queued keys
//! (a key asked by many callers is read once for all of them). A caller's keys are read by
//! a query that starts after they were queued, so an answer is never older than the
//! request: read-your-writes holds as it does without coalescing. The reads run on tasks
//! of their own, so a caller that goes away (its client hung up) takes no one else's
//! answer with it.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// What a waiting caller is sent: the key's value (`None`: there is no such key), or the
/// failure of the read that had it.
type Answer<V, E> = Result<Option<V>, Arc<E>>;

/// Why a caller got no values.
#[derive(Debug)]
pub enum ReadFailed<E> {
    /// The read that had its keys failed (every caller waiting for them is told so).
    Failed(Arc<E>),
    /// The read's task ended without an answer (it panicked, or the runtime is stopping):
    /// never taken for "no such key".
    Abandoned,
}
/// Everyone waiting for one key.
type Waiters<V, E> = Vec<oneshot::Sender<Answer<V, E>>>;

struct Queue<K, V, E> {
    /// The keys waiting for the next read, with everyone waiting for each.
    waiting: HashMap<K, Waiters<V, E>>,
    /// Reads running now.
    in_flight: usize,
}

pub struct CoalescedReads<K, V, E> {
    queue: Arc<Mutex<Queue<K, V, E>>>,
    most_in_flight: usize,
    batch: usize,
}

impl<K, V, E> CoalescedReads<K, V, E>
where
    K: Hash + Eq + Clone + 'static,
    V: Clone + 'static,
    E: 'static,
{
    /// At most `most_in_flight` reads at a time, of at most `batch` keys each.
    pub fn new(most_in_flight: usize, batch: usize) -> Self {
        Self {
            queue: Arc::new(Mutex::new(Queue {
                waiting: HashMap::new(),
                in_flight: 0,
            })),
            most_in_flight: most_in_flight.max(1),
            batch: batch.max(1),
        }
    }

    /// The values of `keys` (each asked once; absent keys left out), read by `read`, which
    /// is given at most a batch of keys and returns the values it found.
    pub async fn read<F, Fut>(&self, keys: &[K], read: F) -> Result<HashMap<K, V>, ReadFailed<E>>
    where
        F: Fn(Vec<K>) -> Fut + 'static,
        Fut: Future<Output = Result<Vec<(K, V)>, E>> + 'static,
    {
        let mut answers = Vec::with_capacity(keys.len());
        let start_a_read = {
            let mut queue = lock(&self.queue);
            for key in keys {
                let (sender, receiver) = oneshot::channel();
                queue.waiting.entry(key.clone()).or_default().push(sender);
                answers.push((key.clone(), receiver));
            }
            let start = queue.in_flight < self.most_in_flight;
            if start {
                queue.in_flight += 1;
            }
            start
        };
        if start_a_read {
            actix_web::rt::spawn(drain(self.queue.clone(), self.batch, read));
        }
        let mut found = HashMap::with_capacity(answers.len());
        for (key, answer) in answers {
            let answer = answer.await.map_err(|_| ReadFailed::Abandoned)?;
            if let Some(value) = answer.map_err(ReadFailed::Failed)? {
                found.insert(key, value);
            }
        }
        Ok(found)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running read's place: given back when its task ends without finishing (a panic, the
/// runtime stopping). If it was the last read running, the keys still waiting would wait
/// forever: their callers are told the read was abandoned.
struct Running<'a, K, V, E> {
    queue: &'a Mutex<Queue<K, V, E>>,
    finished: bool,
}

impl<K, V, E> Drop for Running<'_, K, V, E> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut queue = lock(self.queue);
        queue.in_flight -= 1;
        if queue.in_flight == 0 {
            queue.waiting.clear();
        }
    }
}

/// One of the running reads: takes a batch of the waiting keys and answers everyone
/// waiting for them, until nothing waits.
async fn drain<K, V, E, F, Fut>(queue: Arc<Mutex<Queue<K, V, E>>>, batch: usize, read: F)
where
    K: Hash + Eq + Clone,
    V: Clone,
    F: Fn(Vec<K>) -> Fut,
    Fut: Future<Output = Result<Vec<(K, V)>, E>>,
{
    let mut running = Running {
        queue: &queue,
        finished: false,
    };
    loop {
        let taken: Vec<(K, Waiters<V, E>)> = {
            let mut queue = lock(running.queue);
            if queue.waiting.is_empty() {
                // Given back under the lock that saw nothing waiting: a caller queuing
                // after it sees a place free and starts a read.
                queue.in_flight -= 1;
                running.finished = true;
                return;
            }
            let keys: Vec<K> = queue.waiting.keys().take(batch).cloned().collect();
            keys.into_iter()
                .filter_map(|key| queue.waiting.remove_entry(&key))
                .collect()
        };
        let keys = taken.iter().map(|(key, _)| key.clone()).collect();
        match read(keys).await {
            Ok(values) => {
                let mut values: HashMap<K, V> = values.into_iter().collect();
                for (key, waiters) in taken {
                    let value = values.remove(&key);
                    for waiter in waiters {
                        let _ = waiter.send(Ok(value.clone()));
                    }
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for waiter in taken.into_iter().flat_map(|(_, waiters)| waiters) {
                    let _ = waiter.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    type Read = std::pin::Pin<Box<dyn Future<Output = Result<Vec<(u32, u32)>, String>>>>;

    /// A read that counts its calls and keys, and waits until released, so that callers
    /// pile up behind it.
    struct Store {
        reads: AtomicUsize,
        keys_read: AtomicUsize,
        running: AtomicUsize,
        most_running: AtomicUsize,
        gate: tokio::sync::Semaphore,
    }

    impl Store {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                reads: AtomicUsize::new(0),
                keys_read: AtomicUsize::new(0),
                running: AtomicUsize::new(0),
                most_running: AtomicUsize::new(0),
                gate: tokio::sync::Semaphore::new(0),
            })
        }

        fn reader(self: &Arc<Self>) -> impl Fn(Vec<u32>) -> Read + 'static {
            let store = self.clone();
            move |keys: Vec<u32>| {
                let store = store.clone();
                Box::pin(async move {
                    store.reads.fetch_add(1, Ordering::SeqCst);
                    store.keys_read.fetch_add(keys.len(), Ordering::SeqCst);
                    let now = store.running.fetch_add(1, Ordering::SeqCst) + 1;
                    store.most_running.fetch_max(now, Ordering::SeqCst);
                    store.gate.acquire().await.expect("gate").forget();
                    store.running.fetch_sub(1, Ordering::SeqCst);
                    // Even keys exist, with the value twice the key; odd ones do not.
                    Ok(keys
                        .into_iter()
                        .filter(|k| k % 2 == 0)
                        .map(|k| (k, k * 2))
                        .collect())
                })
            }
        }
    }

    #[actix_web::test]
    async fn a_hundred_callers_missing_the_same_keys_make_a_few_reads() {
        let store = Store::new();
        let reads = Arc::new(CoalescedReads::<u32, u32, String>::new(2, 1000));
        let keys: Vec<u32> = (0..500).collect();
        let callers: Vec<_> = (0..100)
            .map(|_| {
                let (reads, keys, reader) = (reads.clone(), keys.clone(), store.reader());
                actix_web::rt::spawn(async move { reads.read(&keys, reader).await })
            })
            .collect();
        // Every caller has queued (they run on this thread as soon as it yields).
        tokio::time::sleep(Duration::from_millis(50)).await;
        store.gate.add_permits(1000);
        for caller in callers {
            let found = caller.await.unwrap().unwrap();
            assert_eq!(found.len(), 250);
            assert!(found.iter().all(|(k, v)| k % 2 == 0 && *v == k * 2));
        }
        let reads_made = store.reads.load(Ordering::SeqCst);
        assert!(reads_made <= 2, "{reads_made} reads for 100 callers");
        assert_eq!(
            store.keys_read.load(Ordering::SeqCst),
            500,
            "each key read once"
        );
        assert!(store.most_running.load(Ordering::SeqCst) <= 2);
    }

    #[actix_web::test]
    async fn keys_are_read_in_batches_by_at_most_so_many_reads_at_once() {
        let store = Store::new();
        let reads = Arc::new(CoalescedReads::<u32, u32, String>::new(3, 10));
        let callers: Vec<_> = (0..20u32)
            .map(|n| {
                let (reads, reader) = (reads.clone(), store.reader());
                actix_web::rt::spawn(async move {
                    let keys: Vec<u32> = (n * 10..n * 10 + 10).collect();
                    reads.read(&keys, reader).await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        store.gate.add_permits(1000);
        for caller in callers {
            assert_eq!(caller.await.unwrap().unwrap().len(), 5);
        }
        assert_eq!(store.keys_read.load(Ordering::SeqCst), 200);
        assert_eq!(store.reads.load(Ordering::SeqCst), 20, "batches of 10");
        assert_eq!(store.most_running.load(Ordering::SeqCst), 3);
    }

    #[actix_web::test]
    async fn a_failed_read_fails_its_callers_only_and_a_caller_gone_takes_nothing_with_it() {
        let reads = Arc::new(CoalescedReads::<u32, u32, String>::new(1, 100));
        let failing = |_: Vec<u32>| async { Err::<Vec<(u32, u32)>, _>("down".to_owned()) };
        match reads.read(&[1, 2], failing).await {
            Err(ReadFailed::Failed(e)) => assert_eq!(*e, "down"),
            other => panic!("{other:?}"),
        }

        let store = Store::new();
        let gone = {
            let (reads, reader) = (reads.clone(), store.reader());
            actix_web::rt::spawn(async move { reads.read(&[4], reader).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        gone.abort();
        let waiting = {
            let (reads, reader) = (reads.clone(), store.reader());
            actix_web::rt::spawn(async move { reads.read(&[4, 6], reader).await })
        };
        store.gate.add_permits(10);
        let found = waiting.await.unwrap().unwrap();
        assert_eq!(found, HashMap::from([(4, 8), (6, 12)]));
    }

    #[actix_web::test]
    async fn a_read_that_dies_is_an_error_for_its_callers_and_frees_its_place() {
        let reads = Arc::new(CoalescedReads::<u32, u32, String>::new(1, 100));
        let dying = |_: Vec<u32>| async { panic!("the read dies") };
        assert!(matches!(
            reads.read(&[2], dying).await,
            Err(ReadFailed::Abandoned)
        ));
        // The only place is free again: the next read runs.
        let store = Store::new();
        store.gate.add_permits(1);
        let found = reads.read(&[2, 3], store.reader()).await.unwrap();
        assert_eq!(found, HashMap::from([(2, 4)]));
    }
}
