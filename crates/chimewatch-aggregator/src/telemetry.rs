//! The aggregator's self-metrics, each declared once: on `/metrics`, and in `ChimeWatch/Pipeline`
//! (`Service=aggregator`).

use chimewatch_telemetry::{Latency, MetricSet, Sample, Unit, cw};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone)]
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
    /// Datums of closed windows waiting to be published.
    pub pending_datums: Gauge,
    /// Datums and log events the sinks refused for their content, dead-lettered.
    pub datums_rejected: Counter,
    pub log_events_rejected: Counter,
    /// Times a shard stopped reading because too much waited to be published.
    pub backpressure_waits: Counter,
    /// From a window's close (the watermark passed its end) to the sink's acceptance of its last datum: on `up`, when
    /// its aggregates can be read from the embedded store.
    pub window_visible: Latency,
    /// From an event's arrival at the aggregator to the sink's acceptance of its log event, for the oldest event of
    /// each write.
    pub log_visible: Latency,
    set: MetricSet,
}

impl Default for AggregatorTelemetry {
    fn default() -> Self {
        let set = MetricSet::new("aggregator");
        let count = |name| cw(name, Unit::Count);
        Self {
            events: set.counter("events", "Meeting events aggregated into windows", count("AggregatorEvents")),
            late_events: set.counter(
                "late_events",
                "Events after their window was published",
                count("AggregatorLateEvents"),
            ),
            out_of_range: set.counter(
                "out_of_range_events",
                "Events outside CloudWatch's accepted time range",
                count("AggregatorOutOfRangeEvents"),
            ),
            folded: set.counter(
                "folded",
                "Facts folded into Other by the cardinality guard",
                count("AggregatorFolded"),
            ),
            sip_records: set.counter(
                "sip_records",
                "SIP message log records tracked into calls",
                count("AggregatorSipRecords"),
            ),
            sip_unparsable: set.counter(
                "sip_unparsable",
                "SIP records whose message does not parse",
                count("AggregatorSipUnparsable"),
            ),
            calls_tracked: set.gauge("calls_tracked", "Calls the tracker holds", count("AggregatorCallsTracked")),
            windows_published: set.counter(
                "windows_published",
                "Windows published",
                count("AggregatorWindowsPublished"),
            ),
            datums_published: set.counter(
                "datums_published",
                "Metric datums published",
                count("AggregatorDatumsPublished"),
            ),
            log_events_written: set.counter(
                "log_events_written",
                "Log events written",
                count("AggregatorLogEventsWritten"),
            ),
            publish_failures: set.counter(
                "publish_failures",
                "Failed publishes, retried",
                count("AggregatorPublishFailures"),
            ),
            open_windows: set.gauge(
                "open_windows",
                "Windows open or waiting to be published",
                count("AggregatorOpenWindows"),
            ),
            pending_log_events: set.gauge(
                "pending_log_events",
                "Log events waiting to be written",
                count("AggregatorPendingLogEvents"),
            ),
            pending_datums: set.gauge(
                "pending_datums",
                "Datums waiting to be published",
                count("AggregatorPendingDatums"),
            ),
            datums_rejected: set.counter(
                "datums_rejected",
                "Datums the metric sink refused for their content, dead-lettered",
                count("AggregatorDatumsRejected"),
            ),
            log_events_rejected: set.counter(
                "log_events_rejected",
                "Log events the log sink refused for their content, dead-lettered",
                count("AggregatorLogEventsRejected"),
            ),
            backpressure_waits: set.counter(
                "backpressure_waits",
                "Times a shard stopped reading until what waited was published",
                count("AggregatorBackpressureWaits"),
            ),
            window_visible: set.latency(
                "window_visible",
                "Time from a window's close to its datums' acceptance by the metric sink",
                "AggregatorWindowVisibleLatency",
            ),
            log_visible: set.latency(
                "log_visible",
                "Time from an event's arrival to its log event's acceptance by the log sink (oldest of each write)",
                "AggregatorLogVisibleLatency",
            ),
            set,
        }
    }
}

impl AggregatorTelemetry {
    pub fn register(&self, registry: &mut Registry) {
        self.set.register(registry);
    }

    /// The figures reported to CloudWatch (`ChimeWatch/Pipeline`).
    pub fn samples(&self) -> Vec<Sample> {
        self.set.samples()
    }
}
