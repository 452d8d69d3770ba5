//! Prometheus metrics of one worker process, served at `GET /metrics`.

use presence_runtime::metrics::MetricsRegistry;
use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts};

/// The `kind` label of job metrics.
pub const SWEEP: &str = "sweep";
pub const PUBLISH: &str = "publish";
pub const EXPIRY: &str = "expiry";

pub struct Metrics {
    registry: MetricsRegistry,
    /// Sweeps this process executed (ticks it claimed).
    pub sweeps: IntCounter,
    pub users_marked_offline: IntCounter,
    pub sweep_duration: Histogram,
    pub jobs_processed: IntCounterVec,
    pub jobs_failed: IntCounterVec,
    pub last_successful_sweep: Gauge,
    /// Status-end jobs this process could not queue (the sweep ends them regardless).
    pub enqueue_failures: IntCounter,
    /// Status-end jobs this process queued (after sweeps, for the ends coming near).
    pub jobs_enqueued: IntCounter,
    pub events_published: IntCounter,
    /// The outbox backlog, as of this process's last catch-up.
    pub unpublished_events: IntGauge,
    pub oldest_unpublished_age: Gauge,
    /// Rows this process purged, by table.
    pub purged: IntCounterVec,
    /// Partitions of the event log, as of this process's last maintenance.
    pub event_partitions: IntGauge,
    /// Partitions of the event log this process dropped past the retention.
    pub event_partitions_dropped: IntCounter,
    /// 1 when PostgreSQL and Redis answered this scrape's readiness checks.
    pub ready: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = MetricsRegistry::new("presence_worker")?;
        let sweeps = registry.register(IntCounter::new(
            "sweeps_total",
            "Sweeps this process executed",
        )?)?;
        let users_marked_offline = registry.register(IntCounter::new(
            "users_marked_offline_total",
            "Users the sweeps marked offline",
        )?)?;
        let sweep_duration = registry.register(Histogram::with_opts(
            HistogramOpts::new("sweep_duration_seconds", "Duration of executed sweeps").buckets(
                vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0],
            ),
        )?)?;
        let jobs_processed = registry.register(IntCounterVec::new(
            Opts::new("jobs_processed_total", "Jobs run to success, by kind"),
            &["kind"],
        )?)?;
        let jobs_failed = registry.register(IntCounterVec::new(
            Opts::new("jobs_failed_total", "Job attempts that failed, by kind"),
            &["kind"],
        )?)?;
        let last_successful_sweep = registry.register(Gauge::new(
            "last_successful_sweep_timestamp_seconds",
            "Unix time this process last finished a sweep",
        )?)?;
        let enqueue_failures = registry.register(IntCounter::new(
            "job_enqueue_failures_total",
            "Status-end jobs this process could not queue",
        )?)?;
        let jobs_enqueued = registry.register(IntCounter::new(
            "jobs_enqueued_total",
            "Status-end jobs this process queued (after sweeps, for the ends coming near)",
        )?)?;
        let events_published = registry.register(IntCounter::new(
            "events_published_total",
            "Transitions this process published on Redis",
        )?)?;
        let unpublished_events = registry.register(IntGauge::new(
            "unpublished_events",
            "Transitions recorded but not yet published (at the last catch-up)",
        )?)?;
        let oldest_unpublished_age = registry.register(Gauge::new(
            "oldest_unpublished_event_age_seconds",
            "Age of the oldest unpublished transition (at the last catch-up); 0 when none",
        )?)?;
        let purged = registry.register(IntCounterVec::new(
            Opts::new(
                "purged_rows_total",
                "Rows this process deleted because nobody can use them any more, by table",
            ),
            &["table"],
        )?)?;
        for table in ["sessions", "sweep_runs"] {
            purged.with_label_values(&[table]);
        }
        let event_partitions = registry.register(IntGauge::new(
            "event_partitions",
            "Partitions of the event log (at this process's last maintenance)",
        )?)?;
        let event_partitions_dropped = registry.register(IntCounter::new(
            "event_partitions_dropped_total",
            "Partitions of the event log this process dropped past the retention",
        )?)?;
        let ready = registry.register(IntGauge::new(
            "ready",
            "1 when PostgreSQL and Redis answered this scrape's readiness checks (as /readyz)",
        )?)?;
        for kind in [SWEEP, PUBLISH, EXPIRY] {
            jobs_processed.with_label_values(&[kind]);
            jobs_failed.with_label_values(&[kind]);
        }
        Ok(Self {
            registry,
            sweeps,
            users_marked_offline,
            sweep_duration,
            jobs_processed,
            jobs_failed,
            last_successful_sweep,
            enqueue_failures,
            jobs_enqueued,
            events_published,
            unpublished_events,
            oldest_unpublished_age,
            purged,
            event_partitions,
            event_partitions_dropped,
            ready,
        })
    }

    /// Counts one job attempt of `kind`.
    /// Jobs this process ran, of every kind.
    pub fn jobs_done(&self) -> u64 {
        [SWEEP, PUBLISH, EXPIRY]
            .iter()
            .map(|kind| self.jobs_processed.with_label_values(&[kind]).get())
            .sum()
    }

    pub fn job<T, E>(&self, kind: &str, outcome: &Result<T, E>) {
        match outcome {
            Ok(_) => self.jobs_processed.with_label_values(&[kind]).inc(),
            Err(_) => self.jobs_failed.with_label_values(&[kind]).inc(),
        }
    }

    /// The `GET /metrics` answer.
    pub fn response(&self) -> actix_web::HttpResponse {
        self.registry.response()
    }
}
