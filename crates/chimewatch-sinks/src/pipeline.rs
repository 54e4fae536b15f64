//! Publishes a service's self-metrics to a metric sink every interval, so that alarms can watch the pipeline itself.
//!
//! Counters are cumulative in the process; each report publishes what they gained since the last successful report.
//! A failed report is not lost: the next one carries its increments, and the latencies recorded since. Gauges
//! publish their current value.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chimewatch_model::{Clock, UnixMillis};
use chimewatch_telemetry::{Distribution, Sample, SampleKind, Unit};

use crate::cloudwatch::MAX_VALUES_PER_DATUM;
use crate::metrics::{Datum, DatumValue, MetricSink};

pub const DEFAULT_NAMESPACE: &str = "ChimeWatch/Pipeline";

type Source = Box<dyn Fn() -> Vec<Sample> + Send + Sync>;

pub struct PipelineReporter {
    sink: Arc<dyn MetricSink>,
    namespace: String,
    service: String,
    sources: Vec<Source>,
    published: HashMap<&'static str, u64>,
    /// Distributions taken from the sources and not yet published.
    pending: HashMap<&'static str, (Unit, Distribution)>,
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
            pending: HashMap::new(),
        }
    }

    pub fn source(mut self, source: impl Fn() -> Vec<Sample> + Send + Sync + 'static) -> Self {
        self.sources.push(Box::new(source));
        self
    }

    /// The datums of one report at `now`, and the counter values they bring the published totals to.
    fn datums(&mut self, now: UnixMillis) -> (Vec<Datum>, Vec<(&'static str, u64)>) {
        let mut datums = Vec::new();
        let mut totals = Vec::new();
        let dimensions = vec![("Service".to_owned(), self.service.clone())];
        let datum = |name: &str, unit, value| Datum {
            name: name.to_owned(),
            unit,
            value,
            dimensions: dimensions.clone(),
            timestamp: now,
            high_resolution: false,
        };
        let samples: Vec<Sample> = self.sources.iter().flat_map(|s| s()).collect();
        for sample in samples {
            let value = match sample.kind {
                SampleKind::Counter(total) => {
                    let before = self.published.get(sample.name).copied().unwrap_or(0);
                    totals.push((sample.name, total));
                    total.saturating_sub(before) as f64
                }
                SampleKind::Gauge(v) => v,
                SampleKind::Distribution(recent) => {
                    self.pending
                        .entry(sample.name)
                        .or_insert_with(|| (sample.unit, Distribution::new()))
                        .1
                        .merge(&recent);
                    continue;
                }
            };
            datums.push(datum(sample.name, sample.unit, DatumValue::Single(value)));
        }
        for (name, (unit, distribution)) in &self.pending {
            for (values, counts) in distribution.chunks(MAX_VALUES_PER_DATUM) {
                datums.push(datum(name, *unit, DatumValue::Distribution { values, counts }));
            }
        }
        (datums, totals)
    }

    /// Publishes one report; on failure the increments and distributions stay pending for the next.
    pub async fn report(&mut self, now: UnixMillis) {
        let (datums, totals) = self.datums(now);
        let outcome = self.sink.publish(&self.namespace, &datums).await;
        for (i, reason) in &outcome.rejected {
            // The figures' names and dimensions are chimewatch's own; a refusal is a bug, not a client's doing.
            tracing::error!(namespace = %self.namespace, metric = %datums[*i].name, %reason, "A pipeline metric was refused.");
        }
        match outcome.error {
            None => {
                self.published.extend(totals);
                self.pending.clear();
            }
            Some(e) => {
                // Counters and distributions are published as a whole or carried whole: some datums of a failed
                // report may have gone out, and the next report publishes them again (a pipeline figure may be
                // counted twice across an outage, never lost).
                tracing::warn!(namespace = %self.namespace, error = %e, "Could not publish pipeline metrics; the next report carries them.")
            }
        }
    }

    /// Reports every `interval` until `shutdown` resolves, then reports once more.
    pub async fn run(mut self, interval: Duration, clock: Clock, shutdown: impl std::future::Future<Output = ()>) {
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
    use crate::metrics::{Outcome, SinkError};
    use async_trait::async_trait;
    use chimewatch_telemetry::{MetricSet, cw};
    use std::sync::Mutex;
    use std::sync::atomic::Ordering;

    #[derive(Debug, Default)]
    struct Recorder {
        published: Mutex<Vec<Vec<Datum>>>,
        fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl MetricSink for Recorder {
        async fn publish(&self, namespace: &str, datums: &[Datum]) -> Outcome {
            assert_eq!(namespace, DEFAULT_NAMESPACE);
            if self.fail.load(Ordering::Relaxed) {
                return Outcome::failed(
                    datums.len(),
                    SinkError::Transient { operation: "test", message: "down".into() },
                );
            }
            self.published.lock().unwrap().push(datums.to_vec());
            Outcome::default()
        }
    }

    fn values(batch: &[Datum]) -> Vec<(String, f64)> {
        batch.iter().map(|d| (d.name.clone(), if let DatumValue::Single(v) = d.value { v } else { f64::NAN })).collect()
    }

    #[tokio::test]
    async fn counters_publish_increments_and_failed_reports_carry_over() {
        let sink = Arc::new(Recorder::default());
        let set = MetricSet::new("gateway");
        let accepted = set.counter("accepted", "Events accepted", cw("EventsAccepted", Unit::Count));
        let in_flight = set.gauge("in_flight_bytes", "Bytes in flight", cw("InFlightBytes", Unit::Bytes));
        let latency = set.latency("put_latency", "Put latency", "PutLatency");
        in_flight.set(7);
        let source = set.clone();
        let mut reporter =
            PipelineReporter::new(sink.clone(), DEFAULT_NAMESPACE, "gateway").source(move || source.samples());
        accepted.inc_by(10);
        latency.observe(Duration::from_millis(5));
        reporter.report(UnixMillis(1)).await;
        accepted.inc_by(5);
        latency.observe(Duration::from_millis(40));
        sink.fail.store(true, Ordering::Relaxed);
        reporter.report(UnixMillis(2)).await;
        sink.fail.store(false, Ordering::Relaxed);
        accepted.inc_by(3);
        latency.observe(Duration::from_millis(60));
        reporter.report(UnixMillis(3)).await;
        let published = sink.published.lock().unwrap();
        assert_eq!(values(&published[0])[..2], [("EventsAccepted".into(), 10.0), ("InFlightBytes".into(), 7.0)]);
        assert_eq!(
            values(&published[1])[..2],
            [("EventsAccepted".into(), 8.0), ("InFlightBytes".into(), 7.0)],
            "10 -> 18 after a failed report"
        );
        assert_eq!(published[1][0].dimensions, [("Service".to_owned(), "gateway".to_owned())]);
        let latencies = |batch: &[Datum]| -> Vec<f64> {
            batch
                .iter()
                .filter(|d| d.name == "PutLatency")
                .flat_map(|d| match &d.value {
                    DatumValue::Distribution { values, .. } => values.clone(),
                    DatumValue::Single(_) => panic!("a latency is a distribution"),
                })
                .collect()
        };
        assert_eq!(latencies(&published[0]), [5.0]);
        assert_eq!(latencies(&published[1]), [40.0, 60.0], "the failed report's latencies go out with the next");
    }
}
