//! Sans-IO metrics for chimewatch: what the aggregator computes, with no clock, no I/O and no async.
//!
//! Time enters as data (event timestamps and an explicit `now`), so every behaviour is a pure function of its
//! inputs and is tested that way.
//!
//! # Layout
//! - [`distribution`]: HdrHistogram distributions (about 0.4 % relative precision, exact below 256), mergeable, and
//!   published as CloudWatch `Values`/`Counts` so CloudWatch computes any percentile across workers.
//! - [`window`]: tumbling event-time windows and the watermark over sources (shards), with idle sources.
//! - [`catalogue`]: which metrics a meeting event feeds, with their units and dimensions.
//! - [`cause`]: the one table of likely causes over the SDKs' status and device error names, and the classifier.
//! - [`explain`]: one attendee's or one meeting's timeline, outcome and verdict.
//! - [`voice`]: the Voice Connector metrics a tracked call's facts feed (the 15 Amazon ones and more).
//! - [`aggregate`]: the windowed aggregator: facts into windows, windows closed by the watermark, late events,
//!   the cardinality guard.
//! - [`dimension`]: the one rule that turns any dimension value into one CloudWatch accepts.
//! - [`unit`]: the units of every metric chimewatch publishes, its own health figures included.
//! - [`alarm`]: CloudWatch metric alarms (PutMetricAlarm definitions, metric math, evaluation with CloudWatch's
//!   missing-data and low-sample rules, state history and SNS-shaped notifications), evaluated against any
//!   [`alarm::MetricSource`].

pub mod aggregate;
pub mod alarm;
pub mod catalogue;
pub mod cause;
pub mod dimension;
pub mod distribution;
pub mod explain;
pub mod unit;
pub mod voice;
pub mod window;

pub use aggregate::{Aggregator, AggregatorConfig, ClosedWindow, Series, SeriesValue};
pub use alarm::{AlarmDefinition, AlarmSet, AlarmState, Evaluation, MetricSource, StatQuery, StateChange, evaluate};
pub use catalogue::{Catalogue, CatalogueConfig, Dimension, Fact, FactValue};
pub use distribution::Distribution;
pub use unit::Unit;
pub use window::{Watermark, window_start};
