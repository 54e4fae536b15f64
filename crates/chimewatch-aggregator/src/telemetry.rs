//! The aggregator's self-metrics, named once: on `/metrics`, and published to `ChimeWatch/Pipeline`.

use chimewatch_sinks::{Sample, SampleKind, Unit};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Default)]
pub struct AggregatorTelemetry {
    /// Meeting events aggregated into windows.
    pub events: Counter,
    /// Events after their window was published (published as additional values for the same minute).
    pub late_events: Counter,
    /// Events older or newer than CloudWatch accepts: left out of metrics (still logged and archived).
    pub out_of_range: Counter,
    /// Facts folded into `Other` by the cardinality guard.
    pub folded: Counter,
    /// SIP message log records tracked into calls.
    pub sip_records: Counter,
    /// SIP records whose message does not parse (counted and left out of the call metrics).
    pub sip_unparsable: Counter,
    /// Calls the tracker holds (ringing, up, or lingering for retransmissions).
    pub calls_tracked: Gauge,
    pub windows_published: Counter,
    pub datums_published: Counter,
    pub log_events_written: Counter,
    /// Failed publishes of metrics or logs; retried with backoff, nothing dropped.
    pub publish_failures: Counter,
    /// Windows open or waiting to be published.
    pub open_windows: Gauge,
    /// Log events waiting to be written.
    pub pending_log_events: Gauge,
}

impl AggregatorTelemetry {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("aggregator");
        r.register("events", "Meeting events aggregated into windows", self.events.clone());
        r.register("late_events", "Events after their window was published", self.late_events.clone());
        r.register("out_of_range_events", "Events outside CloudWatch's accepted time range", self.out_of_range.clone());
        r.register("folded", "Facts folded into Other by the cardinality guard", self.folded.clone());
        r.register("sip_records", "SIP message log records tracked into calls", self.sip_records.clone());
        r.register("sip_unparsable", "SIP records whose message does not parse", self.sip_unparsable.clone());
        r.register("calls_tracked", "Calls the tracker holds", self.calls_tracked.clone());
        r.register("windows_published", "Windows published", self.windows_published.clone());
        r.register("datums_published", "Metric datums published", self.datums_published.clone());
        r.register("log_events_written", "Log events written", self.log_events_written.clone());
        r.register("publish_failures", "Failed publishes, retried", self.publish_failures.clone());
        r.register("open_windows", "Windows open or waiting to be published", self.open_windows.clone());
        r.register("pending_log_events", "Log events waiting to be written", self.pending_log_events.clone());
    }

    pub fn samples(&self) -> Vec<Sample> {
        let counter = |name, c: &Counter| Sample { name, unit: Unit::Count, kind: SampleKind::Counter(c.get()) };
        vec![
            counter("AggregatorEvents", &self.events),
            counter("AggregatorLateEvents", &self.late_events),
            counter("AggregatorOutOfRangeEvents", &self.out_of_range),
            counter("AggregatorFolded", &self.folded),
            counter("AggregatorWindowsPublished", &self.windows_published),
            counter("AggregatorDatumsPublished", &self.datums_published),
            counter("AggregatorLogEventsWritten", &self.log_events_written),
            counter("AggregatorPublishFailures", &self.publish_failures),
            counter("AggregatorSipRecords", &self.sip_records),
            counter("AggregatorSipUnparsable", &self.sip_unparsable),
            Sample {
                name: "AggregatorOpenWindows",
                unit: Unit::Count,
                kind: SampleKind::Gauge(self.open_windows.get() as f64),
            },
        ]
    }
}
