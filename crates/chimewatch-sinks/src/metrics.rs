//! The metric sink port: what the services publish, in domain terms (no SDK types).

use async_trait::async_trait;
use chimewatch_model::UnixMillis;

pub use chimewatch_metrics::Unit;

#[derive(Debug, Clone, PartialEq)]
pub enum DatumValue {
    Single(f64),
    /// Distinct values with how often each occurred; CloudWatch computes any percentile from these.
    Distribution {
        values: Vec<f64>,
        counts: Vec<f64>,
    },
}

/// One metric value (or distribution) at one time, with its dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub name: String,
    pub unit: Unit,
    pub value: DatumValue,
    pub dimensions: Vec<(String, String)>,
    pub timestamp: UnixMillis,
    /// Stored at 1-second resolution (CloudWatch high-resolution metrics) rather than 1 minute.
    pub high_resolution: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying later (throttling, timeouts, 5xx); nothing was lost, the caller still holds the data.
    #[error("{operation} failed, retry later: {message}")]
    Transient { operation: &'static str, message: String },
    #[error("{operation} failed: {message}")]
    Fatal { operation: &'static str, message: String },
}

#[async_trait]
pub trait MetricSink: Send + Sync + std::fmt::Debug {
    /// Publishes all datums into `namespace`, splitting them into as many requests as the backend needs.
    async fn publish(&self, namespace: &str, datums: Vec<Datum>) -> Result<(), SinkError>;
}
