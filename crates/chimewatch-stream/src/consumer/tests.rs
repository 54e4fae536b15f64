//! Service tests of the consumer runtime with in-memory fakes on tokio's paused clock: every record processed once
//! per lease, checkpoints only what a processor made durable, dead letters, fencing after a lease is lost, parents
//! before children, takeover of a dead worker's shards, restart after a processor error, graceful release.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chimewatch_model::kpl::Aggregator;
use chimewatch_model::{Ingest, MeetingEvent, MeetingEventRecord, Record};

use super::*;
use crate::lease::memory::MemoryLeaseStore;
use crate::lease::{Lease, LeaseStore};
use crate::ports::{OutRecord, ProduceError, Producer};

/// A stream in memory. Shards close moto-style by default: ListShards shows the ending sequence number but reads
/// never end; with `null_iterator_at_end`, a closed shard's last read says so, as Kinesis does.
#[derive(Debug, Default)]
struct FakeStream {
    shards: Mutex<BTreeMap<String, (ShardInfo, Vec<StreamRecord>)>>,
    null_iterator_at_end: bool,
    next_sequence: Mutex<u128>,
}

impl FakeStream {
    fn with_shards(ids: &[&str]) -> Arc<Self> {
        let stream = Self::default();
        for id in ids {
            stream.add_shard(id, &[]);
        }
        Arc::new(stream)
    }

    fn add_shard(&self, id: &str, parents: &[&str]) {
        let info = ShardInfo {
            shard_id: (*id).into(),
            parents: parents.iter().map(|p| (*p).into()).collect(),
            ending_sequence: None,
            hash_range: None,
        };
        self.shards.lock().unwrap().insert((*id).into(), (info, Vec::new()));
    }

    /// Appends raw data to a shard; returns its sequence number.
    fn put(&self, shard: &str, key: &str, data: Vec<u8>) -> u128 {
        let mut next = self.next_sequence.lock().unwrap();
        *next += 1;
        let mut shards = self.shards.lock().unwrap();
        let (info, records) = shards.get_mut(shard).unwrap();
        assert!(info.ending_sequence.is_none(), "put on closed shard {shard}");
        records.push(StreamRecord {
            shard_id: shard.into(),
            sequence_number: SequenceNumber::parse(&next.to_string()).unwrap(),
            sub_sequence_number: 0,
            partition_key: key.into(),
            arrival: crate::UnixMillis(1_000),
            data,
        });
        *next
    }

    fn event(&self, shard: &str, key: &str, n: u64) -> u128 {
        self.put(shard, key, event(key, n).encode())
    }

    fn close(&self, shard: &str) {
        let mut shards = self.shards.lock().unwrap();
        let (info, records) = shards.get_mut(shard).unwrap();
        info.ending_sequence = Some(records.last().map_or(SequenceNumber::from(0), |r| r.sequence_number.clone()));
    }
}

#[derive(Debug)]
struct FakeSource(Arc<FakeStream>);

#[async_trait]
impl ShardSource for FakeSource {
    async fn shards(&self) -> Result<Vec<ShardInfo>, ConsumeError> {
        Ok(self.0.shards.lock().unwrap().values().map(|(i, _)| i.clone()).collect())
    }

    async fn open(&self, shard: &ShardInfo, from: &Checkpoint) -> Result<Box<dyn ShardCursor>, ConsumeError> {
        let records = &self.0.shards.lock().unwrap()[&shard.shard_id].1;
        let index = match from {
            Checkpoint::At { sequence, .. } => records.iter().position(|r| &r.sequence_number == sequence).unwrap(),
            _ => 0,
        };
        Ok(Box::new(FakeCursor { stream: self.0.clone(), shard_id: shard.shard_id.clone(), index }))
    }
}

#[derive(Debug)]
struct FakeCursor {
    stream: Arc<FakeStream>,
    shard_id: String,
    index: usize,
}

#[async_trait]
impl ShardCursor for FakeCursor {
    async fn next(&mut self) -> Result<RawBatch, ConsumeError> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let shards = self.stream.shards.lock().unwrap();
        let (info, records) = &shards[&self.shard_id];
        let batch: Vec<StreamRecord> = records.iter().skip(self.index).take(3).cloned().collect();
        self.index += batch.len();
        let end = self.stream.null_iterator_at_end && info.ending_sequence.is_some() && self.index == records.len();
        let behind = (records.len() - self.index) as i64 * 100;
        Ok(RawBatch { records: batch, millis_behind_latest: Some(behind), end_of_shard: end, throttled_reads: 0 })
    }
}

fn event(key: &str, n: u64) -> Record {
    let attributes = serde_json::json!({ "meetingId": "m", "attendeeId": key, "n": n, "timestampMs": 1_000 });
    Record::MeetingEvent(MeetingEventRecord {
        v: 1,
        received_at_ms: 1_000,
        ingest: Ingest::Batch,
        event: MeetingEvent {
            name: "meetingStartRequested".into(),
            attributes: attributes.as_object().unwrap().clone(),
        },
        original: Default::default(),
        truncation: Default::default(),
        delivery: None,
    })
}

/// What every processor of a test saw: (worker, shard, attendee, n) in processing order.
type Seen = Arc<Mutex<Vec<(String, String, String, u64)>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Durable as soon as processed.
    Immediate,
    /// Durable only on flush (a processor buffering a file or a window).
    OnFlush,
    /// Fails on its first batch with records, once per shard, then behaves like `Immediate`.
    FailOnce,
}

#[derive(Debug)]
struct Factory {
    worker: String,
    seen: Seen,
    mode: Mode,
    failed: Arc<Mutex<Vec<String>>>,
}

impl ProcessorFactory for Factory {
    fn create(&self, shard_id: &str, _fence: Fence) -> Box<dyn ShardProcessor> {
        Box::new(Recorder {
            worker: self.worker.clone(),
            shard: shard_id.into(),
            seen: self.seen.clone(),
            mode: self.mode,
            failed: self.failed.clone(),
            pending: None,
        })
    }
}

struct Recorder {
    worker: String,
    shard: String,
    seen: Seen,
    mode: Mode,
    failed: Arc<Mutex<Vec<String>>>,
    pending: Option<Position>,
}

#[async_trait]
impl ShardProcessor for Recorder {
    async fn process(&mut self, batch: Batch) -> Result<Option<Position>, ProcessError> {
        if self.mode == Mode::FailOnce && !batch.records.is_empty() {
            let mut failed = self.failed.lock().unwrap();
            if !failed.contains(&self.shard) {
                failed.push(self.shard.clone());
                return Err(ProcessError("the metric sink is down".into()));
            }
        }
        for c in &batch.records {
            let Record::MeetingEvent(e) = &c.record else { panic!("unexpected record") };
            let a = &e.event.attributes;
            self.seen.lock().unwrap().push((
                self.worker.clone(),
                self.shard.clone(),
                a["attendeeId"].as_str().unwrap().into(),
                a["n"].as_u64().unwrap(),
            ));
        }
        if batch.end.is_some() {
            self.pending = batch.end;
        }
        Ok(if self.mode == Mode::OnFlush { None } else { self.pending.clone() })
    }

    async fn flush(&mut self) -> Result<Option<Position>, ProcessError> {
        Ok(self.pending.clone())
    }
}

/// A dead-letter destination that keeps what it gets.
#[derive(Debug, Default)]
struct Letters(Mutex<Vec<OutRecord>>);

#[async_trait]
impl Producer for Letters {
    async fn put(&self, records: Vec<OutRecord>) -> Result<(), ProduceError> {
        self.0.lock().unwrap().extend(records);
        Ok(())
    }
    fn is_ready(&self) -> bool {
        true
    }
    async fn close(&self) {}
}

struct Harness {
    stream: Arc<FakeStream>,
    store: Arc<MemoryLeaseStore>,
    seen: Seen,
    letters: Arc<Letters>,
    failed: Arc<Mutex<Vec<String>>>,
}

impl Harness {
    fn new(stream: Arc<FakeStream>) -> Self {
        Self { stream, store: Arc::default(), seen: Seen::default(), letters: Arc::default(), failed: Arc::default() }
    }

    fn config(id: &str) -> WorkerConfig {
        WorkerConfig {
            failover: Duration::from_secs(3),
            round_interval: Duration::from_secs(1),
            discovery_interval: Duration::from_secs(1),
            max_takes_per_round: 2,
            ..WorkerConfig::new(id)
        }
    }

    /// Spawns a worker; it stops gracefully when the returned sender is dropped or fires.
    fn spawn(
        &self,
        id: &str,
        mode: Mode,
        telemetry: ConsumerTelemetry,
    ) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let worker = Worker::new(
            Self::config(id),
            Arc::new(FakeSource(self.stream.clone())),
            self.store.clone(),
            Arc::new(Factory { worker: id.into(), seen: self.seen.clone(), mode, failed: self.failed.clone() }),
            DeadLetters::to(self.letters.clone()),
            telemetry,
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(worker.run(async move {
            let _ = stopped.await;
        }));
        (stop, task)
    }

    async fn leases(&self) -> BTreeMap<String, Lease> {
        self.store.list().await.unwrap().into_iter().map(|l| (l.shard_id.clone(), l)).collect()
    }

    /// (attendee, n) pairs processed, with how often each was.
    fn counts(&self) -> HashMap<(String, u64), usize> {
        let mut counts = HashMap::new();
        for (_, _, key, n) in self.seen.lock().unwrap().iter() {
            *counts.entry((key.clone(), *n)).or_default() += 1;
        }
        counts
    }
}

fn checkpoint_at(sequence: u128) -> Checkpoint {
    Checkpoint::At { sequence: SequenceNumber::parse(&sequence.to_string()).unwrap(), sub_sequence: 0 }
}

#[tokio::test(start_paused = true)]
async fn one_worker_processes_every_shard_in_order_and_checkpoints_the_last_record() {
    let stream = FakeStream::with_shards(&["s0", "s1", "s2"]);
    let mut last = BTreeMap::new();
    for n in 0..10 {
        for (i, shard) in ["s0", "s1", "s2"].iter().enumerate() {
            last.insert(shard.to_string(), stream.event(shard, &format!("a{i}"), n));
        }
    }
    let h = Harness::new(stream);
    let telemetry = ConsumerTelemetry::default();
    let (stop, task) = h.spawn("w1", Mode::Immediate, telemetry.clone());
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(telemetry.leases_held.get(), 3);
    assert_eq!(telemetry.records.get(), 30);
    for (shard, lease) in h.leases().await {
        assert_eq!(lease.checkpoint, checkpoint_at(last[&shard]), "{shard}");
        assert_eq!(lease.owner.as_deref(), Some("w1"));
    }
    for key in ["a0", "a1", "a2"] {
        let ns: Vec<u64> = h.seen.lock().unwrap().iter().filter(|s| s.2 == key).map(|s| s.3).collect();
        assert_eq!(ns, (0..10).collect::<Vec<_>>(), "{key} in order, once");
    }
    drop(stop);
    task.await.unwrap();
    assert!(h.leases().await.values().all(|l| l.owner.is_none()), "a graceful stop releases every lease");
    assert_eq!(telemetry.leases_held.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_processor_that_holds_records_is_checkpointed_only_after_its_flush() {
    let stream = FakeStream::with_shards(&["s0"]);
    let mut last = 0;
    for n in 0..5 {
        last = stream.event("s0", "a", n);
    }
    let h = Harness::new(stream);
    let (stop, task) = h.spawn("w1", Mode::OnFlush, ConsumerTelemetry::default());
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(h.seen.lock().unwrap().len(), 5, "processed");
    assert_eq!(h.leases().await["s0"].checkpoint, Checkpoint::TrimHorizon, "but not durable: no checkpoint");
    drop(stop);
    task.await.unwrap();
    assert_eq!(h.leases().await["s0"].checkpoint, checkpoint_at(last), "flushed on shutdown, then checkpointed");
}

#[tokio::test(start_paused = true)]
async fn undecodable_records_go_to_dead_letters_with_their_reason_and_the_checkpoint_passes_them() {
    let stream = FakeStream::with_shards(&["s0"]);
    stream.event("s0", "a", 0);
    stream.put("s0", "a", b"{\"kind\":\"nonsense\"}".to_vec());
    // A KPL aggregate whose second user record is junk: the first is processed, the second dead-lettered.
    let mut agg = Aggregator::new();
    agg.push("a", event("a", 1).encode());
    agg.push("a", b"not a record".to_vec());
    stream.put("s0", "a", agg.finish());
    stream.put("s0", "a", vec![0x1f, 0x8b, 0, 1, 2]);
    let last = stream.event("s0", "a", 2);
    let h = Harness::new(stream);
    let telemetry = ConsumerTelemetry::default();
    let (stop, task) = h.spawn("w1", Mode::Immediate, telemetry.clone());
    tokio::time::sleep(Duration::from_secs(10)).await;
    drop(stop);
    task.await.unwrap();

    let ns: Vec<u64> = h.seen.lock().unwrap().iter().map(|s| s.3).collect();
    assert_eq!(ns, [0, 1, 2]);
    assert_eq!(telemetry.dead_lettered.get(), 3);
    let letters: Vec<serde_json::Value> =
        h.letters.0.lock().unwrap().iter().map(|r| serde_json::from_slice(&r.data).unwrap()).collect();
    assert_eq!(letters.len(), 3);
    assert_eq!((letters[0]["sequenceNumber"].as_str(), letters[0]["shardId"].as_str()), (Some("2"), Some("s0")));
    assert!(letters[0]["reason"].as_str().unwrap().contains("nonsense"), "{}", letters[0]);
    assert_eq!((letters[1]["sequenceNumber"].as_str(), letters[1]["subSequenceNumber"].as_u64()), (Some("3"), Some(1)));
    assert!(letters[2]["reason"].as_str().unwrap().contains("gzip"), "{}", letters[2]);
    assert_eq!(h.leases().await["s0"].checkpoint, checkpoint_at(last));
}

#[tokio::test(start_paused = true)]
async fn a_dead_workers_shards_are_taken_over_after_the_failover_time_and_nothing_is_lost() {
    let stream = FakeStream::with_shards(&["s0", "s1", "s2", "s3"]);
    let h = Harness::new(stream.clone());
    let (stop1, w1) = h.spawn("w1", Mode::Immediate, ConsumerTelemetry::default());
    let (stop2, w2) = h.spawn("w2", Mode::Immediate, ConsumerTelemetry::default());
    for n in 0..20 {
        for i in 0..4 {
            stream.event(&format!("s{i}"), &format!("a{i}"), n);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let owners: Vec<Option<String>> = h.leases().await.values().map(|l| l.owner.clone()).collect();
    assert_eq!(owners.iter().filter(|o| o.as_deref() == Some("w1")).count(), 2, "balanced: {owners:?}");
    // w1 dies without a word: its leases expire after the failover time and w2 takes them.
    w1.abort();
    drop(stop1);
    for n in 20..40 {
        for i in 0..4 {
            stream.event(&format!("s{i}"), &format!("a{i}"), n);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(h.leases().await.values().all(|l| l.owner.as_deref() == Some("w2")));
    let counts = h.counts();
    for i in 0..4 {
        for n in 0..40 {
            assert!(counts.contains_key(&(format!("a{i}"), n)), "a{i}/{n} was never processed");
        }
    }
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    // At most what w1 processed after its last checkpoint: here one read (3 records) per shard.
    assert!(duplicates <= 2 * 3, "{duplicates} duplicates");
    drop(stop2);
    w2.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_worker_whose_lease_is_stolen_stops_and_cannot_checkpoint() {
    let stream = FakeStream::with_shards(&["s0"]);
    stream.event("s0", "a", 0);
    let h = Harness::new(stream.clone());
    let telemetry = ConsumerTelemetry::default();
    let (_stop, _task) = h.spawn("w1", Mode::Immediate, telemetry.clone());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let lease = h.leases().await["s0"].clone();
    assert_eq!(lease.owner.as_deref(), Some("w1"));
    // Another worker takes the lease behind w1's back, and keeps renewing it.
    let taken = h.store.take("s0", lease.counter, "thief").await.unwrap();
    let store = h.store.clone();
    tokio::spawn(async move {
        let mut counter = taken.counter;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            counter = store.renew("s0", "thief", counter).await.unwrap().counter;
        }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(telemetry.leases_lost.get(), 1);
    assert_eq!(telemetry.leases_held.get(), 0);
    let seen_before = h.seen.lock().unwrap().len();
    stream.event("s0", "a", 1);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(h.seen.lock().unwrap().len(), seen_before, "w1 no longer reads the shard");
    let after = h.leases().await["s0"].clone();
    assert_eq!(after.owner.as_deref(), Some("thief"));
    assert_eq!(after.checkpoint, lease.checkpoint, "w1 did not checkpoint after the theft");
}

#[tokio::test(start_paused = true)]
async fn children_start_only_after_their_parent_ended_and_keys_keep_their_order() {
    for null_iterator_at_end in [false, true] {
        let stream = Arc::new(FakeStream { null_iterator_at_end, ..FakeStream::default() });
        stream.add_shard("parent", &[]);
        let h = Harness::new(stream.clone());
        let telemetry = ConsumerTelemetry::default();
        let (stop, task) = h.spawn("w1", Mode::Immediate, telemetry.clone());
        for n in 0..12 {
            stream.event("parent", &format!("k{}", n % 2), n);
        }
        // Split: the parent closes and its keys continue on the children. The children are listed at once, with
        // records waiting, while the parent still has records to read.
        stream.close("parent");
        stream.add_shard("left", &["parent"]);
        stream.add_shard("right", &["parent"]);
        for n in 12..24 {
            stream.event(if n % 2 == 0 { "left" } else { "right" }, &format!("k{}", n % 2), n);
        }
        tokio::time::sleep(Duration::from_secs(20)).await;
        drop(stop);
        task.await.unwrap();

        let seen = h.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 24, "{seen:?}");
        let last_parent = seen.iter().rposition(|s| s.1 == "parent").unwrap();
        let first_child = seen.iter().position(|s| s.1 != "parent").unwrap();
        assert!(last_parent < first_child, "children started before the parent ended: {seen:?}");
        for key in ["k0", "k1"] {
            let ns: Vec<u64> = seen.iter().filter(|s| s.2 == key).map(|s| s.3).collect();
            assert!(ns.windows(2).all(|w| w[0] < w[1]), "{key} out of order: {ns:?}");
        }
        assert_eq!(h.leases().await["parent"].checkpoint, Checkpoint::ShardEnd);
        assert_eq!(telemetry.shards_ended.get(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn a_processor_error_restarts_the_shard_from_its_checkpoint_with_nothing_lost() {
    let stream = FakeStream::with_shards(&["s0", "s1"]);
    for n in 0..6 {
        stream.event("s0", "a", n);
        stream.event("s1", "b", n);
    }
    let h = Harness::new(stream);
    let telemetry = ConsumerTelemetry::default();
    let (stop, task) = h.spawn("w1", Mode::FailOnce, telemetry.clone());
    tokio::time::sleep(Duration::from_secs(15)).await;
    drop(stop);
    task.await.unwrap();
    assert_eq!(telemetry.shard_restarts.get(), 2);
    let counts = h.counts();
    for key in ["a", "b"] {
        for n in 0..6 {
            assert_eq!(counts.get(&(key.to_owned(), n)), Some(&1), "{key}/{n}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn lag_is_reported_per_held_shard_and_on_the_registry() {
    let stream = FakeStream::with_shards(&["s0"]);
    for n in 0..9 {
        stream.event("s0", "a", n);
    }
    let h = Harness::new(stream);
    let telemetry = ConsumerTelemetry::default();
    let mut registry = prometheus_client::registry::Registry::with_prefix("chimewatch");
    telemetry.register(&mut registry);
    let (_stop, _task) = h.spawn("w1", Mode::Immediate, telemetry.clone());
    // The first read (at 200 ms) of 3 leaves 6 records (600 ms by the fake's reckoning) behind.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("chimewatch_consumer_millis_behind_latest{shard=\"s0\"} 600"), "{text}");
    assert!(text.contains("chimewatch_consumer_leases_held 1"), "{text}");
    assert_eq!(telemetry.max_millis_behind(), 600);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(telemetry.max_millis_behind(), 0, "caught up");
    let names: Vec<&str> = telemetry.samples().iter().map(|s| s.name).collect();
    assert!(names.contains(&"ConsumerMillisBehindLatest") && names.contains(&"ConsumerDeadLettered"));
}

#[test]
fn sequence_numbers_compare_as_numbers_of_any_length() {
    let n = |s: &str| SequenceNumber::parse(s).unwrap();
    assert!(n("9") < n("10"));
    assert!(
        n("49680428587740854544956167246890347392707908340247691266") > n("340282366920938463463374607431768211455")
    );
    assert_eq!(n("007"), n("7"));
    assert_eq!(n("000").as_str(), "0");
    assert!(
        SequenceNumber::parse("").is_err()
            && SequenceNumber::parse("12a").is_err()
            && SequenceNumber::parse("-1").is_err()
    );
    let p = |s: &str, sub| Position::new(SequenceNumber::parse(s).unwrap(), sub);
    assert!(p("10", 0) > p("9", 7) && p("10", 1) > p("10", 0));
}
