//! The aggregator: a processor for the consumer runtime that turns meeting events into what on-call engineers
//! alert on - windowed distributions and counts in CloudWatch Metrics - and writes every event to CloudWatch Logs
//! shaped as the blog sample's messages, so its Logs Insights queries work unchanged.
//!
//! One worker's shard processors share one windowed aggregator (the watermark is the minimum over the shards the
//! worker holds). A shard's checkpoint moves only past batches whose windows were published and whose log events
//! were written: a crash or a lease move loses no window; what was published but not checkpointed is published
//! again by the next owner (at most the open windows plus one flush interval of records).
//!
//! # Layout
//! - [`config`]: the service's settings (namespace, log group, windows, dimension sets);
//! - [`processor`]: the shard processors and the state they share: windows, pending batches, the outbox;
//! - [`publish`]: closed windows as CloudWatch datums, events as log lines;
//! - [`telemetry`]: the aggregator's self-metrics.

pub mod config;
pub mod processor;
pub mod publish;
pub mod telemetry;

pub use config::AggregatorServiceConfig;
pub use processor::Aggregation;
pub use telemetry::AggregatorTelemetry;
