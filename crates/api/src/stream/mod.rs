//! Live presence over server-sent events: one Redis subscription per process, fanned out in
//! memory to the streams that asked for each user.
//!
//! - A stream starts from a snapshot (the statuses and the revision they are as of), or,
//!   given `Last-Event-ID: R`, from exactly the changes published after `R`. It registers
//!   for live changes *before* reading either, and drops what it then receives twice
//!   (by revision), so nothing is missed and nothing is sent twice.
//! - Both are served from memory while the subscription holds: a resume from the changes
//!   this replica received lately (`recent`, `STREAM_RESUME_WINDOW` of them), a snapshot
//!   of watched users from the presence cache as of the last revision received (every
//!   change up to it made the cache forget its user first, so the cache is never older
//!   than the revision). A resume from before the window, or past what arrived here, is
//!   read from the outbox in PostgreSQL (where every revision seen on Redis is already
//!   committed), and so is every start while the subscription is down and an admin's
//!   snapshot of everyone.
//! - Each stream keeps only the latest status of each user not yet sent (presence is
//!   state, so coalescing loses nothing) and sends at most one batch per
//!   `STREAM_BATCH_MS`; a change after a quiet interval goes out at once. What a stream
//!   holds is bounded by the users it watches; a stream that has taken nothing for
//!   `STREAM_STALL_MS` (its client stopped reading) drops what it holds and gets `resync`
//!   and a new snapshot when it reads again: never a silent gap.
//! - Every stream carries what everyone but admins and the user is shown (the published
//!   view), so it never tells an invisible user from an offline one.
//! - Streams end at once when the process is told to stop; clients reconnect elsewhere.

pub mod counts;
mod pending;
mod recent;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web;
use actix_web::web::Bytes;
use chrono::TimeDelta;
use futures_util::StreamExt;
use presence_model::events::Transition;
use presence_model::feed::{self, ResumeRefused};
use presence_model::shown::ShownRow;
use presence_model::views::PublicStatus;
use presence_runtime::redis_conn::{Followed, follow_channel};
use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::errors::ApiError;
use crate::state::{AppState, db};
use pending::{Batch, Pending};
use presence_model::ids::{Revision, UserId};
use recent::RecentChanges;

/// The most users an admin's stream of everyone may hold unsent before it is resynced.
const MAX_PENDING_ALL: usize = 10_000;
/// The most changes a resume replays; past that, a snapshot is smaller.
const MAX_RESUME_CHANGES: usize = 10_000;
/// File descriptors kept for everything but streams (the pool, Redis, logs, listeners).
const RESERVED_FILES: usize = 512;

/// How streams behave, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    pub batch: Duration,
    pub keepalive: Duration,
    pub stall: Duration,
    pub resume_reach: TimeDelta,
    /// The most recent changes kept in memory to resume from.
    pub resume_window: usize,
    pub per_user: usize,
    pub per_process: usize,
}

/// The streams' counters, registered with the process's metrics.
#[derive(Clone)]
pub struct StreamMetrics {
    pub open: prometheus::IntGauge,
    pub resyncs: prometheus::IntCounter,
    pub snapshots_from_memory: prometheus::IntCounter,
    pub snapshots_from_database: prometheus::IntCounter,
    pub resumes_from_memory: prometheus::IntCounter,
    pub resumes_from_database: prometheus::IntCounter,
    pub applied_revision: prometheus::IntGauge,
    pub apply_lag: prometheus::Gauge,
}

/// What else must learn of the published changes this process receives.
pub trait Delivered: Send + 'static {
    /// A change of `user` arrived; called before any stream is given it.
    fn changed(&self, user: UserId);
    /// Changes may have been published that never arrived (the subscription began again).
    fn may_have_missed(&self);
}

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    TooManyForUser,
    TooManyForProcess,
}

/// The session a stream was opened with (its token's hash): revoking the session ends it.
pub type SessionKey = Vec<u8>;

/// One open stream, as the fan-out sees it.
pub struct Subscriber {
    key: u64,
    owner: UserId,
    session: SessionKey,
    /// The users it watches; `None`: everyone.
    ids: Option<Vec<UserId>>,
    pending: Mutex<Pending>,
    wake: Notify,
    /// Set when the stream must end now: its session was revoked, or a newer stream of the
    /// same session took its place.
    ended: AtomicBool,
}

impl Subscriber {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds a change for the next batch; returns whether it made the stream give up on
    /// what it held (it stalled, or holds too much).
    fn offer(&self, revision: Revision, status: &PublicStatus, settings: &StreamSettings) -> bool {
        let cap = if self.ids.is_some() {
            usize::MAX
        } else {
            MAX_PENDING_ALL
        };
        let gave_up = self
            .pending()
            .offer(revision, status, Instant::now(), settings.stall, cap);
        self.wake.notify_one();
        gave_up
    }

    fn demand_resync(&self) {
        self.pending().demand_resync();
        self.wake.notify_one();
    }

    fn end(&self) {
        self.ended.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }
}

/// The open streams, indexed for the fan-out (by watched user), for the limits (by owner)
/// and for revocations (by session).
#[derive(Default)]
struct Registry {
    next_key: u64,
    by_key: HashMap<u64, Arc<Subscriber>>,
    by_user: HashMap<UserId, Vec<Arc<Subscriber>>>,
    everyone: Vec<Arc<Subscriber>>,
    /// Each owner's streams, oldest first.
    by_owner: HashMap<UserId, Vec<Arc<Subscriber>>>,
    by_session: HashMap<SessionKey, Vec<u64>>,
}

impl Registry {
    /// Unregisters the stream `key` if it is still registered; returns it if it was.
    fn remove(&mut self, key: u64) -> Option<Arc<Subscriber>> {
        let subscriber = self.by_key.remove(&key)?;
        let forget = |list: &mut Vec<Arc<Subscriber>>| list.retain(|s| s.key != key);
        match &subscriber.ids {
            Some(ids) => {
                for id in ids {
                    if let Some(list) = self.by_user.get_mut(id) {
                        forget(list);
                        if list.is_empty() {
                            self.by_user.remove(id);
                        }
                    }
                }
            }
            None => forget(&mut self.everyone),
        }
        if let Some(list) = self.by_owner.get_mut(&subscriber.owner) {
            forget(list);
            if list.is_empty() {
                self.by_owner.remove(&subscriber.owner);
            }
        }
        if let Some(keys) = self.by_session.get_mut(&subscriber.session) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                self.by_session.remove(&subscriber.session);
            }
        }
        Some(subscriber)
    }

    /// The oldest open stream of `owner` opened with `session`: the one a reconnect of the
    /// same client replaces.
    fn oldest_of_session(&self, owner: UserId, session: &[u8]) -> Option<u64> {
        self.by_owner
            .get(&owner)?
            .iter()
            .find(|s| s.session == session)
            .map(|s| s.key)
    }
}

/// The streams of this process.
pub struct StreamHub {
    registry: Mutex<Registry>,
    pub settings: StreamSettings,
    stopping: watch::Sender<bool>,
    metrics: StreamMetrics,
    /// The changes received lately, to resume from.
    recent: std::sync::RwLock<RecentChanges>,
    /// Whether this process is subscribed to the published changes right now.
    following: AtomicBool,
}

impl StreamHub {
    pub fn new(settings: StreamSettings, metrics: StreamMetrics) -> Self {
        let files = max_open_files().map_or(usize::MAX, |n| n.saturating_sub(RESERVED_FILES));
        let settings = StreamSettings {
            per_process: settings.per_process.min(files),
            ..settings
        };
        Self {
            registry: Mutex::new(Registry::default()),
            recent: std::sync::RwLock::new(RecentChanges::new(
                settings.resume_window,
                settings.resume_reach.to_std().unwrap_or_default(),
            )),
            settings,
            stopping: watch::Sender::new(false),
            metrics,
            following: AtomicBool::new(false),
        }
    }

    /// Whether published changes reach this process's streams now (tests wait for it).
    pub fn is_following(&self) -> bool {
        self.following.load(Ordering::Acquire)
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The recent changes, to read (resumes read side by side).
    fn recent(&self) -> std::sync::RwLockReadGuard<'_, RecentChanges> {
        self.recent.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The recent changes, to change (a change arrives, the subscription begins again).
    fn recent_mut(&self) -> std::sync::RwLockWriteGuard<'_, RecentChanges> {
        self.recent.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The last revision received since the subscription began: a snapshot read from the
    /// presence cache now is as of it. `None` while nothing is known.
    pub fn last_received(&self) -> Option<Revision> {
        self.recent().last_arrived()
    }

    /// Registers a stream of `owner`, opened with `session`, for `ids` (everyone if
    /// `None`). At a limit, the oldest stream of the same session is ended to make room (a
    /// client reconnecting before its old stream was found dead, or a page replacing its
    /// stream); only a stream that would take a place of its own is refused.
    fn subscribe(
        self: &Arc<Self>,
        owner: UserId,
        session: SessionKey,
        ids: Option<Vec<UserId>>,
    ) -> Result<Subscription, Refused> {
        let mut registry = self.registry();
        let owned = registry.by_owner.get(&owner).map_or(0, Vec::len);
        let full_for_user = owned >= self.settings.per_user;
        let full_for_process = registry.by_key.len() >= self.settings.per_process;
        if full_for_user || full_for_process {
            let Some(replaced) = registry.oldest_of_session(owner, &session) else {
                return Err(if full_for_process {
                    Refused::TooManyForProcess
                } else {
                    Refused::TooManyForUser
                });
            };
            if let Some(old) = registry.remove(replaced) {
                old.end();
            }
        }
        registry.next_key += 1;
        let subscriber = Arc::new(Subscriber {
            key: registry.next_key,
            owner,
            session,
            ids,
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            ended: AtomicBool::new(false),
        });
        match &subscriber.ids {
            Some(ids) => {
                for id in ids {
                    registry
                        .by_user
                        .entry(*id)
                        .or_default()
                        .push(subscriber.clone());
                }
            }
            None => registry.everyone.push(subscriber.clone()),
        }
        registry
            .by_owner
            .entry(owner)
            .or_default()
            .push(subscriber.clone());
        registry
            .by_session
            .entry(subscriber.session.clone())
            .or_default()
            .push(subscriber.key);
        registry.by_key.insert(subscriber.key, subscriber.clone());
        self.metrics.open.set(registry.by_key.len() as i64);
        Ok(Subscription {
            hub: self.clone(),
            subscriber,
        })
    }

    fn unsubscribe(&self, subscriber: &Subscriber) {
        let mut registry = self.registry();
        registry.remove(subscriber.key);
        self.metrics.open.set(registry.by_key.len() as i64);
    }

    /// Ends every stream opened with `session` now: it was revoked (logged out), here or
    /// on another replica. Returns how many ended.
    pub fn end_session(&self, session: &[u8]) -> usize {
        let mut registry = self.registry();
        let keys = registry
            .by_session
            .get(session)
            .cloned()
            .unwrap_or_default();
        for key in &keys {
            if let Some(subscriber) = registry.remove(*key) {
                subscriber.end();
            }
        }
        self.metrics.open.set(registry.by_key.len() as i64);
        keys.len()
    }

    /// Keeps a published change to resume from, then hands it to the streams watching
    /// its user.
    pub fn receive(&self, change: &Transition) {
        let Some(revision) = change.revision else {
            return;
        };
        let status = change.status();
        if self
            .recent_mut()
            .push(revision, status.clone(), Instant::now())
        {
            self.metrics.applied_revision.set(revision.0);
            let lag = presence_model::clock::now() - change.at;
            self.metrics
                .apply_lag
                .set(lag.num_microseconds().unwrap_or(0) as f64 / 1e6);
        }
        self.dispatch(revision, &status);
    }

    fn dispatch(&self, revision: Revision, status: &PublicStatus) {
        let registry = self.registry();
        let watching = registry.by_user.get(&status.id).into_iter().flatten();
        for subscriber in watching.chain(registry.everyone.iter()) {
            if subscriber.offer(revision, status, &self.settings) {
                self.metrics.resyncs.inc();
            }
        }
    }

    /// Nothing published is known to arrive from now on (the subscription was lost), or
    /// what was published before now never arrived (it began again): the recent changes
    /// go, and starts are read from PostgreSQL until changes arrive again or a seed is
    /// taken. Returns the subscription now begun.
    fn forget_recent(&self) -> u64 {
        self.metrics.applied_revision.set(0);
        self.recent_mut().clear()
    }

    /// Every revision given after `latest` will arrive in `subscription` (see
    /// [`RecentChanges::seed`]).
    fn seed_recent(&self, subscription: u64, latest: Revision) {
        self.recent_mut().seed(subscription, latest);
    }

    /// Every stream may have missed changes (the Redis subscription was down): each gets
    /// `resync` and a new snapshot.
    pub fn resync_all(&self) {
        let registry = self.registry();
        for subscriber in registry.by_key.values() {
            subscriber.demand_resync();
            self.metrics.resyncs.inc();
        }
    }

    /// Ends every stream now, and refuses new ones: the process is stopping.
    pub fn close_all(&self) {
        self.stopping.send_replace(true);
    }

    pub fn open(&self) -> usize {
        self.registry().by_key.len()
    }
}

/// A registered stream; unregisters when dropped (the client went away).
pub struct Subscription {
    hub: Arc<StreamHub>,
    subscriber: Arc<Subscriber>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.subscriber);
    }
}

/// The data of an `event: snapshot`: the watched users' statuses, as of a revision.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = StreamSnapshot)]
pub struct SnapshotData<'a> {
    /// The revision the statuses are as of (also the event's `id`).
    rev: Revision,
    /// Each watched user that exists, once, in id order.
    users: &'a [PublicStatus],
}

/// The data of an `event: presence`: the latest status of each user that changed.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = StreamChanges)]
pub struct ChangesData<'a> {
    /// The revision of the last change (also the event's `id`).
    rev: Revision,
    /// Each changed user once, in the order of their latest change.
    changes: &'a [PublicStatus],
}

/// Why a stream starts over from a snapshot (the data of an `event: resync`).
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResyncReason {
    /// `Last-Event-ID` is older than `STREAM_RESUME_SECS`.
    TooOld,
    /// `Last-Event-ID` is a revision never given.
    UnknownRevision,
    /// More changes followed `Last-Event-ID` than a snapshot would hold.
    TooManyChanges,
    /// The client read too slowly, or this replica missed published changes.
    SlowOrMissed,
}

/// The data of an `event: resync`; a `snapshot` follows.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = StreamResync)]
pub struct ResyncData {
    reason: ResyncReason,
}

fn event(name: &str, id: Option<Revision>, data: &impl Serialize) -> Bytes {
    let json = serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned());
    let id = id.map(|id| format!("id: {id}\n")).unwrap_or_default();
    Bytes::from(format!("event: {name}\n{id}data: {json}\n\n"))
}

/// A reconnect delay of 1 to 3 s, different per stream, so clients dropped together do
/// not come back together (what `presence-client.js` waits after a first failure). A
/// replica takes a resume from memory in under a millisecond, so a dead replica's
/// 15,000 clients, spread over 2 s, are all back about 3 s after it died.
fn retry_frame() -> Bytes {
    let mut bytes = [0u8; 2];
    let spread = getrandom::fill(&mut bytes).map_or(0, |()| u16::from_le_bytes(bytes) % 2000);
    Bytes::from(format!("retry: {}\n\n", 1000 + u32::from(spread)))
}

/// What a stream was asked for.
pub struct StreamRequest {
    pub user_id: UserId,
    /// The session it is opened with: the stream ends when that session is revoked.
    pub session: SessionKey,
    /// `None`: every user (admins only; checked by the caller).
    pub ids: Option<Vec<UserId>>,
    pub last_event_id: Option<Revision>,
}

/// Why a stream could not be opened.
pub enum OpenError {
    Refused(Refused),
    /// Its snapshot or resume could not be read (PostgreSQL unreachable, the pool busy):
    /// the client is answered 503 and retries, rather than given a stream that ends.
    Unavailable(ApiError),
}

/// Opens a stream: registers it, reads what it starts with (a snapshot, or the changes
/// since `Last-Event-ID`), and builds its body.
pub async fn open(
    state: &web::Data<AppState>,
    request: StreamRequest,
) -> Result<futures_util::stream::LocalBoxStream<'static, Result<Bytes, Infallible>>, OpenError> {
    let hub = state.streams.clone();
    if *hub.stopping.borrow() {
        return Err(OpenError::Refused(Refused::TooManyForProcess));
    }
    let subscription = hub
        .subscribe(request.user_id, request.session, request.ids.clone())
        .map_err(OpenError::Refused)?;
    let mut live = Live {
        state: state.clone(),
        subscription,
        ids: request.ids,
        stopping: hub.stopping.subscribe(),
        last_sent: None,
    };
    let first = live
        .first_frames(Start {
            last_event_id: request.last_event_id,
        })
        .await
        .map_err(OpenError::Unavailable)?;
    Ok(futures_util::stream::once(async move { Ok(first) })
        .chain(futures_util::stream::unfold(live, |mut live| async move {
            let frame = live.next_frame().await?;
            Some((Ok(frame), live))
        }))
        .boxed_local())
}

struct Start {
    last_event_id: Option<Revision>,
}

struct Live {
    state: web::Data<AppState>,
    subscription: Subscription,
    ids: Option<Vec<UserId>>,
    stopping: watch::Receiver<bool>,
    last_sent: Option<Instant>,
}

impl Live {
    fn settings(&self) -> StreamSettings {
        self.subscription.hub.settings
    }

    fn subscriber(&self) -> &Subscriber {
        &self.subscription.subscriber
    }

    /// `retry`, then the changes since `Last-Event-ID` if the stream can resume from
    /// there, else a snapshot (after `resync` if it had asked to resume).
    async fn first_frames(&mut self, start: Start) -> Result<Bytes, ApiError> {
        let mut frames = retry_frame().to_vec();
        let resumed = match start.last_event_id {
            Some(after) => Some(self.resume(after).await?),
            None => None,
        };
        match resumed {
            Some(Ok(frame)) => frames.extend_from_slice(&frame),
            Some(Err(why)) => {
                frames.extend_from_slice(&event("resync", None, &ResyncData { reason: why }));
                frames.extend_from_slice(&self.snapshot().await?);
            }
            None => frames.extend_from_slice(&self.snapshot().await?),
        }
        Ok(Bytes::from(frames))
    }

    /// The changes after `after`, coalesced, as one `presence` event (nothing if none).
    async fn resume(&mut self, after: Revision) -> Result<Result<Vec<u8>, ResyncReason>, ApiError> {
        let hub = self.subscription.hub.clone();
        let in_memory = hub.recent().since(
            after,
            self.ids.as_deref(),
            MAX_RESUME_CHANGES,
            Instant::now(),
        );
        let changes = match in_memory {
            Some(changes) => {
                hub.metrics.resumes_from_memory.inc();
                changes
            }
            None => {
                let (ids, reach) = (self.ids.clone(), self.settings().resume_reach);
                let max = MAX_RESUME_CHANGES as i64;
                let changes = db(&self.state, move |conn| {
                    feed::changes_since(conn, after, ids.as_deref(), reach, max)
                })
                .await?;
                hub.metrics.resumes_from_database.inc();
                changes.map(|changes| {
                    changes
                        .iter()
                        .map(|change| (change.revision.unwrap_or(after), change.status()))
                        .collect()
                })
            }
        };
        let changes = match changes {
            Ok(changes) => changes,
            Err(ResumeRefused::TooOld) => return Ok(Err(ResyncReason::TooOld)),
            Err(ResumeRefused::Unknown) => return Ok(Err(ResyncReason::UnknownRevision)),
            Err(ResumeRefused::TooMany) => return Ok(Err(ResyncReason::TooManyChanges)),
        };
        let batch = Batch::coalesce(changes);
        // The client has everything up to `after`: what arrived live up to there is dropped.
        self.settle(after);
        let Some(batch) = batch else {
            return Ok(Ok(Vec::new()));
        };
        self.settle(batch.rev);
        Ok(Ok(changes_frame(&batch).to_vec()))
    }

    /// A `snapshot` event of the watched users, as of its revision; what arrived live
    /// before it is dropped.
    async fn snapshot(&mut self) -> Result<Bytes, ApiError> {
        let hub = self.subscription.hub.clone();
        let timings = self.state.policy().timings();
        let (revision, users): (Revision, Vec<PublicStatus>) =
            match (&self.ids, hub.last_received()) {
                // The revision first, then the users: every change up to it has already made
                // the cache forget its user, so what is read is at least as new.
                (Some(ids), Some(revision)) => {
                    let records = self.state.user_records(ids).await?;
                    hub.metrics.snapshots_from_memory.inc();
                    let now = presence_model::clock::now();
                    let users = ids
                        .iter()
                        .filter_map(|id| records.get(id))
                        .map(|record| record.shown_at(timings, now).shown_to_others())
                        .collect();
                    (revision, users)
                }
                _ => {
                    let ids = self.ids.clone();
                    let snapshot = db(&self.state, move |conn| {
                        feed::snapshot(conn, timings, ids.as_deref())
                    })
                    .await?;
                    hub.metrics.snapshots_from_database.inc();
                    let users = snapshot
                        .users
                        .iter()
                        .map(ShownRow::shown_to_others)
                        .collect();
                    (snapshot.revision, users)
                }
            };
        self.settle(revision);
        let data = SnapshotData {
            rev: revision,
            users: &users,
        };
        Ok(event("snapshot", Some(revision), &data))
    }

    /// Everything up to `floor` has been sent: drop it from what is held.
    fn settle(&self, floor: Revision) {
        self.subscriber().pending().settle(floor);
    }

    /// The next frame: a batch, a resync, or a keep-alive; `None` ends the stream.
    async fn next_frame(&mut self) -> Option<Bytes> {
        let settings = self.settings();
        loop {
            if *self.stopping.borrow() || self.subscriber().is_ended() {
                return None;
            }
            let (due, resync) = {
                let mut pending = self.subscriber().pending();
                (pending.has_changes(), pending.take_resync())
            };
            if resync {
                let mut frames = event(
                    "resync",
                    None,
                    &ResyncData {
                        reason: ResyncReason::SlowOrMissed,
                    },
                )
                .to_vec();
                // Unreadable now: the stream ends; its client reconnects and resumes.
                frames.extend_from_slice(&self.snapshot().await.ok()?);
                return Some(Bytes::from(frames));
            }
            if due {
                // At most one batch per interval: what arrives meanwhile is coalesced.
                let wait = self.last_sent.map_or(Duration::ZERO, |sent| {
                    settings.batch.saturating_sub(sent.elapsed())
                });
                if !wait.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = self.stopping.changed() => return None,
                    }
                }
                let taken = self.subscriber().pending().take_batch();
                if let Some(batch) = taken {
                    self.last_sent = Some(Instant::now());
                    return Some(changes_frame(&batch));
                }
                continue;
            }
            let subscriber = self.subscription.subscriber.clone();
            tokio::select! {
                () = subscriber.wake.notified() => {}
                // Also the probe that finds a client gone: writing to a closed connection
                // fails, and the stream (with its place) is dropped.
                () = tokio::time::sleep(settings.keepalive) => {
                    return Some(Bytes::from_static(b": keep-alive\n\n"));
                }
                _ = self.stopping.changed() => return None,
            }
        }
    }
}

/// A `presence` event: the latest status of each user, with the revision of the last.
fn changes_frame(batch: &Batch) -> Bytes {
    event(
        "presence",
        Some(batch.rev),
        &ChangesData {
            rev: batch.rev,
            changes: &batch.changes,
        },
    )
}

/// Follows the Redis channel of published changes for as long as the process runs, and
/// hands each to `streams` (after telling `delivered`). Whenever the subscription is
/// (re)established, the streams already open are resynced: changes published while nobody
/// listened never reached this process. Then `latest_given` (the greatest revision given,
/// from PostgreSQL) seeds the window of recent changes.
pub async fn follow_published_changes<L>(
    streams: Arc<StreamHub>,
    delivered: impl Delivered,
    redis_url: String,
    channel: String,
    latest_given: impl Fn() -> L,
) where
    L: std::future::Future<Output = Option<Revision>> + 'static,
{
    follow_channel(&redis_url, &channel, |followed| match followed {
        Followed::Subscribed => {
            let subscription = streams.forget_recent();
            let (hub, latest) = (streams.clone(), latest_given());
            actix_web::rt::spawn(async move {
                if let Some(latest) = latest.await {
                    hub.seed_recent(subscription, latest);
                }
            });
            delivered.may_have_missed();
            streams.following.store(true, Ordering::Release);
            if streams.open() > 0 {
                log::info!("streams: subscribed to published changes; resyncing open streams");
                streams.resync_all();
            }
        }
        Followed::Message(message) => {
            match serde_json::from_slice::<Transition>(message.get_payload_bytes()) {
                Ok(change) => {
                    delivered.changed(change.user_id);
                    streams.receive(&change);
                }
                Err(e) => log::warn!("streams: unreadable published change: {e}"),
            }
        }
        Followed::Lost => {
            streams.following.store(false, Ordering::Release);
            streams.forget_recent();
        }
    })
    .await;
}

/// The process's limit of open files (`/proc/self/limits`), if it can be read.
fn max_open_files() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    /// Spread over 1 to 3 s, never all the same.
    #[test]
    fn the_reconnect_delay_is_spread_over_one_to_three_seconds() {
        let delays: std::collections::BTreeSet<u32> = (0..200)
            .map(|_| {
                let frame = super::retry_frame();
                let text = std::str::from_utf8(&frame).unwrap();
                text.strip_prefix("retry: ")
                    .and_then(|rest| rest.strip_suffix("\n\n"))
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(
            delays.iter().all(|ms| (1000..3000).contains(ms)),
            "{delays:?}"
        );
        assert!(delays.len() > 100, "{delays:?}");
    }
}
