//! Publishes a service's self-metrics to a metric sink every interval, so that alarms can watch the pipeline itself.
//!
//! Counters are cumulative in the process; each report publishes what they gained since the last successful report.
//! A failed report is not lost: the next one carries its increments. Gauges publish their current value.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::{Datum, DatumValue, MetricSink, Unit};

pub const DEFAULT_NAMESPACE: &str = "ChimeWatch/Pipeline";

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SampleKind {
    /// A cumulative count since the process started.
    Counter(u64),
    /// A current level.
    Gauge(f64),
}

/// One self-metric as a service's telemetry reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub unit: Unit,
    pub kind: SampleKind,
}

type Source = Box<dyn Fn() -> Vec<Sample> + Send + Sync>;

pub struct PipelineReporter {
    sink: Arc<dyn MetricSink>,
    namespace: String,
    service: String,
    sources: Vec<Source>,
    published: HashMap<&'static str, u64>,
}

impl std::fmt::Debug for PipelineReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineReporter")
            .field("namespace", &self.namespace)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl PipelineReporter {
    pub fn new(sink: Arc<dyn MetricSink>, namespace: impl Into<String>, service: impl Into<String>) -> Self {
        Self {
            sink,
            namespace: namespace.into(),
            service: service.into(),
            sources: Vec::new(),
            published: HashMap::new(),
        }
    }

    pub fn source(mut self, source: impl Fn() -> Vec<Sample> + Send + Sync + 'static) -> Self {
        self.sources.push(Box::new(source));
        self
    }

    /// The datums of one report at `now_ms`, and the counter values they bring the published totals to.
    pub fn datums(&self, now_ms: i64) -> (Vec<Datum>, Vec<(&'static str, u64)>) {
        let mut datums = Vec::new();
        let mut totals = Vec::new();
        for sample in self.sources.iter().flat_map(|s| s()) {
            let value = match sample.kind {
                SampleKind::Counter(total) => {
                    let before = self.published.get(sample.name).copied().unwrap_or(0);
                    totals.push((sample.name, total));
                    total.saturating_sub(before) as f64
                }
                SampleKind::Gauge(v) => v,
            };
            datums.push(Datum {
                name: sample.name.to_owned(),
                unit: sample.unit,
                value: DatumValue::Single(value),
                dimensions: vec![("Service".to_owned(), self.service.clone())],
                timestamp_ms: now_ms,
                high_resolution: false,
            });
        }
        (datums, totals)
    }

    /// Publishes one report; on failure the increments stay pending for the next.
    pub async fn report(&mut self, now_ms: i64) {
        let (datums, totals) = self.datums(now_ms);
        match self.sink.publish(&self.namespace, datums).await {
            Ok(()) => self.published.extend(totals),
            Err(e) => {
                tracing::warn!(namespace = %self.namespace, error = %e, "Could not publish pipeline metrics; the next report carries them.")
            }
        }
    }

    /// Reports every `interval` until `shutdown` resolves, then reports once more.
    pub async fn run(
        mut self,
        interval: Duration,
        clock: fn() -> i64,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.report(clock()).await,
                () = &mut shutdown => {
                    self.report(clock()).await;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::SinkError;
    use async_trait::async_trait;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Debug, Default)]
    struct Recorder {
        published: Mutex<Vec<Vec<Datum>>>,
        fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl MetricSink for Recorder {
        async fn publish(&self, namespace: &str, datums: Vec<Datum>) -> Result<(), SinkError> {
            assert_eq!(namespace, DEFAULT_NAMESPACE);
            if self.fail.load(Ordering::Relaxed) {
                return Err(SinkError::Transient { operation: "test", message: "down".into() });
            }
            self.published.lock().unwrap().push(datums);
            Ok(())
        }
    }

    fn values(batch: &[Datum]) -> Vec<(String, f64)> {
        batch.iter().map(|d| (d.name.clone(), if let DatumValue::Single(v) = d.value { v } else { f64::NAN })).collect()
    }

    #[tokio::test]
    async fn counters_publish_increments_and_failed_reports_carry_over() {
        let sink = Arc::new(Recorder::default());
        let counter = Arc::new(AtomicU64::new(0));
        let c = counter.clone();
        let mut reporter = PipelineReporter::new(sink.clone(), DEFAULT_NAMESPACE, "gateway").source(move || {
            vec![
                Sample {
                    name: "EventsAccepted",
                    unit: Unit::Count,
                    kind: SampleKind::Counter(c.load(Ordering::Relaxed)),
                },
                Sample { name: "InFlightBytes", unit: Unit::Bytes, kind: SampleKind::Gauge(7.0) },
            ]
        });
        counter.store(10, Ordering::Relaxed);
        reporter.report(1).await;
        counter.store(15, Ordering::Relaxed);
        sink.fail.store(true, Ordering::Relaxed);
        reporter.report(2).await;
        sink.fail.store(false, Ordering::Relaxed);
        counter.store(18, Ordering::Relaxed);
        reporter.report(3).await;
        let published = sink.published.lock().unwrap();
        assert_eq!(values(&published[0]), [("EventsAccepted".into(), 10.0), ("InFlightBytes".into(), 7.0)]);
        assert_eq!(
            values(&published[1]),
            [("EventsAccepted".into(), 8.0), ("InFlightBytes".into(), 7.0)],
            "10 -> 18 after a failed report"
        );
        assert_eq!(published[1][0].dimensions, [("Service".to_owned(), "gateway".to_owned())]);
    }
}
