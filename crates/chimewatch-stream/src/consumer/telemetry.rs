//! The consumer's self-metrics, each declared once: lag per shard (millis behind latest, iterator age), records,
//! leases held, dead letters. Registered on the owning service's `/metrics`; CloudWatch gets the worst lag.

use chimewatch_telemetry::{Labeled, MetricSet, Sample, Unit, cw};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ShardLabel {
    pub shard: String,
}

#[derive(Debug, Clone)]
pub struct ConsumerTelemetry {
    /// Per held shard: how far the newest record of the shard is ahead of the last read, as the stream reports it
    /// (the iterator age where the stream does not say).
    pub millis_behind_latest: Labeled<ShardLabel, Gauge>,
    /// Per held shard: the age of the last record read when it was read (0 when caught up).
    pub iterator_age_ms: Labeled<ShardLabel, Gauge>,
    /// User records handed to processors (decoded).
    pub records: Counter,
    /// Stream bytes read.
    pub bytes: Counter,
    /// Records that could not be decoded and went to the dead-letter destination.
    pub dead_lettered: Counter,
    pub leases_held: Gauge,
    /// Leases this worker lost to another (stolen, or expired while it could not renew).
    pub leases_lost: Counter,
    pub checkpoints: Counter,
    /// Shards read to their end (closed by a reshard).
    pub shards_ended: Counter,
    /// Shard tasks restarted from their checkpoint after a read or processing error.
    pub shard_restarts: Counter,
    /// Reads the stream throttled, or that had to renew an expired iterator.
    pub read_throttles: Counter,
    /// User records of KPL aggregates outside their shard's hash range, skipped: an aggregate built before a
    /// reshard landed on a child, and its producer put those records again on the right shard.
    pub misrouted: Counter,
    set: MetricSet,
}

impl Default for ConsumerTelemetry {
    fn default() -> Self {
        let set = MetricSet::new("consumer");
        let count = |name| cw(name, Unit::Count);
        Self {
            millis_behind_latest: set.gauge_family(
                "millis_behind_latest",
                "How far the shard's newest record is ahead of the last read, in milliseconds",
                cw("ConsumerMillisBehindLatest", Unit::Milliseconds),
            ),
            iterator_age_ms: set.gauge_family(
                "iterator_age_milliseconds",
                "Age of the last record read, when read (0 when caught up)",
                cw("ConsumerIteratorAgeMilliseconds", Unit::Milliseconds),
            ),
            records: set.counter("records", "Decoded user records handed to processors", count("ConsumerRecords")),
            bytes: set.counter("read_bytes", "Stream bytes read", cw("ConsumerBytes", Unit::Bytes)),
            dead_lettered: set.counter(
                "dead_lettered",
                "Records that could not be decoded, sent to dead letters",
                count("ConsumerDeadLettered"),
            ),
            leases_held: set.gauge("leases_held", "Shard leases this worker holds", count("ConsumerLeasesHeld")),
            leases_lost: set.counter("leases_lost", "Leases lost to another worker", count("ConsumerLeasesLost")),
            checkpoints: set.counter("checkpoints", "Checkpoints written", count("ConsumerCheckpoints")),
            shards_ended: set.counter("shards_ended", "Closed shards read to their end", count("ConsumerShardsEnded")),
            shard_restarts: set.counter(
                "shard_restarts",
                "Shard restarts from the checkpoint after an error",
                count("ConsumerShardRestarts"),
            ),
            read_throttles: set.counter(
                "read_throttles",
                "Reads throttled by the stream or with an expired iterator",
                count("ConsumerReadThrottles"),
            ),
            misrouted: set.counter(
                "misrouted_skipped",
                "User records outside their shard's hash range, skipped (put again by their producer)",
                count("ConsumerMisroutedSkipped"),
            ),
            set,
        }
    }
}

impl ConsumerTelemetry {
    pub fn register(&self, registry: &mut Registry) {
        self.set.register(registry);
    }

    /// Sets a held shard's lag figures.
    pub(crate) fn lag(&self, shard: &str, millis_behind: Option<i64>, iterator_age: i64) {
        let label = ShardLabel { shard: shard.to_owned() };
        self.millis_behind_latest.get(&label).set(millis_behind.unwrap_or(iterator_age));
        self.iterator_age_ms.get(&label).set(iterator_age);
    }

    /// Forgets a shard this worker no longer holds, so its last lag does not linger on `/metrics`.
    pub(crate) fn forget(&self, shard: &str) {
        let label = ShardLabel { shard: shard.to_owned() };
        self.millis_behind_latest.remove(&label);
        self.iterator_age_ms.remove(&label);
    }

    /// The worst lag over held shards (what an alarm watches).
    pub fn max_millis_behind(&self) -> i64 {
        self.millis_behind_latest.fold(0, |m, _, g| m.max(g.get()))
    }

    /// The figures reported to CloudWatch (`ChimeWatch/Pipeline`).
    pub fn samples(&self) -> Vec<Sample> {
        self.set.samples()
    }
}
