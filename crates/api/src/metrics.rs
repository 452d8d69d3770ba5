//! Prometheus metrics of one API process, served at `GET /metrics`.

use std::time::Duration;

use actix_web::http::Method;
use presence_runtime::metrics::MetricsRegistry;
use prometheus::{Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts};

pub struct Metrics {
    registry: MetricsRegistry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pub users_online: IntGauge,
    /// 1 when PostgreSQL and Redis answered this scrape's readiness checks.
    pub ready: IntGauge,
    in_flight: IntGauge,
    pub jobs_enqueued: IntCounter,
    pub enqueue_failures: IntCounter,
    pub streams: crate::stream::StreamMetrics,
    /// The database's clock minus this process's, as last measured.
    pub clock_offset: Gauge,
    pub presence_cache: crate::presence_cache::CacheMetrics,
    /// Queries looking up sessions the cache did not hold.
    pub session_lookups: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = MetricsRegistry::new("presence_api")?;
        let requests = registry.register(IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route template, method and status",
            ),
            &["route", "method", "status"],
        )?)?;
        let latency = registry.register(HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route template",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )?)?;
        let in_flight = registry.register(IntGauge::new(
            "http_requests_in_flight",
            "HTTP requests received and not yet answered (bodies still arriving included)",
        )?)?;
        let users_online = registry.register(IntGauge::new(
            "users_online",
            "Users shown online, away or dnd (read at scrape time)",
        )?)?;
        let ready = registry.register(IntGauge::new(
            "ready",
            "1 when PostgreSQL and Redis answered this scrape's readiness checks (as /readyz)",
        )?)?;
        let jobs_enqueued = registry.register(IntCounter::new(
            "jobs_enqueued_total",
            "Asked of the workers: a publish nudge per transition, a job per second of status ends",
        )?)?;
        let enqueue_failures = registry.register(IntCounter::new(
            "job_enqueue_failures_total",
            "Nudges and jobs that could not be sent (Redis down or slow); the workers catch up",
        )?)?;
        let clock_offset = registry.register(Gauge::new(
            "clock_offset_seconds",
            "The database's clock minus this process's (this process stamps times by the \
             database's)",
        )?)?;
        let started = registry.register(IntCounterVec::new(
            Opts::new(
                "stream_starts_total",
                "What streams started from: `kind` snapshot or resume; `source` memory (this \
                 replica's recent changes and presence cache) or database (PostgreSQL: \
                 the outbox, or a snapshot query)",
            ),
            &["kind", "source"],
        )?)?;
        let streams = crate::stream::StreamMetrics {
            open: registry.register(IntGauge::new(
                "streams_open",
                "Presence streams (server-sent events) open on this process",
            )?)?,
            resyncs: registry.register(IntCounter::new(
                "stream_resyncs_total",
                "Streams that gave up on the changes they held (stalled client, lost Redis \
                 subscription) and owe their client a new snapshot",
            )?)?,
            snapshots_from_memory: started.with_label_values(&["snapshot", "memory"]),
            snapshots_from_database: started.with_label_values(&["snapshot", "database"]),
            resumes_from_memory: started.with_label_values(&["resume", "memory"]),
            resumes_from_database: started.with_label_values(&["resume", "database"]),
            applied_revision: registry.register(IntGauge::new(
                "stream_applied_revision",
                "The last revision this replica received from its subscription (0 while it \
                 knows none: not subscribed, or nothing arrived since it subscribed)",
            )?)?,
            apply_lag: registry.register(Gauge::new(
                "stream_apply_lag_seconds",
                "From the last received change's commit to its arrival here (the \
                 database's clock against this process's, offset corrected)",
            )?)?,
        };
        let presence_cache = crate::presence_cache::CacheMetrics {
            hits: registry.register(IntCounter::new(
                "presence_cache_hits_total",
                "Users read from this replica's memory (status lookups, /me)",
            )?)?,
            misses: registry.register(IntCounter::new(
                "presence_cache_misses_total",
                "Users read from PostgreSQL because this replica did not hold them",
            )?)?,
            fallbacks: registry.register(IntCounter::new(
                "presence_cache_fallbacks_total",
                "Users read from PostgreSQL because this replica could not trust its memory \
                 (its listener was not hearing every write)",
            )?)?,
            forgotten: registry.register(IntCounter::new(
                "presence_cache_forgotten_total",
                "Users forgotten because a replica wrote them",
            )?)?,
            hearing: registry.register(IntGauge::new(
                "presence_cache_hearing",
                "1 while this replica hears every write of users (its memory is trusted)",
            )?)?,
            reads: registry.register(IntCounter::new(
                "presence_cache_reads_total",
                "Queries that read missed users from PostgreSQL, each for what concurrent \
                 requests missed together",
            )?)?,
        };
        let session_lookups = registry.register(IntCounter::new(
            "session_lookups_total",
            "Queries that looked up sessions this replica had not cached, each for what \
             concurrent requests missed together",
        )?)?;
        Ok(Self {
            presence_cache,
            session_lookups,
            streams,
            registry,
            requests,
            latency,
            users_online,
            ready,
            in_flight,
            jobs_enqueued,
            enqueue_failures,
            clock_offset,
        })
    }

    /// Counts one request. `route` is the matched template (`/api/users/{id}/status`), so
    /// label values stay few whatever paths clients send.
    pub fn observe(&self, route: &str, method: &Method, status: u16, elapsed: Duration) {
        let method = match *method {
            Method::GET
            | Method::POST
            | Method::PUT
            | Method::PATCH
            | Method::DELETE
            | Method::HEAD
            | Method::OPTIONS => method.as_str(),
            _ => "OTHER",
        };
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a request in flight until the returned guard is dropped, so a request whose
    /// connection goes away still leaves the count.
    pub fn request_started(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// The `GET /metrics` answer.
    pub fn response(&self) -> actix_web::HttpResponse {
        self.registry.response()
    }
}

/// One request in `http_requests_in_flight`, until dropped.
pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
