//! The archiver's self-metrics, named once: on `/metrics`, and published to `ChimeWatch/Pipeline` with
//! `Service=archiver`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chimewatch_telemetry::{MetricSet, Sample, Unit, cw};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone)]
pub struct ArchiverTelemetry {
    /// Rows buffered for the archive, both tables.
    pub rows: Counter,
    /// Rows whose event-time hour had ended before the stream received them (written to that older partition).
    pub late_rows: Counter,
    /// Objects committed, and their bytes and rows.
    pub objects: Counter,
    pub bytes: Counter,
    pub rows_written: Counter,
    /// Cuts: a shard's buffers written out together and checkpointed.
    pub cuts: Counter,
    /// Cuts that found an earlier claim for the same rows (a replay after a crash or a lease move) and followed it.
    pub claims_followed: Counter,
    /// Failed writes; the shard restarts from its checkpoint and writes the same keys again.
    pub write_failures: Counter,
    /// (table, partition) buffers open across this worker's shards.
    pub open_partitions: Gauge,
    /// Bytes of rows buffered (spooled on disk) across this worker's shards.
    pub buffered_bytes: Gauge,
    /// Mean rows per object of the last cut.
    pub rows_per_file: Gauge,
    /// The longest time from a row's arrival in the stream to its object's commit, in the last cut (ms).
    pub commit_latency_ms: Gauge,
    /// Per-shard levels summed into the gauges above (shards report their own, and add the difference).
    levels: Arc<Levels>,
    set: MetricSet,
}

impl Default for ArchiverTelemetry {
    fn default() -> Self {
        let set = MetricSet::new("archiver");
        let count = |name| cw(name, Unit::Count);
        Self {
            rows: set.counter("rows", "Rows buffered for the archive", count("ArchiverRows")),
            late_rows: set.counter(
                "late_rows",
                "Rows whose event hour had ended before they arrived",
                count("ArchiverLateRows"),
            ),
            objects: set.counter("objects", "Objects committed", count("ArchiverObjects")),
            bytes: set.counter("bytes", "Bytes of objects committed", cw("ArchiverBytes", Unit::Bytes)),
            rows_written: set.counter("rows_written", "Rows in objects committed", count("ArchiverRowsWritten")),
            cuts: set.counter("cuts", "Cuts written and checkpointed", count("ArchiverCuts")),
            claims_followed: set.counter(
                "claims_followed",
                "Cuts that followed an earlier claim for the same rows",
                count("ArchiverClaimsFollowed"),
            ),
            write_failures: set.counter(
                "write_failures",
                "Failed writes, redone from the checkpoint",
                count("ArchiverWriteFailures"),
            ),
            open_partitions: set.gauge("open_partitions", "Partition buffers open", count("ArchiverOpenPartitions")),
            buffered_bytes: set.gauge(
                "buffered_bytes",
                "Bytes of rows buffered",
                cw("ArchiverBufferedBytes", Unit::Bytes),
            ),
            rows_per_file: set.gauge(
                "rows_per_file",
                "Mean rows per object of the last cut",
                count("ArchiverRowsPerFile"),
            ),
            commit_latency_ms: set.gauge(
                "commit_latency_milliseconds",
                "Longest arrival-to-commit time of the last cut",
                cw("ArchiverCommitLatency", Unit::Milliseconds),
            ),
            levels: Arc::default(),
            set,
        }
    }
}

#[derive(Debug, Default)]
struct Levels {
    open_partitions: AtomicU64,
    buffered_bytes: AtomicU64,
}

/// One shard's contribution to the worker-wide gauges; withdrawn when the shard's processor is dropped.
#[derive(Debug)]
pub struct ShardLevels {
    telemetry: ArchiverTelemetry,
    open_partitions: u64,
    buffered_bytes: u64,
}

impl ShardLevels {
    pub fn new(telemetry: ArchiverTelemetry) -> Self {
        Self { telemetry, open_partitions: 0, buffered_bytes: 0 }
    }

    pub fn set(&mut self, open_partitions: u64, buffered_bytes: u64) {
        let levels = &self.telemetry.levels;
        levels.open_partitions.fetch_add(open_partitions.wrapping_sub(self.open_partitions), Ordering::Relaxed);
        levels.buffered_bytes.fetch_add(buffered_bytes.wrapping_sub(self.buffered_bytes), Ordering::Relaxed);
        self.open_partitions = open_partitions;
        self.buffered_bytes = buffered_bytes;
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.telemetry.open_partitions.set(gauge(levels.open_partitions.load(Ordering::Relaxed)));
        self.telemetry.buffered_bytes.set(gauge(levels.buffered_bytes.load(Ordering::Relaxed)));
    }
}

impl Drop for ShardLevels {
    fn drop(&mut self) {
        self.set(0, 0);
    }
}

impl ArchiverTelemetry {
    pub fn register(&self, registry: &mut Registry) {
        self.set.register(registry);
    }

    /// The figures reported to CloudWatch (`ChimeWatch/Pipeline`).
    pub fn samples(&self) -> Vec<Sample> {
        self.set.samples()
    }
}
