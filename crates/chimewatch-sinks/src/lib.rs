//! Where chimewatch's results go: ports in domain terms, and adapters behind them.
//!
//! # Layout
//! - [`metrics`]: the metric sink port: datums with single values or value/count distributions.
//! - [`cloudwatch`]: the CloudWatch adapter (PutMetricData within its request limits).
//! - [`pipeline`]: publishes a service's self-metrics (namespace `ChimeWatch/Pipeline`, dimension `Service`).

pub mod cloudwatch;
pub mod metrics;
pub mod pipeline;

pub use metrics::{Datum, DatumValue, MetricSink, SinkError, Unit};
pub use pipeline::{PipelineReporter, Sample, SampleKind};
