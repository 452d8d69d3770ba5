//! Prometheus metrics of one API process, served at `GET /metrics`.

use std::time::Duration;

use actix_web::http::Method;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pub users_online: IntGauge,
    pub jobs_enqueued: IntCounter,
    pub enqueue_failures: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("presence_api".to_owned()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route template, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route template",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )?;
        let users_online =
            IntGauge::new("users_online", "Users shown online (read at scrape time)")?;
        let jobs_enqueued = IntCounter::new(
            "jobs_enqueued_total",
            "Presence-change jobs queued for the worker",
        )?;
        let enqueue_failures = IntCounter::new(
            "job_enqueue_failures_total",
            "Presence changes that could not be queued (Redis down or slow)",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(users_online.clone()))?;
        registry.register(Box::new(jobs_enqueued.clone()))?;
        registry.register(Box::new(enqueue_failures.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            users_online,
            jobs_enqueued,
            enqueue_failures,
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

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for these metric types.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}
