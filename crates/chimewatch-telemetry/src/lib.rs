//! The services' own metrics, each declared once: a [`MetricSet`] registers it on `/metrics` (Prometheus) and turns
//! it into the [`Sample`]s a service reports to CloudWatch (`ChimeWatch/Pipeline`), so the two forms cannot drift.
//!
//! This crate sits below the stream, gateway and consumer crates and knows nothing of CloudWatch: a reporter in
//! `chimewatch-sinks` publishes the samples.
//!
//! # Layout
//! - this file: [`Sample`], [`MetricSet`] and its declarations;
//! - [`labeled`]: metric families whose label sets can be walked (for totals and maxima).

pub mod labeled;

use std::sync::{Arc, Mutex, PoisonError};

pub use chimewatch_metrics::{Distribution, Unit};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit as PrometheusUnit};

pub use labeled::Labeled;

/// What one self-metric reports to CloudWatch.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleKind {
    /// A cumulative count since the process started (the reporter publishes increments).
    Counter(u64),
    /// A current level.
    Gauge(f64),
    /// Values recorded since the last report, taken out of the metric (the reporter keeps them until published).
    Distribution(Distribution),
}

/// One self-metric as a service reports it to CloudWatch.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub unit: Unit,
    pub kind: SampleKind,
}

/// A metric's CloudWatch name and unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloudWatch {
    pub name: &'static str,
    pub unit: Unit,
}

/// A total a counter family reports to CloudWatch: its name and unit, and which label sets it sums.
pub type Total<L> = (CloudWatch, fn(&L) -> bool);

/// Shorthand for a CloudWatch name and unit in declarations.
pub const fn cw(name: &'static str, unit: Unit) -> CloudWatch {
    CloudWatch { name, unit }
}

type Register = Box<dyn Fn(&mut Registry) + Send + Sync>;
type Report = Box<dyn Fn(&mut Vec<Sample>) + Send + Sync>;

struct Entry {
    register: Register,
    report: Report,
}

/// A service's self-metrics. Each `counter`, `gauge`, ... call declares one metric, with its Prometheus name (under
/// the set's prefix) and help, and its CloudWatch form; it returns the handle the service updates.
#[derive(Clone, Default)]
pub struct MetricSet {
    prefix: &'static str,
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl std::fmt::Debug for MetricSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricSet").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl MetricSet {
    /// A set whose Prometheus names start with `chimewatch_<prefix>_`.
    pub fn new(prefix: &'static str) -> Self {
        Self { prefix, entries: Arc::default() }
    }

    fn declare(&self, register: Register, report: Report) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).push(Entry { register, report });
    }

    /// A count (`<name>_total` on `/metrics`), reported to CloudWatch as its increments.
    pub fn counter(&self, name: &'static str, help: &'static str, to: CloudWatch) -> Counter {
        let counter = Counter::default();
        let c = counter.clone();
        let r = counter.clone();
        self.declare(
            Box::new(move |reg| reg.register(name, help, c.clone())),
            Box::new(move |out| out.push(Sample { name: to.name, unit: to.unit, kind: SampleKind::Counter(r.get()) })),
        );
        counter
    }

    /// A level, reported as its current value.
    pub fn gauge(&self, name: &'static str, help: &'static str, to: CloudWatch) -> Gauge {
        let gauge = Gauge::default();
        let g = gauge.clone();
        let r = gauge.clone();
        self.declare(
            Box::new(move |reg| reg.register(name, help, g.clone())),
            Box::new(move |out| {
                out.push(Sample { name: to.name, unit: to.unit, kind: SampleKind::Gauge(r.get() as f64) })
            }),
        );
        gauge
    }

    /// A duration: a histogram in seconds on `/metrics` (`<name>_seconds`), and in CloudWatch the distribution of the
    /// milliseconds recorded since the last report, so any percentile can be graphed and alarmed on.
    pub fn latency(&self, name: &'static str, help: &'static str, to: &'static str) -> Latency {
        let latency = Latency {
            histogram: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            recent: Arc::new(Mutex::new(Distribution::new())),
        };
        let h = latency.histogram.clone();
        let r = latency.clone();
        self.declare(
            Box::new(move |reg| reg.register_with_unit(name, help, PrometheusUnit::Seconds, h.clone())),
            Box::new(move |out| {
                let taken = std::mem::take(&mut *r.recent.lock().unwrap_or_else(PoisonError::into_inner));
                out.push(Sample { name: to, unit: Unit::Milliseconds, kind: SampleKind::Distribution(taken) });
            }),
        );
        latency
    }

    /// Counters by label set (one series per set on `/metrics`); CloudWatch gets, for each of `totals`, the sum over
    /// the label sets it selects.
    pub fn counter_family<L>(
        &self,
        name: &'static str,
        help: &'static str,
        totals: &'static [Total<L>],
    ) -> Labeled<L, Counter>
    where
        L: EncodeLabelSet + Clone + Eq + std::hash::Hash + std::fmt::Debug + Send + Sync + 'static,
    {
        let family = Labeled::<L, Counter>::default();
        let f = family.clone();
        let r = family.clone();
        self.declare(
            Box::new(move |reg| reg.register(name, help, f.family())),
            Box::new(move |out| {
                for (to, selects) in totals {
                    let total = r.fold(0, |sum, labels, c| if selects(labels) { sum + c.get() } else { sum });
                    out.push(Sample { name: to.name, unit: to.unit, kind: SampleKind::Counter(total) });
                }
            }),
        );
        family
    }

    /// Gauges by label set; CloudWatch gets the largest (what an alarm on the worst shard watches).
    pub fn gauge_family<L>(&self, name: &'static str, help: &'static str, max: CloudWatch) -> Labeled<L, Gauge>
    where
        L: EncodeLabelSet + Clone + Eq + std::hash::Hash + std::fmt::Debug + Send + Sync + 'static,
    {
        let family = Labeled::<L, Gauge>::default();
        let f = family.clone();
        let r = family.clone();
        self.declare(
            Box::new(move |reg| reg.register(name, help, f.family())),
            Box::new(move |out| {
                let worst = r.fold(0, |m, _, g| m.max(g.get()));
                out.push(Sample { name: max.name, unit: max.unit, kind: SampleKind::Gauge(worst as f64) });
            }),
        );
        family
    }

    /// Registers every metric of the set on `registry`, under `<prefix>_`.
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix(self.prefix);
        for e in self.entries.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            (e.register)(sub);
        }
    }

    /// What the set reports to CloudWatch now, in declaration order.
    pub fn samples(&self) -> Vec<Sample> {
        let mut out = Vec::new();
        for e in self.entries.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            (e.report)(&mut out);
        }
        out
    }
}

/// A duration metric (see [`MetricSet::latency`]).
#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Histogram,
    recent: Arc<Mutex<Distribution>>,
}

impl Latency {
    pub fn observe(&self, elapsed: std::time::Duration) {
        self.histogram.observe(elapsed.as_secs_f64());
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        self.recent.lock().unwrap_or_else(PoisonError::into_inner).record(ms);
    }
}

#[cfg(test)]
mod tests;
