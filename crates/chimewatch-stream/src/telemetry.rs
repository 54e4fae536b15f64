//! The producer's self-metrics, named once here and registered by the service that owns the producer.

use chimewatch_sinks::{Sample, SampleKind, Unit as CwUnit};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug, Clone)]
pub struct ProducerTelemetry {
    /// Seconds from `put` to durability, per call.
    pub put_latency: Histogram,
    /// User records made durable.
    pub records: Counter,
    /// User record bytes made durable.
    pub bytes: Counter,
    /// Stream requests sent (PutRecords calls, or group commits of the embedded log).
    pub requests: Counter,
    /// Entries re-sent after a partial failure or an error.
    pub retries: Counter,
    /// Entries the stream rejected for throughput (Kinesis ProvisionedThroughputExceeded).
    pub throttles: Counter,
    /// Puts refused because too many bytes were waiting.
    pub overloaded: Counter,
    /// Bytes accepted by `put` and not yet durable.
    pub in_flight_bytes: Gauge,
}

impl Default for ProducerTelemetry {
    fn default() -> Self {
        Self {
            put_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            records: Counter::default(),
            bytes: Counter::default(),
            requests: Counter::default(),
            retries: Counter::default(),
            throttles: Counter::default(),
            overloaded: Counter::default(),
            in_flight_bytes: Gauge::default(),
        }
    }
}

impl ProducerTelemetry {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("stream");
        r.register_with_unit("put_latency", "Time from put to durability", Unit::Seconds, self.put_latency.clone());
        r.register("records", "User records made durable", self.records.clone());
        r.register_with_unit("written", "User record bytes made durable", Unit::Bytes, self.bytes.clone());
        r.register("requests", "Stream write requests sent", self.requests.clone());
        r.register("retries", "Entries re-sent after a failure", self.retries.clone());
        r.register("throttles", "Entries rejected by the stream for throughput", self.throttles.clone());
        r.register("overloaded", "Puts refused because too many bytes were waiting", self.overloaded.clone());
        r.register_with_unit(
            "in_flight",
            "Bytes accepted and not yet durable",
            Unit::Bytes,
            self.in_flight_bytes.clone(),
        );
    }

    /// The figures published to CloudWatch (`ChimeWatch/Pipeline`).
    pub fn samples(&self) -> Vec<Sample> {
        let counter = |name, unit, c: &Counter| Sample { name, unit, kind: SampleKind::Counter(c.get()) };
        vec![
            counter("StreamRecordsPut", CwUnit::Count, &self.records),
            counter("StreamBytesPut", CwUnit::Bytes, &self.bytes),
            counter("StreamRequests", CwUnit::Count, &self.requests),
            counter("StreamRetries", CwUnit::Count, &self.retries),
            counter("StreamThrottles", CwUnit::Count, &self.throttles),
            counter("StreamOverloaded", CwUnit::Count, &self.overloaded),
            Sample {
                name: "StreamInFlightBytes",
                unit: CwUnit::Bytes,
                kind: SampleKind::Gauge(self.in_flight_bytes.get() as f64),
            },
        ]
    }
}
