//! The archiver's self-metrics, named once: on `/metrics`, and published to `ChimeWatch/Pipeline` with
//! `Service=archiver`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chimewatch_sinks::{Sample, SampleKind, Unit};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Default)]
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
        let r = registry.sub_registry_with_prefix("archiver");
        r.register("rows", "Rows buffered for the archive", self.rows.clone());
        r.register("late_rows", "Rows whose event hour had ended before they arrived", self.late_rows.clone());
        r.register("objects", "Objects committed", self.objects.clone());
        r.register("bytes", "Bytes of objects committed", self.bytes.clone());
        r.register("rows_written", "Rows in objects committed", self.rows_written.clone());
        r.register("cuts", "Cuts written and checkpointed", self.cuts.clone());
        r.register(
            "claims_followed",
            "Cuts that followed an earlier claim for the same rows",
            self.claims_followed.clone(),
        );
        r.register("write_failures", "Failed writes, redone from the checkpoint", self.write_failures.clone());
        r.register("open_partitions", "Partition buffers open", self.open_partitions.clone());
        r.register("buffered_bytes", "Bytes of rows buffered", self.buffered_bytes.clone());
        r.register("rows_per_file", "Mean rows per object of the last cut", self.rows_per_file.clone());
        r.register(
            "commit_latency_milliseconds",
            "Longest arrival-to-commit time of the last cut",
            self.commit_latency_ms.clone(),
        );
    }

    pub fn samples(&self) -> Vec<Sample> {
        let counter = |name, unit, c: &Counter| Sample { name, unit, kind: SampleKind::Counter(c.get()) };
        let gauge = |name, unit, g: &Gauge| Sample { name, unit, kind: SampleKind::Gauge(g.get() as f64) };
        vec![
            counter("ArchiverRows", Unit::Count, &self.rows),
            counter("ArchiverLateRows", Unit::Count, &self.late_rows),
            counter("ArchiverObjects", Unit::Count, &self.objects),
            counter("ArchiverBytes", Unit::Bytes, &self.bytes),
            counter("ArchiverRowsWritten", Unit::Count, &self.rows_written),
            counter("ArchiverWriteFailures", Unit::Count, &self.write_failures),
            gauge("ArchiverOpenPartitions", Unit::Count, &self.open_partitions),
            gauge("ArchiverBufferedBytes", Unit::Bytes, &self.buffered_bytes),
            gauge("ArchiverRowsPerFile", Unit::Count, &self.rows_per_file),
            gauge("ArchiverCommitLatency", Unit::Milliseconds, &self.commit_latency_ms),
        ]
    }
}
