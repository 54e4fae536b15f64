//! The consumer's self-metrics, named once: lag per shard (millis behind latest, iterator age), records, leases
//! held, dead letters. Registered on the owning service's `/metrics`; the worst lag is also published to CloudWatch.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chimewatch_sinks::{Sample, SampleKind, Unit as CwUnit};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ShardLabel {
    pub shard: String,
}

#[derive(Debug, Clone, Default)]
pub struct ConsumerTelemetry {
    /// Per held shard: how far the newest record of the shard is ahead of the last read, as the stream reports it
    /// (the iterator age where the stream does not say).
    pub millis_behind_latest: Family<ShardLabel, Gauge>,
    /// Per held shard: the age of the last record read when it was read (0 when caught up).
    pub iterator_age_ms: Family<ShardLabel, Gauge>,
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
    /// The same lag figures, for the maxima published to CloudWatch (a prometheus family cannot be walked).
    lags: Arc<Mutex<BTreeMap<String, (i64, i64)>>>,
}

impl ConsumerTelemetry {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("consumer");
        r.register(
            "millis_behind_latest",
            "How far the shard's newest record is ahead of the last read, in milliseconds",
            self.millis_behind_latest.clone(),
        );
        r.register(
            "iterator_age_milliseconds",
            "Age of the last record read, when read (0 when caught up)",
            self.iterator_age_ms.clone(),
        );
        r.register("records", "Decoded user records handed to processors", self.records.clone());
        r.register("read_bytes", "Stream bytes read", self.bytes.clone());
        r.register(
            "dead_lettered",
            "Records that could not be decoded, sent to dead letters",
            self.dead_lettered.clone(),
        );
        r.register("leases_held", "Shard leases this worker holds", self.leases_held.clone());
        r.register("leases_lost", "Leases lost to another worker", self.leases_lost.clone());
        r.register("checkpoints", "Checkpoints written", self.checkpoints.clone());
        r.register("shards_ended", "Closed shards read to their end", self.shards_ended.clone());
        r.register("shard_restarts", "Shard restarts from the checkpoint after an error", self.shard_restarts.clone());
        r.register(
            "read_throttles",
            "Reads throttled by the stream or with an expired iterator",
            self.read_throttles.clone(),
        );
    }

    /// Sets a held shard's lag figures.
    pub(crate) fn lag(&self, shard: &str, millis_behind: Option<i64>, iterator_age: i64) {
        let label = ShardLabel { shard: shard.to_owned() };
        let behind = millis_behind.unwrap_or(iterator_age);
        self.millis_behind_latest.get_or_create(&label).set(behind);
        self.iterator_age_ms.get_or_create(&label).set(iterator_age);
        if let Ok(mut lags) = self.lags.lock() {
            lags.insert(shard.to_owned(), (behind, iterator_age));
        }
    }

    /// Forgets a shard this worker no longer holds, so its last lag does not linger on `/metrics`.
    pub(crate) fn forget(&self, shard: &str) {
        let label = ShardLabel { shard: shard.to_owned() };
        self.millis_behind_latest.remove(&label);
        self.iterator_age_ms.remove(&label);
        if let Ok(mut lags) = self.lags.lock() {
            lags.remove(shard);
        }
    }

    /// The worst lag over held shards (what an alarm watches).
    pub fn max_millis_behind(&self) -> i64 {
        self.lags.lock().map_or(0, |l| l.values().map(|v| v.0).max().unwrap_or(0))
    }

    pub fn max_iterator_age(&self) -> i64 {
        self.lags.lock().map_or(0, |l| l.values().map(|v| v.1).max().unwrap_or(0))
    }

    /// The figures published to CloudWatch (`ChimeWatch/Pipeline`).
    pub fn samples(&self) -> Vec<Sample> {
        let counter = |name, c: &Counter| Sample { name, unit: CwUnit::Count, kind: SampleKind::Counter(c.get()) };
        let gauge = |name, unit, v: f64| Sample { name, unit, kind: SampleKind::Gauge(v) };
        vec![
            counter("ConsumerRecords", &self.records),
            Sample { name: "ConsumerBytes", unit: CwUnit::Bytes, kind: SampleKind::Counter(self.bytes.get()) },
            counter("ConsumerDeadLettered", &self.dead_lettered),
            counter("ConsumerLeasesLost", &self.leases_lost),
            counter("ConsumerShardRestarts", &self.shard_restarts),
            counter("ConsumerReadThrottles", &self.read_throttles),
            counter("ConsumerMisroutedSkipped", &self.misrouted),
            gauge("ConsumerLeasesHeld", CwUnit::Count, self.leases_held.get() as f64),
            gauge("ConsumerMillisBehindLatest", CwUnit::Milliseconds, self.max_millis_behind() as f64),
            gauge("ConsumerIteratorAgeMilliseconds", CwUnit::Milliseconds, self.max_iterator_age() as f64),
        ]
    }
}
