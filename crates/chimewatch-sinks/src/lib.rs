//! Where chimewatch's results go: ports in domain terms, and adapters behind them.
//!
//! # Layout
//! - [`metrics`]: the metric sink port: datums with single values or value/count distributions.
//! - [`cloudwatch`]: the CloudWatch adapter (PutMetricData within its request limits); [`cloudwatch_admin`] puts
//!   dashboards and alarms and reads them back.
//! - [`logs`]: the log sink port and PutLogEvents batch planning; [`cloudwatch_logs`] is its CloudWatch adapter.
//! - [`emf`]: metrics as Embedded Metric Format log lines, for users who prefer logs-based metrics.
//! - [`embedded`]: the SQLite store of `up` (metrics and logs), with the queries the CLI answers from it;
//!   [`logs_filter`] is the Logs Insights `filter` subset it understands, and [`logs_insights`] the query
//!   language subset (`fields`, `filter`, `stats`, `sort`, `limit`, `display`) the dashboards use.
//! - [`objects`]: the object store port the archiver writes to, and its local adapter; [`s3`] is its S3 adapter.
//! - [`pipeline`]: publishes a service's self-metrics (namespace `ChimeWatch/Pipeline`, dimension `Service`).

pub mod cloudwatch;
pub mod cloudwatch_admin;
pub mod cloudwatch_logs;
pub mod embedded;
pub mod emf;
pub mod logs;
pub mod logs_filter;
pub mod logs_insights;
pub mod metrics;
pub mod objects;
pub mod pipeline;
pub mod s3;

pub use logs::{LogEvent, LogSink};
pub use metrics::{Datum, DatumValue, MetricSink, Outcome, SinkError, Unit};
pub use objects::{LocalObjects, ObjectError, ObjectInfo, ObjectStore};
pub use pipeline::PipelineReporter;
