//! The Prometheus registry of a process and its text rendering.

use actix_web::HttpResponse;
use prometheus::core::Collector;
use prometheus::{Encoder, Registry, TextEncoder};

/// A registry whose metrics are all named `<namespace>_…`.
pub struct MetricsRegistry(Registry);

impl MetricsRegistry {
    pub fn new(namespace: &str) -> Result<Self, prometheus::Error> {
        Registry::new_custom(Some(namespace.to_owned()), None).map(Self)
    }

    /// Registers `metric` and hands it back, to keep as a field.
    pub fn register<M: Collector + Clone + 'static>(
        &self,
        metric: M,
    ) -> Result<M, prometheus::Error> {
        self.0.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    /// The Prometheus text exposition of every metric, as a `GET /metrics` answer.
    pub fn response(&self) -> HttpResponse {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for these metric types.
        let _ = TextEncoder::new().encode(&self.0.gather(), &mut out);
        HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(out)
    }
}
