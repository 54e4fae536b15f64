//! Tests of consumers' holds: retention by size and by age keeps what a registered consumer still needs, a full
//! shard refuses puts instead of deleting it, and a lease store publishes checkpoints as the consumer's hold.

use std::sync::Arc;
use std::time::Duration;

use crate::Producer;
use crate::lease::memory::MemoryLeaseStore;
use crate::local::{LocalLog, LocalLogConfig};
use crate::ports::{OutRecord, ProduceError};
use crate::telemetry::ProducerTelemetry;

use super::*;

fn rec(value: &str) -> OutRecord {
    OutRecord { partition_key: "k".into(), data: value.as_bytes().to_vec() }
}

/// Every record of shard 0 a reader from the start sees, as (sequence, value).
fn read_shard(log: &LocalLog) -> Vec<(u64, String)> {
    let mut r = log.reader(0, 0).unwrap();
    let mut out = Vec::new();
    loop {
        let batch = r.read(1000, usize::MAX).unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch.into_iter().map(|r| (r.sequence, String::from_utf8(r.data).unwrap())));
    }
}

/// 28-byte frames: 7 to a 200-byte segment.
fn value(i: usize) -> String {
    format!("value-{i:03}")
}

#[tokio::test]
async fn size_retention_refuses_puts_rather_than_delete_what_a_consumer_needs() {
    let dir = tempfile::tempdir().unwrap();
    let config = LocalLogConfig { shards: 1, segment_bytes: 200, max_shard_bytes: 600, ..LocalLogConfig::default() };
    let log = LocalLog::open(dir.path(), &config, ProducerTelemetry::default()).unwrap();
    let hold = log.hold("archiver");

    let mut accepted = 0;
    let refusal = loop {
        match log.put(vec![rec(&value(accepted))]).await {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100, "puts are refused once the shard's budget is full of held records");
    };
    let ProduceError::Unavailable { reason, .. } = &refusal else { panic!("{refusal:?}") };
    assert!(reason.contains("full") && reason.contains("\"archiver\""), "the reason names the consumer: {reason}");
    assert_eq!(log.log_telemetry().refused_held.get(), 1);
    let kept = read_shard(&log);
    assert_eq!(kept.len(), accepted, "nothing the consumer needs was deleted");
    assert_eq!(kept[0].1, value(0));

    // The consumer checkpoints record 10: what comes before its segment may go, and puts are accepted again.
    let (checkpoint, _) = kept[10].clone();
    hold.set(0, checkpoint);
    log.put(vec![rec("after")]).await.unwrap();
    let kept = read_shard(&log);
    assert!(kept.first().unwrap().0 <= checkpoint, "the checkpointed record is kept: {kept:?}");
    assert!(kept.first().unwrap().0 > 0, "older segments were deleted");
    assert_eq!(kept.last().unwrap().1, "after");

    // A consumer that goes away holds nothing.
    drop(hold);
    for i in 0..40 {
        log.put(vec![rec(&value(100 + i))]).await.unwrap();
    }
    log.close().await;
}

#[tokio::test]
async fn age_retention_keeps_what_a_consumer_needs_until_it_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    // Every sealed segment is past its age at once.
    let config =
        LocalLogConfig { shards: 1, segment_bytes: 200, retention: Duration::ZERO, ..LocalLogConfig::default() };
    let log = LocalLog::open(dir.path(), &config, ProducerTelemetry::default()).unwrap();
    let hold = log.hold("aggregator");
    for i in 0..30 {
        log.put(vec![rec(&value(i))]).await.unwrap();
    }
    assert_eq!(read_shard(&log).len(), 30, "held records outlive their retention age");

    hold.set(0, 196 * 2);
    for i in 30..37 {
        log.put(vec![rec(&value(i))]).await.unwrap();
    }
    let kept = read_shard(&log);
    assert_eq!(kept.first().unwrap(), &(196 * 2, value(14)), "deleted up to the segment holding the hold");
    log.close().await;
}

#[tokio::test]
async fn the_oldest_of_several_holds_counts_and_other_shards_are_not_held() {
    let dir = tempfile::tempdir().unwrap();
    let log =
        LocalLog::open(dir.path(), &LocalLogConfig { shards: 2, ..LocalLogConfig::default() }, Default::default())
            .unwrap();
    let a = log.hold("aggregator");
    let b = log.hold("archiver");
    a.set(0, 500);
    b.set(0, 300);
    b.set(1, 900);
    a.set(1, 1000);
    let holds = &log.shared.holds;
    assert_eq!(holds.oldest_needed(0), Some((300, "archiver".to_owned())));
    assert_eq!(holds.oldest_needed(1), Some((900, "archiver".to_owned())));
    drop(b);
    assert_eq!(holds.oldest_needed(0), Some((500, "aggregator".to_owned())));
    drop(a);
    assert_eq!(holds.oldest_needed(0), None);
}

#[tokio::test]
async fn a_wrapped_lease_store_publishes_stored_and_listed_checkpoints_as_the_hold() {
    let dir = tempfile::tempdir().unwrap();
    let log =
        LocalLog::open(dir.path(), &LocalLogConfig { shards: 2, ..LocalLogConfig::default() }, Default::default())
            .unwrap();
    let inner = MemoryLeaseStore::default();
    let lease = |shard: &str, checkpoint| Lease {
        shard_id: shard.into(),
        owner: None,
        counter: 0,
        checkpoint,
        parents: Vec::new(),
    };
    let at = |n: u64| Checkpoint::At { sequence: n.into(), sub_sequence: 0 };
    // A restarted process: the store already has a checkpoint; listing it publishes it.
    inner.create_if_absent(lease("shard-0001", at(4242))).await.unwrap();
    let store = log.hold("aggregator").checkpoints(inner);
    assert_eq!(store.hold().needed_from(1), Some(0), "needs everything until it says otherwise");
    store.list().await.unwrap();
    assert_eq!(store.hold().needed_from(1), Some(4242));

    store.create_if_absent(lease("shard-0000", Checkpoint::TrimHorizon)).await.unwrap();
    let taken = store.take("shard-0000", 0, "worker").await.unwrap();
    store.checkpoint("shard-0000", "worker", taken.counter, at(196)).await.unwrap();
    assert_eq!(store.hold().needed_from(0), Some(196));
    // A fenced checkpoint (stale counter) was not stored, so it is not published either.
    assert!(store.checkpoint("shard-0000", "worker", taken.counter + 7, at(9999)).await.is_err());
    assert_eq!(store.hold().needed_from(0), Some(196));
    assert_eq!(log.shared.holds.oldest_needed(0), Some((196, "aggregator".to_owned())));
}

/// A processor whose records become durable only when the test says (as a window that has not closed yet).
#[derive(Debug, Clone, Default)]
struct Gate(Arc<std::sync::atomic::AtomicBool>);

struct GatedProcessor {
    gate: Gate,
    read: Option<crate::consumer::Position>,
}

impl crate::consumer::ProcessorFactory for Gate {
    fn create(&self, _shard_id: &str, _fence: crate::consumer::Fence) -> Box<dyn crate::consumer::ShardProcessor> {
        Box::new(GatedProcessor { gate: self.clone(), read: None })
    }
}

#[async_trait]
impl crate::consumer::ShardProcessor for GatedProcessor {
    async fn process(
        &mut self,
        batch: crate::consumer::Batch,
    ) -> Result<Option<crate::consumer::Position>, crate::consumer::ProcessError> {
        if batch.end.is_some() {
            self.read = batch.end;
        }
        let open = self.gate.0.load(std::sync::atomic::Ordering::Acquire);
        Ok(if open { self.read.clone() } else { None })
    }

    async fn flush(&mut self) -> Result<Option<crate::consumer::Position>, crate::consumer::ProcessError> {
        Ok(None)
    }
}

#[tokio::test]
async fn the_consumer_runtime_holds_what_it_has_read_but_not_checkpointed() {
    use crate::consumer::{ConsumerTelemetry, DeadLetters, Worker, WorkerConfig};

    let dir = tempfile::tempdir().unwrap();
    let config = LocalLogConfig { shards: 1, segment_bytes: 200, max_shard_bytes: 600, ..LocalLogConfig::default() };
    let log = Arc::new(LocalLog::open(&dir.path().join("stream"), &config, ProducerTelemetry::default()).unwrap());
    // Its records are not chimewatch records: they go to the dead letters, and still count as read.
    let dead: Arc<dyn Producer> =
        Arc::new(LocalLog::open(&dir.path().join("dead"), &LocalLogConfig::default(), Default::default()).unwrap());
    let gate = Gate::default();
    let worker = Worker::new(
        WorkerConfig {
            round_interval: Duration::from_millis(50),
            discovery_interval: Duration::from_millis(50),
            ..WorkerConfig::new("w")
        },
        Arc::new(crate::local::LocalSource::new(log.clone()).poll_interval(Duration::from_millis(10))),
        Arc::new(log.hold("aggregator").checkpoints(MemoryLeaseStore::default())),
        Arc::new(gate.clone()),
        DeadLetters::to(dead),
        ConsumerTelemetry::default(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));

    // The consumer reads everything but makes nothing durable: the shard fills up and refuses puts.
    let mut accepted = 0;
    while log.put(vec![rec(&value(accepted))]).await.is_ok() {
        accepted += 1;
        assert!(accepted < 100, "puts are refused while the consumer has checkpointed nothing");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(log.put(vec![rec("still refused")]).await.is_err(), "reading alone does not release anything");
    assert_eq!(read_shard(&log).len(), accepted);

    // The consumer's window closes: it checkpoints, the hold follows, and puts are accepted again.
    gate.0.store(true, std::sync::atomic::Ordering::Release);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log.put(vec![rec("after the checkpoint")]).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "puts are accepted again once the consumer checkpoints");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(read_shard(&log).first().unwrap().0 > 0, "retention deleted what the consumer checkpointed past");
    drop(stop);
    task.await.unwrap();
    log.close().await;
}
