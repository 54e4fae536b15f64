//! Service tests of the archiver's processor on a local object store and a fake clock: cuts by age and size,
//! checkpoints only after commits, and exactly-once across crashes mid-cut, replays in other batch sizes and a
//! claim left by another owner.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use chimewatch_model::{Ingest, MeetingEvent, MeetingEventRecord, Record, SipLogRecord};
use chimewatch_sinks::{LocalObjects, ObjectError, ObjectInfo};
use chimewatch_stream::consumer::Consumed;
use serde_json::json;

use super::*;
use crate::encode::read_file;

const T0: i64 = 1_763_712_000_000;
const HOUR: i64 = 3_600_000;

thread_local! {
    static NOW: Cell<i64> = const { Cell::new(T0) };
}

fn now() -> chimewatch_model::UnixMillis {
    chimewatch_model::UnixMillis(NOW.with(Cell::get))
}

fn advance(ms: i64) {
    NOW.with(|n| n.set(n.get() + ms));
}

/// A local store whose `put_file` fails once `puts_left` reaches zero (a crash mid-cut, as the processor sees it).
#[derive(Debug)]
struct Flaky {
    inner: LocalObjects,
    puts_left: AtomicI64,
    deletes_left: AtomicI64,
}

#[async_trait]
impl ObjectStore for Flaky {
    async fn put_file(&self, key: &str, path: &std::path::Path) -> Result<(), ObjectError> {
        if self.puts_left.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(ObjectError::Store { op: "put", key: key.into(), message: "connection reset".into() });
        }
        self.inner.put_file(key, path).await
    }
    async fn put(&self, key: &str, body: Bytes) -> Result<(), ObjectError> {
        self.inner.put(key, body).await
    }
    async fn create_new(&self, key: &str, body: Bytes) -> Result<bool, ObjectError> {
        self.inner.create_new(key, body).await
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, ObjectError> {
        self.inner.get(key).await
    }
    async fn download(&self, key: &str, to: &std::path::Path) -> Result<(), ObjectError> {
        self.inner.download(key, to).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, keys: &[String]) -> Result<(), ObjectError> {
        if self.deletes_left.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(ObjectError::Store { op: "delete", key: keys[0].clone(), message: "connection reset".into() });
        }
        self.inner.delete(keys).await
    }
    fn location(&self) -> String {
        self.inner.location()
    }
}

struct Setup {
    dir: tempfile::TempDir,
    store: Arc<Flaky>,
    archiving: Archiving,
    telemetry: ArchiverTelemetry,
}

fn setup(configure: impl FnOnce(&mut ArchiverConfig)) -> Setup {
    NOW.with(|n| n.set(T0));
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Flaky {
        inner: LocalObjects::new(dir.path().join("archive")),
        puts_left: i64::MAX.into(),
        deletes_left: i64::MAX.into(),
    });
    let mut config = ArchiverConfig::new(dir.path().join("spool"));
    config.prefix = "lake".into();
    configure(&mut config);
    let telemetry = ArchiverTelemetry::default();
    let archiving = Archiving::with_clock(config, store.clone(), telemetry.clone(), now);
    Setup { dir, store, archiving, telemetry }
}

/// Record `i` of a test stream: a meeting event whose event time wanders over three hours (some of it late), or
/// every fifth one a SIP record.
fn record(i: u64) -> Record {
    let t = T0 + (i as i64 * 1_237_001) % (3 * HOUR) - HOUR;
    if i % 5 == 4 {
        let sip = SipLogRecord::from_value(json!({
            "voice_connector_id": "vc1", "aws_region": "us-east-1", "event_timestamp": t, "call_id": format!("c{i}"),
            "sip_message": "INVITE sip:+1@x SIP/2.0\r\nCall-ID: a\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        }))
        .unwrap();
        return Record::sip_message(sip, Ingest::SipPost, t + 10);
    }
    Record::MeetingEvent(MeetingEventRecord {
        v: 1,
        received_at_ms: t + 10,
        ingest: Ingest::Batch,
        event: MeetingEvent {
            name: "meetingStartSucceeded".into(),
            attributes: json!({ "meetingId": format!("m{i}"), "timestampMs": t }).as_object().cloned().unwrap(),
        },
        original: Default::default(),
        truncation: Default::default(),
        delivery: None,
    })
}

/// Records `from..to` of the stream as one batch (end `to` on a multiple of three: batches hold whole aggregates).
/// Records `from..to` as the consumer hands them over: written to the stream's bytes and read back.
fn batch(from: u64, to: u64) -> Batch<IndexedRecord> {
    let records: Vec<Consumed<IndexedRecord>> = (from..to)
        .map(|i| Consumed {
            position: position(i),
            log_event: 0,
            partition_key: format!("m{i}"),
            arrival: chimewatch_model::UnixMillis(T0 + i as i64),
            record: IndexedRecord::decode(&record(i).encode()).unwrap(),
        })
        .collect();
    Batch {
        shard_id: "shard-0000".into(),
        records,
        end: (to > from).then(|| position(to - 1)),
        millis_behind_latest: None,
    }
}

/// User record `i`'s position: of every three, two are in a KPL aggregate and one is a plain record.
fn position(i: u64) -> Position {
    let (k, r) = (i / 3, i % 3);
    let (seq, sub) = if r < 2 { (20 * k, r) } else { (20 * k + 10, 0) };
    Position::parse(&(100_000 + seq).to_string(), sub).unwrap()
}

/// Every row in the archive, by (table, sequence number, sub-sequence), with how often it occurs.
async fn archived(store: &LocalObjects) -> BTreeMap<(String, String, i64), usize> {
    let mut rows = BTreeMap::new();
    for table in [Table::MeetingEvents, Table::SipMessages] {
        for object in store.list(&format!("lake/{}/", table.name())).await.unwrap() {
            let path = store.root().join(&object.key);
            for batch in read_file(&path, table, Format::Parquet).unwrap() {
                let batch = batch.unwrap();
                let seq = batch.column_by_name("sequence_number").unwrap().as_string::<i32>().clone();
                let sub = batch.column_by_name("sub_sequence_number").unwrap().as_primitive::<Int64Type>().clone();
                for r in 0..batch.num_rows() {
                    let key = (table.name().to_owned(), seq.value(r).to_owned(), sub.value(r));
                    *rows.entry(key).or_insert(0) += 1;
                }
            }
        }
    }
    rows
}

fn expected(n: u64) -> BTreeMap<(String, String, i64), usize> {
    (0..n)
        .map(|i| {
            let table = if i % 5 == 4 { Table::SipMessages } else { Table::MeetingEvents };
            let p = position(i);
            ((table.name().to_owned(), p.sequence.to_string(), p.sub_sequence as i64), 1)
        })
        .collect()
}

/// Runs `batches` through a fresh processor as the runtime would, checkpointing what it reports; stops at the
/// first error (a crash) and returns the checkpoint.
async fn run(
    archiving: &Archiving,
    batches: &[(u64, u64)],
    checkpoint: &mut Option<Position>,
) -> Result<(), ProcessError> {
    let mut shard = archiving.create("shard-0000", chimewatch_stream::consumer::Fence::held("shard-0000", "w1"));
    for &(from, to) in batches {
        // The runtime skips what the checkpoint covers.
        let mut b = batch(from, to);
        b.records.retain(|c| checkpoint.as_ref().is_none_or(|cp| &c.position > cp));
        if let Some(p) = shard.process(b).await? {
            shard.checkpointed(&p).await;
            *checkpoint = Some(p);
        }
        advance(60_000);
    }
    Ok(())
}

#[tokio::test]
async fn a_cut_by_age_writes_every_partition_and_only_then_moves_the_checkpoint() {
    let s = setup(|_| {});
    let mut shard = s.archiving.create("shard-0000", chimewatch_stream::consumer::Fence::held("shard-0000", "w1"));
    assert_eq!(shard.process(batch(0, 39)).await.unwrap(), None, "rows wait for their files");
    advance(299_000);
    assert_eq!(shard.process(batch(39, 39)).await.unwrap(), None, "not yet five minutes");
    assert!(s.store.list("lake/").await.unwrap().is_empty());
    advance(1_000);
    assert_eq!(shard.process(batch(39, 51)).await.unwrap(), Some(position(50)), "cut through what was read");
    assert_eq!(archived(&s.store.inner).await, expected(51));

    let objects = s.store.list("lake/meeting_events/").await.unwrap();
    let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys.len(), 3, "one file per hour of event time: {keys:?}");
    for object in &objects {
        let name = object.key.rsplit('/').next().unwrap();
        assert!(object.key.starts_with("lake/meeting_events/dt=2025-11-21/hour=0"), "{keys:?}");
        let mut seqs = Vec::new();
        for b in read_file(&s.store.inner.root().join(&object.key), Table::MeetingEvents, Format::Parquet).unwrap() {
            let b = b.unwrap();
            let col = b.column_by_name("sequence_number").unwrap().as_string::<i32>();
            seqs.extend(col.iter().map(|v| v.unwrap().parse::<u64>().unwrap()));
        }
        let (lo, hi) = (seqs.iter().min().unwrap(), seqs.iter().max().unwrap());
        assert_eq!(name, format!("shard-0000-{lo}-{hi}.parquet"), "the key names the rows' sequence range");
    }
    assert_eq!(s.telemetry.cuts.get(), 1);
    assert_eq!(s.telemetry.rows_written.get(), 51);
    assert!(s.telemetry.late_rows.get() > 0, "rows an hour before their arrival are late");
    assert_eq!(s.telemetry.buffered_bytes.get(), 0);

    // Nothing buffered: the checkpoint follows what is read, records or not.
    assert_eq!(shard.process(batch(51, 51)).await.unwrap(), Some(position(50)));
}

#[tokio::test]
async fn files_are_sorted_by_event_time() {
    let s = setup(|_| {});
    let mut shard = s.archiving.create("shard-0000", chimewatch_stream::consumer::Fence::held("shard-0000", "w1"));
    shard.process(batch(0, 300)).await.unwrap();
    assert_eq!(shard.flush().await.unwrap(), Some(position(299)));
    assert_every_file_sorted(&s).await;
}

async fn assert_every_file_sorted(s: &Setup) {
    for object in s.store.list("lake/").await.unwrap().iter().filter(|o| o.key.ends_with(".parquet")) {
        let table = if object.key.contains("sip_") { Table::SipMessages } else { Table::MeetingEvents };
        let mut last = i64::MIN;
        for batch in read_file(&s.store.inner.root().join(&object.key), table, Format::Parquet).unwrap() {
            let batch = batch.unwrap();
            let times = batch.column(0).as_primitive::<arrow_array::types::TimestampMillisecondType>();
            for t in times.values().iter() {
                assert!(*t >= last, "{} is sorted", object.key);
                last = *t;
            }
        }
    }
}

#[tokio::test]
async fn a_cut_by_size_aims_at_the_file_size() {
    let s = setup(|c| c.max_file_bytes = 5_000);
    let mut shard = s.archiving.create("shard-0000", chimewatch_stream::consumer::Fence::held("shard-0000", "w1"));
    let mut cuts_at = Vec::new();
    for from in (0..420).step_by(21) {
        if let Some(p) = shard.process(batch(from, from + 21)).await.unwrap() {
            cuts_at.push(p);
        }
    }
    cuts_at.dedup();
    assert!(cuts_at.len() >= 2, "several cuts by size: {cuts_at:?}");
    shard.flush().await.unwrap();
    assert_eq!(archived(&s.store.inner).await, expected(420));
}

#[tokio::test]
async fn a_crash_mid_cut_then_a_replay_in_other_batches_archives_every_row_once() {
    for crash_after in 0..5 {
        let s = setup(|_| {});
        s.store.puts_left.store(crash_after, Ordering::SeqCst);
        let mut checkpoint = None;
        let first_run = [(0, 99), (99, 99), (99, 99), (99, 99), (99, 99), (99, 129)];
        let crashed = run(&s.archiving, &first_run, &mut checkpoint).await;
        assert!(crashed.is_err(), "the cut fails after {crash_after} objects");
        assert_eq!(checkpoint, None, "no checkpoint before every object of the cut is committed");

        // A new owner replays from the checkpoint, in smaller batches and at other times.
        s.store.puts_left.store(i64::MAX, Ordering::SeqCst);
        let batches: Vec<(u64, u64)> = (0..150).step_by(6).map(|f| (f, f + 6)).collect();
        run(&s.archiving, &batches, &mut checkpoint).await.unwrap();
        assert!(checkpoint >= Some(position(128)), "the replay wrote the crashed cut");
        // Its lease moves on: the next owner starts at the checkpoint, and flushes at the end.
        let mut shard = s.archiving.create("shard-0000", chimewatch_stream::consumer::Fence::held("shard-0000", "w1"));
        let mut rest = batch(0, 159);
        rest.records.retain(|c| checkpoint.as_ref().is_none_or(|cp| &c.position > cp));
        shard.process(rest).await.unwrap();
        assert_eq!(shard.flush().await.unwrap(), Some(position(158)));
        shard.checkpointed(&position(158)).await;
        assert_eq!(archived(&s.store.inner).await, expected(159), "crash after {crash_after} objects");
        assert!(s.telemetry.claims_followed.get() >= 1, "the replay followed the crashed cut's claim");
        for claim in s.store.list("lake/_chimewatch/cuts/shard-0000/").await.unwrap() {
            let body: Claim = serde_json::from_slice(&s.store.get(&claim.key).await.unwrap().unwrap()).unwrap();
            assert!(body.checkpointed_at_ms.is_some(), "claims of checkpointed cuts are tombstones: {body:?}");
        }
    }
}

#[tokio::test]
async fn an_earlier_claim_ending_sooner_splits_the_cut_there() {
    let s = setup(|_| {});
    // Another owner claimed the rows from the first one through record 29 (and may have written them).
    let claim = Claim {
        shard_id: "shard-0000".into(),
        first: ClaimPosition::of(&position(0)),
        through: ClaimPosition::of(&position(29)),
        claimed_at_ms: T0,
        checkpointed_at_ms: None,
    };
    let key = format!("lake/{CLAIMS_DIR}/shard-0000/{}", claim.first.file_name());
    s.store.put(&key, Bytes::from(serde_json::to_vec(&claim).unwrap())).await.unwrap();
    let mut shard = s.archiving.create("shard-0000", chimewatch_stream::consumer::Fence::held("shard-0000", "w1"));
    shard.process(batch(0, 81)).await.unwrap();
    assert_eq!(shard.flush().await.unwrap(), Some(position(80)));
    assert_eq!(archived(&s.store.inner).await, expected(81));
    let through: u64 = position(29).sequence.to_string().parse().unwrap();
    let keys: Vec<String> = s.store.list("lake/").await.unwrap().into_iter().map(|o| o.key).collect();
    for key in keys.iter().filter(|k| k.ends_with(".parquet")) {
        let stem = key.rsplit('/').next().unwrap().trim_end_matches(".parquet");
        let mut range = stem.rsplitn(3, '-').map(|n| n.parse::<u64>().unwrap_or(0));
        let (last, first) = (range.next().unwrap(), range.next().unwrap());
        assert!(last <= through || first > through, "{key} straddles the claim's end {through}: {keys:?}");
    }
}

#[tokio::test]
async fn flush_cannot_pass_a_claim_beyond_what_was_read() {
    let s = setup(|_| {});
    let claim = Claim {
        shard_id: "shard-0000".into(),
        first: ClaimPosition::of(&position(0)),
        through: ClaimPosition::of(&position(89)),
        claimed_at_ms: T0,
        checkpointed_at_ms: None,
    };
    let key = format!("lake/{CLAIMS_DIR}/shard-0000/{}", claim.first.file_name());
    s.store.put(&key, Bytes::from(serde_json::to_vec(&claim).unwrap())).await.unwrap();
    let mut shard = s.archiving.create("shard-0000", chimewatch_stream::consumer::Fence::held("shard-0000", "w1"));
    shard.process(batch(0, 21)).await.unwrap();
    let err = shard.flush().await.unwrap_err();
    assert!(err.0.contains("earlier claim ends at"), "{err}");
    assert!(s.store.list("lake/meeting_events/").await.unwrap().is_empty(), "nothing written past the claim's start");
}

#[tokio::test]
async fn ndjson_is_the_same_layout_in_another_format() {
    let s = setup(|c| c.format = Format::NdjsonGzip);
    let mut shard = s.archiving.create("shard-0000", chimewatch_stream::consumer::Fence::held("shard-0000", "w1"));
    shard.process(batch(0, 12)).await.unwrap();
    shard.flush().await.unwrap();
    let objects = s.store.list("lake/sip_messages/").await.unwrap();
    assert!(objects.iter().all(|o| o.key.ends_with(".ndjson.gz")), "{objects:?}");
    let rows: usize = objects
        .iter()
        .map(|o| {
            read_file(&s.store.inner.root().join(&o.key), Table::SipMessages, Format::NdjsonGzip)
                .unwrap()
                .map(|b| b.unwrap().num_rows())
                .sum::<usize>()
        })
        .sum();
    assert_eq!(rows, 2);
    assert!(s.dir.path().join("archive/lake/sip_messages").is_dir());
}

fn compact_options(s: &Setup) -> crate::compact::CompactOptions {
    crate::compact::CompactOptions {
        prefix: "lake".into(),
        tables: vec![Table::MeetingEvents, Table::SipMessages],
        format: Format::Parquet,
        target_bytes: 128 * 1024 * 1024,
        min_age: Duration::ZERO,
        partitions: None,
        work_dir: s.dir.path().to_owned(),
        now_ms: i64::MAX,
    }
}

/// Archives records `0..n` in cuts of `per_cut` records, flushing at the end; the worker dies before it is told
/// of the last checkpoint, so the last cut's claim stays.
async fn archive_in_small_cuts(s: &Setup, n: u64, per_cut: u64) {
    let mut shard = s.archiving.create("shard-0000", chimewatch_stream::consumer::Fence::held("shard-0000", "w1"));
    for from in (0..n).step_by(per_cut as usize) {
        if let Some(p) = shard.process(batch(from, from + per_cut)).await.unwrap() {
            shard.checkpointed(&p).await;
        }
        advance(300_000);
    }
    shard.process(batch(n, n + per_cut)).await.unwrap();
    shard.flush().await.unwrap();
}

#[tokio::test]
async fn compaction_merges_small_files_and_keeps_every_row_once() {
    let s = setup(|_| {});
    archive_in_small_cuts(&s, 300, 30).await;
    let before = s.store.list("lake/meeting_events/").await.unwrap();
    let rows = archived(&s.store.inner).await;
    assert_eq!(rows, expected(330));

    let report = crate::compact::compact(s.store.as_ref(), &compact_options(&s), |_| {}).await.unwrap();
    let after = s.store.list("lake/meeting_events/").await.unwrap();
    assert_eq!(archived(&s.store.inner).await, rows, "the same rows, each once");
    assert_every_file_sorted(&s).await;
    let merged = after.iter().filter(|o| o.key.contains("/compacted-")).count();
    let last_cut = after.len() - merged;
    assert_eq!(merged, 3, "five cuts over three hours, merged into one file per hour");
    assert!((1..=3).contains(&last_cut), "and the last cut's files, whose claim is live: {after:?}");
    assert_eq!(before.len(), 15 + last_cut);
    assert_eq!(report.rows, 300, "every row but the last cut's: {report:?}");
    assert_eq!(report.partitions_merged, 6, "three hours of two tables: {report:?}");
    assert!(s.store.list("lake/_chimewatch/compactions/").await.unwrap().is_empty(), "intents are removed");

    let again = crate::compact::compact(s.store.as_ref(), &compact_options(&s), |_| {}).await.unwrap();
    assert_eq!(again.files_written, 0, "nothing left to merge: {again:?}");
}

#[tokio::test]
async fn compaction_interrupted_before_deleting_its_inputs_is_finished_by_the_next_run() {
    let s = setup(|_| {});
    archive_in_small_cuts(&s, 150, 30).await;
    let rows = archived(&s.store.inner).await;
    s.store.deletes_left.store(0, Ordering::SeqCst);
    let failed = crate::compact::compact(s.store.as_ref(), &compact_options(&s), |_| {}).await;
    assert!(failed.is_err(), "the inputs' delete fails");
    assert_eq!(s.store.list("lake/_chimewatch/compactions/").await.unwrap().len(), 1, "its intent stays");

    s.store.deletes_left.store(i64::MAX, Ordering::SeqCst);
    let report = crate::compact::compact(s.store.as_ref(), &compact_options(&s), |_| {}).await.unwrap();
    assert_eq!(report.intents_completed, 1, "{report:?}");
    assert_eq!(archived(&s.store.inner).await, rows, "no row twice, none missing");
}

proptest::proptest! {
    /// A claim's file name gives back the position it was named after, for any sequence number.
    #[test]
    fn claim_file_names_round_trip(seq in "[0-9]{1,60}", sub in 0u64..u64::MAX) {
        let p = Position::parse(&seq, sub).unwrap();
        let name = ClaimPosition::of(&p).file_name();
        proptest::prop_assert_eq!(ClaimPosition::from_file_name(&name), Some(p));
    }

    /// Anything else is not a claim name, and never a panic.
    #[test]
    fn other_names_are_not_claims(name in "\\PC{0,40}") {
        if ClaimPosition::from_file_name(&name).is_some() {
            let stem = name.strip_suffix(".json").unwrap_or_default();
            let well_formed = stem.split_once('-').is_some_and(|(a, b)| {
                !a.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.parse::<u64>().is_ok()
            });
            proptest::prop_assert!(well_formed, "{} was taken for a claim", name);
        }
    }
}

#[tokio::test]
async fn an_owner_that_lost_the_shard_while_paused_finds_the_tombstone_and_writes_nothing() {
    let s = setup(|_| {});
    // The new owner archived and checkpointed rows 0..=49.
    let mut new_owner = s.archiving.create("shard-0000", chimewatch_stream::consumer::Fence::held("shard-0000", "w2"));
    new_owner.process(batch(0, 50)).await.unwrap();
    assert_eq!(new_owner.flush().await.unwrap(), Some(position(49)));
    new_owner.checkpointed(&position(49)).await;
    let before = s.store.list("lake/meeting_events/").await.unwrap();
    // The old owner wakes with the same rows spooled (its fence still answers from its stale view).
    let mut old_owner = s.archiving.create("shard-0000", chimewatch_stream::consumer::Fence::held("shard-0000", "w1"));
    old_owner.process(batch(0, 60)).await.unwrap();
    let err = old_owner.flush().await.unwrap_err();
    assert!(err.0.contains("checkpointed (at"), "{err}");
    assert_eq!(s.store.list("lake/meeting_events/").await.unwrap(), before, "nothing written twice");
}

#[tokio::test]
async fn a_worker_the_lease_table_no_longer_names_claims_and_writes_nothing() {
    let s = setup(|_| {});
    // The table gives the shard to w2; this processor runs for w1.
    let store: std::sync::Arc<dyn chimewatch_stream::lease::LeaseStore> =
        std::sync::Arc::new(chimewatch_stream::lease::memory::MemoryLeaseStore::default());
    store
        .create_if_absent(chimewatch_stream::lease::Lease {
            shard_id: "shard-0000".into(),
            owner: Some("w2".into()),
            counter: 3,
            checkpoint: chimewatch_stream::lease::Checkpoint::TrimHorizon,
            parents: vec![],
        })
        .await
        .unwrap();
    let fence = chimewatch_stream::consumer::Fence::new(store, "shard-0000", "w1");
    let mut shard = s.archiving.create("shard-0000", fence);
    shard.process(batch(0, 20)).await.unwrap();
    let err = shard.flush().await.unwrap_err();
    assert!(err.0.contains("no longer this worker's (owner w2)"), "{err}");
    assert!(s.store.list("lake/").await.unwrap().is_empty(), "no claim, no object");
}
