//! The producer's self-metrics, each declared once, registered by the service that owns the producer.

use chimewatch_telemetry::{Latency, MetricSet, Sample, Unit, cw};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone)]
pub struct ProducerTelemetry {
    /// From `put` to durability, per call.
    pub put_latency: Latency,
    /// How long each stream write request took: a PutRecords call, or a group commit (write and fsync) of the
    /// embedded log. What `put_latency` adds beyond it is lingering and waiting for a call slot.
    pub call_latency: Latency,
    /// User records made durable.
    pub records: Counter,
    /// User record bytes made durable.
    pub bytes: Counter,
    /// Stream records written: Kinesis records (a KPL aggregate carries many user records), or log records.
    pub entries: Counter,
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
    set: MetricSet,
}

impl Default for ProducerTelemetry {
    fn default() -> Self {
        let set = MetricSet::new("stream");
        Self {
            put_latency: set.latency("put_latency", "Time from put to durability", "StreamPutLatency"),
            call_latency: set.latency(
                "call_latency",
                "Time a stream write request took (a PutRecords call or a group commit)",
                "StreamCallLatency",
            ),
            records: set.counter("records", "User records made durable", cw("StreamRecordsPut", Unit::Count)),
            bytes: set.counter("written_bytes", "User record bytes made durable", cw("StreamBytesPut", Unit::Bytes)),
            entries: set.counter(
                "entries",
                "Stream records written (a KPL aggregate counts once)",
                cw("StreamEntriesPut", Unit::Count),
            ),
            requests: set.counter("requests", "Stream write requests sent", cw("StreamRequests", Unit::Count)),
            retries: set.counter("retries", "Entries re-sent after a failure", cw("StreamRetries", Unit::Count)),
            throttles: set.counter(
                "throttles",
                "Entries rejected by the stream for throughput",
                cw("StreamThrottles", Unit::Count),
            ),
            overloaded: set.counter(
                "overloaded",
                "Puts refused because too many bytes were waiting",
                cw("StreamOverloaded", Unit::Count),
            ),
            in_flight_bytes: set.gauge(
                "in_flight_bytes",
                "Bytes accepted and not yet durable",
                cw("StreamInFlightBytes", Unit::Bytes),
            ),
            set,
        }
    }
}

impl ProducerTelemetry {
    pub fn register(&self, registry: &mut Registry) {
        self.set.register(registry);
    }

    /// The figures reported to CloudWatch (`ChimeWatch/Pipeline`).
    pub fn samples(&self) -> Vec<Sample> {
        self.set.samples()
    }

    /// How many request durations were recorded since the last report (this takes them, as a report does).
    #[cfg(test)]
    pub(crate) fn calls_timed(&self) -> u64 {
        self.samples()
            .into_iter()
            .find_map(|s| match s.kind {
                chimewatch_telemetry::SampleKind::Distribution(d) if s.name == "StreamCallLatency" => Some(d.count()),
                _ => None,
            })
            .unwrap_or(0)
    }
}
