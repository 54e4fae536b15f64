//! The consumer runtime end to end: three workers over an 8-shard Kinesis stream on moto (DynamoDB leases on moto)
//! with one killed mid-stream; a split mid-stream on kinesalite (moto keeps routing records to a closed parent) with
//! per-key order across the parent and its children; CloudWatch Logs envelopes and junk decoded, with dead letters
//! on a second stream; the embedded log with its checkpoint file, resumed after a restart.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chimewatch_model::{Ingest, MeetingEvent, MeetingEventRecord, Record};
use chimewatch_stream::consumer::{
    Batch, ConsumerTelemetry, DeadLetters, Fence, Position, ProcessError, ProcessorFactory, ShardProcessor,
    ShardSource, Worker, WorkerConfig,
};
use chimewatch_stream::kinesis::{
    KinesisProducer, KinesisProducerConfig, KinesisSource, KinesisSourceConfig, ReadFrom, read_stream,
};
use chimewatch_stream::lease::dynamodb::DynamoLeaseStore;
use chimewatch_stream::lease::file::FileLeaseStore;
use chimewatch_stream::lease::{Checkpoint, Lease, LeaseStore};
use chimewatch_stream::local::{LocalLog, LocalLogConfig, LocalSource};
use chimewatch_stream::{OutRecord, Producer, ProducerTelemetry};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::harness::{fixture, moto_url, unique};
use crate::kinesis::{client as kinesis_client, create_stream};
use crate::leases::client as dynamodb_client;

/// One record as a processor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    worker: String,
    shard: String,
    key: String,
    n: u64,
}

type SeenLog = Arc<Mutex<Vec<Seen>>>;

/// Keeps what it is handed in memory the test outlives. Like a processor that writes files or windows, it reports
/// its records durable only every `durable_every` batches with records (and on flush).
#[derive(Debug)]
struct Collect {
    worker: String,
    seen: SeenLog,
    durable_every: usize,
}

impl ProcessorFactory for Collect {
    fn create(&self, shard_id: &str, _fence: Fence) -> Box<dyn ShardProcessor> {
        Box::new(CollectShard {
            worker: self.worker.clone(),
            shard: shard_id.into(),
            seen: self.seen.clone(),
            durable_every: self.durable_every,
            batches: 0,
            pending: None,
        })
    }
}

struct CollectShard {
    worker: String,
    shard: String,
    seen: SeenLog,
    durable_every: usize,
    batches: usize,
    pending: Option<Position>,
}

#[async_trait]
impl ShardProcessor for CollectShard {
    async fn process(&mut self, batch: Batch) -> Result<Option<Position>, ProcessError> {
        let mut seen = self.seen.lock().unwrap();
        for c in &batch.records {
            let (key, n) = match &c.record {
                Record::MeetingEvent(e) => {
                    let a = &e.event.attributes;
                    (a["attendeeId"].as_str().unwrap().to_owned(), a["n"].as_u64().unwrap())
                }
                Record::SipMessage(s) => (format!("sip:{}", s.record.call_id), c.log_event as u64),
            };
            seen.push(Seen { worker: self.worker.clone(), shard: self.shard.clone(), key, n });
        }
        if batch.end.is_some() {
            self.pending = batch.end;
            self.batches += 1;
        }
        Ok(if self.batches.is_multiple_of(self.durable_every) { self.pending.clone() } else { None })
    }

    async fn flush(&mut self) -> Result<Option<Position>, ProcessError> {
        Ok(self.pending.clone())
    }
}

fn event(key: &str, n: u64) -> OutRecord {
    let attributes =
        serde_json::json!({ "meetingId": "m-1", "attendeeId": key, "n": n, "timestampMs": 1_763_712_000_000u64 });
    let record = Record::MeetingEvent(MeetingEventRecord {
        v: 1,
        received_at_ms: 1_763_712_000_000,
        ingest: Ingest::Batch,
        event: MeetingEvent {
            name: "meetingStartRequested".into(),
            attributes: attributes.as_object().unwrap().clone(),
        },
        original: Default::default(),
        truncation: Default::default(),
        delivery: None,
    });
    OutRecord { partition_key: format!("m-1/{key}"), data: record.encode() }
}

fn config(id: &str) -> WorkerConfig {
    WorkerConfig {
        failover: Duration::from_secs(3),
        round_interval: Duration::from_millis(500),
        discovery_interval: Duration::from_secs(1),
        max_takes_per_round: 2,
        ..WorkerConfig::new(id)
    }
}

struct RunningWorker {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RunningWorker {
    fn spawn(worker: Worker) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(worker.run(async move {
            let _ = stopped.await;
        }));
        Self { stop, task }
    }

    /// Graceful: flush, checkpoint, release.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }

    /// A crash: the worker and its shard tasks vanish mid-work; its leases expire.
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn kinesis_source(url: &str, stream: &str) -> Arc<dyn ShardSource> {
    let config = KinesisSourceConfig { idle_interval: Duration::from_millis(200), ..KinesisSourceConfig::new(stream) };
    Arc::new(KinesisSource::new(kinesis_client(url), config))
}

#[allow(clippy::too_many_arguments)]
async fn kinesis_worker(
    id: &str,
    durable_every: usize,
    kinesis: &str,
    stream: &str,
    table: &str,
    seen: &SeenLog,
    dead_letters: DeadLetters,
    telemetry: ConsumerTelemetry,
) -> RunningWorker {
    let store = DynamoLeaseStore::open(dynamodb_client(&moto_url()), table).await.unwrap();
    RunningWorker::spawn(Worker::new(
        config(id),
        kinesis_source(kinesis, stream),
        Arc::new(store),
        Arc::new(Collect { worker: id.into(), seen: seen.clone(), durable_every }),
        dead_letters,
        telemetry,
    ))
}

async fn producer(kinesis: &str, stream: &str) -> KinesisProducer {
    KinesisProducer::start(kinesis_client(kinesis), KinesisProducerConfig::new(stream), ProducerTelemetry::default())
        .await
        .unwrap()
}

async fn leases(table: &str) -> BTreeMap<String, Lease> {
    let store = DynamoLeaseStore::open(dynamodb_client(&moto_url()), table).await.unwrap();
    store.list().await.unwrap().into_iter().map(|l| (l.shard_id.clone(), l)).collect()
}

/// Polls until `done` holds, for at most `limit`.
async fn eventually(limit: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How often each (key, n) was processed.
fn counts(seen: &SeenLog) -> HashMap<(String, u64), usize> {
    let mut counts = HashMap::new();
    for s in seen.lock().unwrap().iter() {
        *counts.entry((s.key.clone(), s.n)).or_default() += 1;
    }
    counts
}

fn all_seen(seen: &SeenLog, keys: &[String], rounds: u64) -> bool {
    let counts = counts(seen);
    keys.iter().all(|k| (0..rounds).all(|n| counts.contains_key(&(k.clone(), n))))
}

#[tokio::test]
async fn three_workers_share_eight_shards_and_a_killed_workers_shards_are_taken_over_losing_nothing() {
    let moto = moto_url();
    let stream = unique("it-consumer-3w");
    let table = unique("it-consumer-3w-leases");
    create_stream(&kinesis_client(&moto), &stream, 8).await;
    let seen = SeenLog::default();
    let mut workers = BTreeMap::new();
    for id in ["w1", "w2", "w3"] {
        let w = kinesis_worker(id, 3, &moto, &stream, &table, &seen, DeadLetters::log_only(), Default::default()).await;
        workers.insert(id, w);
    }
    // Balanced before any record: 8 leases over 3 workers, none holding more than 3, and settled (the owners did not
    // change for two seconds). A lease that moves between live workers is processed twice for up to a renewal
    // interval too; this test isolates what a kill costs.
    let mut last: Option<(Vec<Option<String>>, tokio::time::Instant)> = None;
    eventually(Duration::from_secs(30), "the workers balance the 8 leases", async || {
        let leases = leases(&table).await;
        let mut load: HashMap<Option<String>, usize> = HashMap::new();
        for l in leases.values() {
            *load.entry(l.owner.clone()).or_default() += 1;
        }
        let balanced = leases.len() == 8
            && load.len() == 3
            && !load.contains_key(&None)
            && load.values().all(|n| (2..=3).contains(n));
        let owners: Vec<Option<String>> = leases.values().map(|l| l.owner.clone()).collect();
        let now = tokio::time::Instant::now();
        match &last {
            Some((before, since)) if balanced && *before == owners => now - *since >= Duration::from_secs(2),
            _ => {
                last = Some((owners, now));
                false
            }
        }
    })
    .await;
    let w3_shards: Vec<String> = leases(&table)
        .await
        .values()
        .filter(|l| l.owner.as_deref() == Some("w3"))
        .map(|l| l.shard_id.clone())
        .collect();

    // The gateway's producer (KPL aggregates) puts 48 keys x 60 rounds while w3 is killed halfway.
    let keys: Vec<String> = (0..48).map(|k| format!("attendee-{k:02}")).collect();
    let rounds = 60;
    let producing = {
        let (moto, stream, keys) = (moto.clone(), stream.clone(), keys.clone());
        tokio::spawn(async move {
            let producer = producer(&moto, &stream).await;
            for n in 0..rounds {
                producer.put(keys.iter().map(|k| event(k, n)).collect()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            producer.close().await;
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let processed_before_kill = seen.lock().unwrap().len();
    assert!(processed_before_kill > 0, "the workers were processing when w3 was killed");
    workers.remove("w3").unwrap().kill().await;
    producing.await.unwrap();

    eventually(Duration::from_secs(60), "every record is processed", async || all_seen(&seen, &keys, rounds)).await;
    let after = leases(&table).await;
    assert!(after.values().all(|l| l.owner.as_deref() != Some("w3")), "w3's leases were taken over: {after:?}");
    for (_, w) in workers {
        w.stop().await;
    }

    let seen = seen.lock().unwrap().clone();
    let mut per_record: HashMap<(String, u64), Vec<&Seen>> = HashMap::new();
    for s in &seen {
        per_record.entry((s.key.clone(), s.n)).or_default().push(s);
    }
    let duplicates: Vec<&Vec<&Seen>> = per_record.values().filter(|v| v.len() > 1).collect();
    let total = (keys.len() as u64 * rounds) as usize;
    eprintln!(
        "3 workers, 8 shards, w3 killed: {total} records, {} processed, {} processed twice (w3 held {w3_shards:?})",
        seen.len(),
        duplicates.len()
    );
    // Duplicates are bounded by what w3 had processed and not yet checkpointed (up to 3 batches per shard here):
    // each was first seen by w3, on a shard w3 held, and processed again by the worker that took the shard over.
    // Nothing else repeats.
    for d in &duplicates {
        assert_eq!(d.len(), 2, "processed more than twice: {d:?}");
        assert_eq!(d[0].worker, "w3", "a duplicate not caused by the kill: {d:?}");
        assert!(w3_shards.contains(&d[0].shard) && d[1].worker != "w3", "{d:?}");
    }
    assert_eq!(per_record.len(), total);
    // Each worker saw each key's records in order.
    for w in ["w1", "w2", "w3"] {
        for k in &keys {
            let ns: Vec<u64> = seen.iter().filter(|s| s.worker == w && &s.key == k).map(|s| s.n).collect();
            assert!(ns.windows(2).all(|p| p[0] < p[1]), "{w} saw {k} out of order: {ns:?}");
        }
    }
}

/// The kinesalite server started by `scripts/test.sh`.
fn kinesalite_url() -> String {
    std::env::var("CHIMEWATCH_TEST_KINESALITE_URL").expect(
        "CHIMEWATCH_TEST_KINESALITE_URL is not set: run `scripts/test.sh`, which installs and starts kinesalite",
    )
}

#[tokio::test]
async fn a_split_mid_stream_keeps_each_keys_order_across_the_parent_and_its_children() {
    let kinesalite = kinesalite_url();
    let stream = unique("it-consumer-split");
    let table = unique("it-consumer-split-leases");
    let kinesis = kinesis_client(&kinesalite);
    create_stream(&kinesis, &stream, 2).await;
    eventually(Duration::from_secs(10), "the stream is active", async || {
        let out = kinesis.describe_stream_summary().stream_name(&stream).send().await.unwrap();
        out.stream_description_summary().map(|d| d.stream_status().as_str() == "ACTIVE").unwrap_or(false)
    })
    .await;
    let seen = SeenLog::default();
    let (t1, t2) = (ConsumerTelemetry::default(), ConsumerTelemetry::default());
    let w1 = kinesis_worker("w1", 1, &kinesalite, &stream, &table, &seen, DeadLetters::log_only(), t1.clone()).await;
    let w2 = kinesis_worker("w2", 1, &kinesalite, &stream, &table, &seen, DeadLetters::log_only(), t2.clone()).await;

    let keys: Vec<String> = (0..24).map(|k| format!("attendee-{k:02}")).collect();
    let rounds = 40;
    let producer_telemetry = ProducerTelemetry::default();
    let producer = KinesisProducer::start(
        kinesis_client(&kinesalite),
        KinesisProducerConfig::new(&stream),
        producer_telemetry.clone(),
    )
    .await
    .unwrap();
    let parent = "shardId-000000000000";
    for n in 0..rounds {
        producer.put(keys.iter().map(|k| event(k, n)).collect()).await.unwrap();
        if n == 15 {
            // Split the first shard in the middle of its hash range while records keep coming.
            let shards = kinesis.list_shards().stream_name(&stream).send().await.unwrap();
            let range = shards.shards().iter().find(|s| s.shard_id() == parent).unwrap().hash_key_range().unwrap();
            let (start, end): (u128, u128) =
                (range.starting_hash_key().parse().unwrap(), range.ending_hash_key().parse().unwrap());
            let middle = start + (end - start) / 2;
            kinesis
                .split_shard()
                .stream_name(&stream)
                .shard_to_split(parent)
                .new_starting_hash_key(middle.to_string())
                .send()
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    producer.close().await;
    eventually(Duration::from_secs(60), "every record is processed", async || all_seen(&seen, &keys, rounds)).await;
    w1.stop().await;
    w2.stop().await;

    let seen = seen.lock().unwrap().clone();
    let leases = leases(&table).await;
    assert_eq!(leases[parent].checkpoint, Checkpoint::ShardEnd, "{leases:?}");
    let children: Vec<&String> = leases.values().filter(|l| l.parents == [parent]).map(|l| &l.shard_id).collect();
    assert_eq!(children.len(), 2, "{leases:?}");
    for child in &children {
        assert!(seen.iter().any(|s| &&s.shard == child), "nothing was read from {child}");
    }
    let moved: Vec<&String> = keys
        .iter()
        .filter(|k| {
            seen.iter().any(|s| &s.key == *k && s.shard == parent)
                && seen.iter().any(|s| &s.key == *k && children.contains(&&s.shard))
        })
        .collect();
    assert!(!moved.is_empty(), "no key went from the parent to a child");
    // Per key, records are first processed in the order they were put, across the parent and its children.
    for k in &keys {
        let mut first = Vec::new();
        for s in seen.iter().filter(|s| &s.key == k) {
            if !first.contains(&s.n) {
                first.push(s.n);
            }
        }
        assert_eq!(first, (0..rounds).collect::<Vec<_>>(), "{k}");
    }
    // An aggregate built just before the split lands on one child with keys of the other: the consumer skips those
    // user records and the producer puts them again on the right child. A child read again from its checkpoint after
    // its lease moved to the other worker skips them again, so the consumer may count a record more than once.
    let skipped = t1.misrouted.get() + t2.misrouted.get();
    let re_put = producer_telemetry.retries.get();
    assert!(skipped >= re_put, "every record put again was skipped first: skipped {skipped}, put again {re_put}");
    assert_eq!(skipped > 0, re_put > 0, "skipped {skipped}, put again {re_put}");
    eprintln!(
        "split mid-stream: {} keys moved from {parent} to {children:?}, all in order; {skipped} user records re-put",
        moved.len()
    );
}

#[tokio::test]
async fn logs_envelopes_are_decoded_and_undecodable_records_are_dead_lettered_to_a_stream() {
    let moto = moto_url();
    let stream = unique("it-consumer-decode");
    let dead_stream = unique("it-consumer-decode-dead");
    let table = unique("it-consumer-decode-leases");
    let kinesis = kinesis_client(&moto);
    create_stream(&kinesis, &stream, 1).await;
    create_stream(&kinesis, &dead_stream, 1).await;

    let gzip = |path: &str| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&fixture(path)).unwrap();
        gz.finish().unwrap()
    };
    let envelope = gzip("sip/cloudwatch-logs-subscription-envelope.json");
    let control = gzip("sip/cloudwatch-logs-control-message.json");
    let put = async |data: Vec<u8>, key: &str| {
        kinesis.put_record().stream_name(&stream).partition_key(key).data(data.into()).send().await.unwrap();
    };
    put(envelope, "/aws/ChimeVoiceConnectorSipMessages/abcdef1ghij2klmno3pqr4").await;
    put(control, "control").await;
    put(b"{\"v\":1,\"kind\":\"meetingEvent\"".to_vec(), "junk").await;
    let aggregated = producer(&moto, &stream).await;
    aggregated.put((0..5).map(|n| event("attendee-a", n)).collect()).await.unwrap();
    aggregated.close().await;

    let seen = SeenLog::default();
    let telemetry = ConsumerTelemetry::default();
    let dead = producer(&moto, &dead_stream).await;
    let worker =
        kinesis_worker("w1", 1, &moto, &stream, &table, &seen, DeadLetters::to(Arc::new(dead)), telemetry.clone())
            .await;
    eventually(Duration::from_secs(30), "the five events are processed", async || {
        seen.lock().unwrap().iter().filter(|s| s.key == "attendee-a").count() == 5
    })
    .await;
    worker.stop().await;

    let fixture: serde_json::Value =
        serde_json::from_slice(&fixture("sip/cloudwatch-logs-subscription-envelope.json")).unwrap();
    let events = fixture["logEvents"].as_array().unwrap();
    let seen = seen.lock().unwrap().clone();
    let sip: Vec<&Seen> = seen.iter().filter(|s| s.key.starts_with("sip:")).collect();
    assert_eq!(sip.len(), events.len(), "one SIP record per log event; the control message carries none");
    for (s, e) in sip.iter().zip(events) {
        let message: serde_json::Value = serde_json::from_str(e["message"].as_str().unwrap()).unwrap();
        assert_eq!(s.key, format!("sip:{}", message["call_id"].as_str().unwrap()));
    }
    assert_eq!(telemetry.dead_lettered.get(), 1);

    let mut letters = Vec::new();
    read_stream(&kinesis, &dead_stream, ReadFrom::Start, false, |r| letters.push(r.unwrap())).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter: serde_json::Value = serde_json::from_slice(&letters[0].data).unwrap();
    assert_eq!(letter["partitionKey"], "junk");
    assert!(letter["reason"].as_str().unwrap().contains("EOF"), "{letter}");
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.decode(letter["data"].as_str().unwrap()).unwrap();
    assert_eq!(data, b"{\"v\":1,\"kind\":\"meetingEvent\"", "the dead letter carries the bytes as read");
    assert!(matches!(leases(&table).await.values().next().unwrap().checkpoint, Checkpoint::At { .. }));
}

#[tokio::test]
async fn the_embedded_log_is_consumed_with_the_same_runtime_and_resumes_from_its_checkpoint_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        LocalLog::open(&dir.path().join("stream"), &LocalLogConfig::default(), ProducerTelemetry::default()).unwrap(),
    );
    let keys: Vec<String> = (0..16).map(|k| format!("attendee-{k:02}")).collect();
    let checkpoints = dir.path().join("consumers/test/checkpoints.json");
    let seen = SeenLog::default();
    let run = async |id: &str, from: u64, to: u64| {
        for n in from..to {
            log.put(keys.iter().map(|k| event(k, n)).collect()).await.unwrap();
        }
        let telemetry = ConsumerTelemetry::default();
        let worker = RunningWorker::spawn(Worker::new(
            config(id),
            Arc::new(LocalSource::new(log.clone()).poll_interval(Duration::from_millis(50))),
            Arc::new(FileLeaseStore::open(&checkpoints).unwrap()),
            Arc::new(Collect { worker: id.into(), seen: seen.clone(), durable_every: 1 }),
            DeadLetters::log_only(),
            telemetry.clone(),
        ));
        eventually(Duration::from_secs(30), "every record is processed", async || all_seen(&seen, &keys, to)).await;
        assert_eq!(telemetry.leases_held.get(), 4, "one worker holds every shard of the embedded log");
        worker.stop().await;
    };
    run("up-1", 0, 10).await;
    // A new process: the checkpoint file says where the last one stopped.
    run("up-2", 10, 20).await;
    let counts = counts(&seen);
    assert_eq!(counts.len(), keys.len() * 20);
    assert!(counts.values().all(|c| *c == 1), "a graceful stop checkpoints everything: nothing is processed twice");
    let saved: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&checkpoints).unwrap()).unwrap();
    assert_eq!(saved.len(), 4);
    assert!(saved.iter().all(|s| s["checkpoint"].as_str().unwrap().parse::<u64>().is_ok()), "{saved:?}");
}
