//! The embedded log's own metrics: what it refused and what it lost, each declared once.

use chimewatch_telemetry::{MetricSet, Sample, Unit, cw};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone)]
pub struct LogTelemetry {
    /// Group commits that failed to reach the disk (a full disk, an I/O error); their puts were answered with errors.
    pub write_failures: Counter,
    /// Puts refused because the shard's writer could not write: a failed write it could not cut back yet, or an
    /// unfinished segment roll.
    pub refused_unwritable: Counter,
    /// Puts refused because `max_shard_bytes` was reached and the oldest records are still needed by a consumer.
    pub refused_held: Counter,
    /// Bytes a reader skipped because frames were damaged: records in them are lost. Each reader that passes a
    /// damaged span counts it.
    pub corrupt_bytes_skipped: Counter,
    set: MetricSet,
}

impl Default for LogTelemetry {
    fn default() -> Self {
        let set = MetricSet::new("local_log");
        Self {
            write_failures: set.counter(
                "write_failures",
                "Group commits of the embedded log that failed to reach the disk",
                cw("LocalLogWriteFailures", Unit::Count),
            ),
            refused_unwritable: set.counter(
                "refused_unwritable",
                "Puts refused while a shard of the embedded log could not be written",
                cw("LocalLogRefusedUnwritable", Unit::Count),
            ),
            refused_held: set.counter(
                "refused_held",
                "Puts refused because a shard is full of records consumers still need",
                cw("LocalLogRefusedHeld", Unit::Count),
            ),
            corrupt_bytes_skipped: set.counter(
                "corrupt_bytes_skipped",
                "Bytes of damaged frames readers skipped (records lost)",
                cw("LocalLogCorruptBytesSkipped", Unit::Bytes),
            ),
            set,
        }
    }
}

impl LogTelemetry {
    pub fn register(&self, registry: &mut Registry) {
        self.set.register(registry);
    }

    /// The figures reported to CloudWatch (`ChimeWatch/Pipeline`).
    pub fn samples(&self) -> Vec<Sample> {
        self.set.samples()
    }
}
