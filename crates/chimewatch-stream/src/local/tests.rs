//! Tests of the embedded log: durability, recovery, rolling, retention, locking, concurrent readers, and what
//! failures do (failed directory syncs and cuts, damaged frames).

use std::io::Write;

use super::*;

fn rec(key: &str, data: &str) -> OutRecord {
    OutRecord { partition_key: key.into(), data: data.as_bytes().to_vec() }
}

fn small(shards: u32) -> LocalLogConfig {
    LocalLogConfig { shards, segment_bytes: 1 << 20, ..LocalLogConfig::default() }
}

fn read_all(log: &LocalLog) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for shard in 0..log.shard_count() {
        let mut r = log.reader(shard, 0).unwrap();
        loop {
            let batch = r.read(1000, usize::MAX).unwrap();
            if batch.is_empty() {
                break;
            }
            out.extend(batch.into_iter().map(|r| (r.partition_key, String::from_utf8(r.data).unwrap())));
        }
    }
    out
}

#[tokio::test]
async fn put_then_read_back_per_key_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), &small(4), ProducerTelemetry::default()).unwrap();
    for i in 0..50 {
        log.put(vec![rec(&format!("k{}", i % 7), &format!("{i}"))]).await.unwrap();
    }
    let all = read_all(&log);
    assert_eq!(all.len(), 50);
    for k in 0..7 {
        let key = format!("k{k}");
        let values: Vec<u32> = all.iter().filter(|(pk, _)| *pk == key).map(|(_, v)| v.parse().unwrap()).collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "order of {key}: {values:?}");
        assert!(all.iter().filter(|(pk, _)| *pk == key).all(|(pk, _)| log.shard_for(pk) == log.shard_for(&key)));
    }
    log.close().await;
}

#[tokio::test]
async fn concurrent_puts_are_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let telemetry = ProducerTelemetry::default();
    let log = Arc::new(LocalLog::open(dir.path(), &small(2), telemetry.clone()).unwrap());
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.put(vec![rec(&format!("k{}", i % 5), &i.to_string())]).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(read_all(&log).len(), 200);
    assert_eq!(telemetry.records.get(), 200);
    log.close().await;
}

#[test]
fn jobs_queued_during_a_sync_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let writer = writer::ShardWriter::open(dir.path(), 0, small(1), writer::Shared::default()).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut acks = Vec::new();
    for i in 0..100 {
        let (ack, done) = oneshot::channel();
        tx.send(writer::AppendJob { records: vec![rec("k", &i.to_string())], ack }).unwrap();
        acks.push(done);
    }
    drop(tx);
    let telemetry = ProducerTelemetry::default();
    writer.run(rx, &telemetry);
    assert_eq!(telemetry.requests.get(), 1, "one group commit for 100 queued jobs");
    assert_eq!(telemetry.calls_timed(), 1, "its duration is recorded");
    for mut done in acks {
        assert_eq!(done.try_recv().unwrap(), Ok(()));
    }
}

#[tokio::test]
async fn torn_tail_is_cut_on_reopen_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = LocalLog::open(dir.path(), &small(1), ProducerTelemetry::default()).unwrap();
        log.put(vec![rec("k", "one"), rec("k", "two")]).await.unwrap();
        log.close().await;
    }
    let segment = dir.path().join("shard-0000").join(format!("{:020}.log", 0));
    let good_len = fs::metadata(&segment).unwrap().len();
    // A crash mid-write leaves half a frame.
    let mut half = Vec::new();
    frame::encode(1, "k", b"three", &mut half);
    File::options().append(true).open(&segment).unwrap().write_all(&half[..half.len() / 2]).unwrap();

    let log = LocalLog::open(dir.path(), &small(1), ProducerTelemetry::default()).unwrap();
    assert_eq!(fs::metadata(&segment).unwrap().len(), good_len);
    log.put(vec![rec("k", "four")]).await.unwrap();
    let values: Vec<_> = read_all(&log).into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, ["one", "two", "four"]);
    log.close().await;
}

#[tokio::test]
async fn segments_roll_and_readers_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = LocalLogConfig { shards: 1, segment_bytes: 200, ..LocalLogConfig::default() };
    let log = LocalLog::open(dir.path(), &config, ProducerTelemetry::default()).unwrap();
    for i in 0..30 {
        log.put(vec![rec("k", &format!("value-{i:03}"))]).await.unwrap();
    }
    let segments = writer::list_segments(&dir.path().join("shard-0000")).unwrap();
    assert!(segments.len() > 3, "{segments:?}");
    let values: Vec<_> = read_all(&log).into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, (0..30).map(|i| format!("value-{i:03}")).collect::<Vec<_>>());
    // Reading from a sequence number in the middle resumes exactly there.
    let mut r = log.reader(0, 0).unwrap();
    let first = r.read(10, usize::MAX).unwrap();
    let mut resumed = log.reader(0, first[5].sequence).unwrap();
    assert_eq!(resumed.read(1, usize::MAX).unwrap()[0].data, first[5].data);
    log.close().await;
}

#[tokio::test]
async fn retention_by_size_deletes_oldest_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = LocalLogConfig { shards: 1, segment_bytes: 200, max_shard_bytes: 600, ..LocalLogConfig::default() };
    let log = LocalLog::open(dir.path(), &config, ProducerTelemetry::default()).unwrap();
    for i in 0..40 {
        log.put(vec![rec("k", &format!("value-{i:03}"))]).await.unwrap();
    }
    let values: Vec<_> = read_all(&log).into_iter().map(|(_, v)| v).collect();
    assert!(values.len() < 40 && values.len() >= 10, "kept {}", values.len());
    assert_eq!(values.last().unwrap(), "value-039", "the newest records are kept");
    log.close().await;
}

#[tokio::test]
async fn one_writer_per_directory_and_shard_count_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), &small(3), ProducerTelemetry::default()).unwrap();
    assert!(matches!(
        LocalLog::open(dir.path(), &small(3), ProducerTelemetry::default()),
        Err(LogError::Locked { .. })
    ));
    log.close().await;
    drop(log);
    let reopened = LocalLog::open(dir.path(), &small(8), ProducerTelemetry::default()).unwrap();
    assert_eq!(reopened.shard_count(), 3);
}

#[tokio::test]
async fn out_of_process_reader_stops_at_a_write_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), &small(1), ProducerTelemetry::default()).unwrap();
    log.put(vec![rec("k", "done")]).await.unwrap();
    let segment = dir.path().join("shard-0000").join(format!("{:020}.log", 0));
    let mut partial = Vec::new();
    frame::encode(1, "k", b"in progress", &mut partial);
    File::options().append(true).open(&segment).unwrap().write_all(&partial[..10]).unwrap();
    let mut r = open_reader(dir.path(), 0, 0).unwrap();
    let got = r.read(10, usize::MAX).unwrap();
    assert_eq!(got.len(), 1);
    assert!(r.read(10, usize::MAX).unwrap().is_empty());
}

#[tokio::test]
async fn closed_log_refuses_puts_and_oversized_records_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), &small(1), ProducerTelemetry::default()).unwrap();
    let huge = OutRecord { partition_key: "k".into(), data: vec![0; MAX_RECORD_BYTES + 1] };
    assert!(matches!(log.put(vec![huge]).await, Err(ProduceError::RecordTooLarge { .. })));
    log.close().await;
    assert_eq!(log.put(vec![rec("k", "late")]).await, Err(ProduceError::ShuttingDown));
    assert!(!log.is_ready());
}

#[tokio::test]
async fn following_starts_at_the_last_whole_frame_not_in_a_write_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), &small(1), ProducerTelemetry::default()).unwrap();
    log.put(vec![rec("k", "before")]).await.unwrap();
    let whole = end_of_shard(dir.path(), 0).unwrap();
    // Another process's writer is halfway through a frame.
    let segment = dir.path().join("shard-0000").join(format!("{:020}.log", 0));
    let mut partial = Vec::new();
    frame::encode(1, "k", b"in progress", &mut partial);
    File::options().append(true).open(&segment).unwrap().write_all(&partial[..7]).unwrap();
    assert_eq!(end_of_shard(dir.path(), 0).unwrap(), whole, "the half frame is not the end");
    // The write completes; a follower that started at the end sees it whole.
    File::options().append(true).open(&segment).unwrap().write_all(&partial[7..]).unwrap();
    let mut follower = open_reader(dir.path(), 0, whole).unwrap();
    let got = follower.read(10, usize::MAX).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, b"in progress");
}

/// A one-shard log with 200-byte segments (seven 28-byte `value-NNN` frames each) whose file operations a test can
/// make fail.
fn faulty(dir: &Path) -> (LocalLog, disk::Faults) {
    let shared = writer::Shared::default();
    let faults = shared.faults.clone();
    let config = LocalLogConfig { shards: 1, segment_bytes: 200, ..LocalLogConfig::default() };
    (LocalLog::open_with(dir, &config, ProducerTelemetry::default(), shared).unwrap(), faults)
}

fn value(i: usize) -> String {
    format!("value-{i:03}")
}

fn values(log: &LocalLog) -> Vec<String> {
    read_all(log).into_iter().map(|(_, v)| v).collect()
}

#[tokio::test]
async fn a_roll_whose_directory_sync_failed_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (log, faults) = faulty(dir.path());
    for i in 0..6 {
        log.put(vec![rec("k", &value(i))]).await.unwrap();
    }
    // A frame too large for what is left starts a segment: the file is created, then syncing the directory fails.
    faults.fail(disk::Op::SyncDir, 1);
    let err = log.put(vec![rec("k", &"x".repeat(40))]).await.unwrap_err();
    assert!(matches!(err, ProduceError::Unavailable { .. }), "{err:?}");
    // The next frame would fit the old segment, but that one is finished: the roll is retried first.
    for i in 6..20 {
        log.put(vec![rec("k", &value(i))]).await.unwrap_or_else(|e| panic!("put {i} after the failed roll: {e}"));
    }
    let expected: Vec<_> = (0..20).map(value).collect();
    assert_eq!(values(&log), expected);
    // Each segment ends where the next begins; the retried roll used the file the failed one left.
    let segments = writer::list_segments(&dir.path().join("shard-0000")).unwrap();
    assert_eq!(segments[1].0, 168);
    for pair in segments.windows(2) {
        assert_eq!(fs::metadata(&pair[0].1).unwrap().len(), pair[1].0 - pair[0].0, "{segments:?}");
    }
    log.close().await;
    drop(log);
    // The segments line up: a reopened log reads the same, and writes on.
    let log =
        LocalLog::open(dir.path(), &LocalLogConfig { segment_bytes: 200, ..small(1) }, Default::default()).unwrap();
    assert_eq!(values(&log), expected);
    log.put(vec![rec("k", "more")]).await.unwrap();
    log.close().await;
}

#[tokio::test]
async fn a_failed_write_that_cannot_be_cut_stops_the_shard_until_it_can_be() {
    let dir = tempfile::tempdir().unwrap();
    let (log, faults) = faulty(dir.path());
    log.put(vec![rec("k", "one")]).await.unwrap();
    // A write lands half its bytes and fails; cutting them fails too, and once more on the next put.
    faults.fail(disk::Op::Write, 1);
    faults.fail(disk::Op::SetLen, 2);
    assert!(log.put(vec![rec("k", "two")]).await.is_err());
    let err = log.put(vec![rec("k", "three")]).await.unwrap_err();
    let ProduceError::Unavailable { reason, .. } = &err else { panic!("{err:?}") };
    assert!(reason.contains("refuses writes"), "{reason}");
    // Space came back: the cut succeeds and writes resume right after the last acknowledged frame.
    log.put(vec![rec("k", "four")]).await.unwrap();
    assert_eq!(values(&log), ["one", "four"]);
    let telemetry = log.log_telemetry();
    assert_eq!((telemetry.write_failures.get(), telemetry.refused_unwritable.get()), (1, 1));
    let segment = dir.path().join("shard-0000").join(format!("{:020}.log", 0));
    assert_eq!(fs::metadata(&segment).unwrap().len(), log.committed_end(0), "no bytes past the committed end");
    let mut outside = open_reader(dir.path(), 0, 0).unwrap();
    assert_eq!(outside.read(10, usize::MAX).unwrap().len(), 2);
    log.close().await;
}

#[tokio::test]
async fn a_damaged_sealed_segment_is_reported_once_and_reading_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = faulty(dir.path());
    for i in 0..30 {
        log.put(vec![rec("k", &value(i))]).await.unwrap();
    }
    // Flip a bit inside the third frame of the first (sealed) segment.
    let segment = dir.path().join("shard-0000").join(format!("{:020}.log", 0));
    let mut bytes = fs::read(&segment).unwrap();
    bytes[2 * 28 + 20] ^= 0x40;
    fs::write(&segment, &bytes).unwrap();
    let after_damage: Vec<_> = (7..30).map(value).collect();

    for (who, mut reader) in
        [("in process", log.reader(0, 0).unwrap()), ("another process", open_reader(dir.path(), 0, 0).unwrap())]
    {
        let first = reader.read(1000, usize::MAX).unwrap();
        let got: Vec<_> = first.iter().map(|r| String::from_utf8(r.data.clone()).unwrap()).collect();
        assert_eq!(got, [value(0), value(1)], "{who}: the records before the damage come first");
        let err = reader.read(1000, usize::MAX).unwrap_err().to_string();
        assert!(err.contains(&segment.display().to_string()) && err.contains("offset 56"), "{who}: {err}");
        assert!(err.contains("140 bytes") && err.contains("checksum mismatch"), "{who}: {err}");
        let rest: Vec<_> =
            reader.read(1000, usize::MAX).unwrap().into_iter().map(|r| String::from_utf8(r.data).unwrap()).collect();
        assert_eq!(rest, after_damage, "{who}: reading goes on at the next segment");
    }
    assert_eq!(log.log_telemetry().corrupt_bytes_skipped.get(), 140, "the in-process reader counted the loss");

    // The consumer runtime's cursor reads through it; the writer was never affected.
    log.put(vec![rec("k", "later")]).await.unwrap();
    let log = Arc::new(log);
    let source = LocalSource::new(log.clone());
    let info = crate::consumer::ShardSource::shards(&source).await.unwrap().remove(0);
    let mut cursor =
        crate::consumer::ShardSource::open(&source, &info, &crate::lease::Checkpoint::TrimHorizon).await.unwrap();
    let mut seen = Vec::new();
    while seen.last().is_none_or(|v| v != "later") {
        seen.extend(cursor.next().await.unwrap().records.into_iter().map(|r| String::from_utf8(r.data).unwrap()));
    }
    assert_eq!(seen.len(), 2 + after_damage.len() + 1);
    log.close().await;
}

#[tokio::test]
async fn damage_in_the_active_segment_below_the_committed_end_is_skipped_to_that_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), &small(1), ProducerTelemetry::default()).unwrap();
    for i in 0..5 {
        log.put(vec![rec("k", &value(i))]).await.unwrap();
    }
    let segment = dir.path().join("shard-0000").join(format!("{:020}.log", 0));
    let mut bytes = fs::read(&segment).unwrap();
    bytes[3 * 28 + 20] ^= 0x01;
    fs::write(&segment, &bytes).unwrap();
    let mut r = log.reader(0, 0).unwrap();
    assert_eq!(r.read(100, usize::MAX).unwrap().len(), 3);
    assert!(matches!(r.read(100, usize::MAX), Err(LogError::Corrupt { .. })));
    log.put(vec![rec("k", "after")]).await.unwrap();
    let after = r.read(100, usize::MAX).unwrap();
    assert_eq!(after.len(), 1, "the writer's later frames are read");
    assert_eq!(after[0].data, b"after");
    log.close().await;
}

#[tokio::test]
async fn new_directories_are_synced_into_their_parents() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data").join("stream");
    let shared = writer::Shared::default();
    let faults = shared.faults.clone();
    let log = LocalLog::open_with(&root, &small(2), ProducerTelemetry::default(), shared).unwrap();
    let synced = faults.synced_dirs();
    for parent in [dir.path().to_owned(), dir.path().join("data")] {
        assert!(synced.contains(&parent), "{} was not synced: {synced:?}", parent.display());
    }
    log.close().await;
    drop(log);

    // A log whose root exists (and whose meta.json needs no write) still syncs the root for its new shard dirs.
    let root = dir.path().join("existing");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("meta.json"), br#"{"format":1,"shards":2}"#).unwrap();
    let shared = writer::Shared::default();
    let faults = shared.faults.clone();
    let log = LocalLog::open_with(&root, &small(2), ProducerTelemetry::default(), shared).unwrap();
    let synced = faults.synced_dirs();
    assert!(synced.iter().filter(|d| **d == root).count() >= 2, "the root is synced for each shard dir: {synced:?}");
    log.close().await;
}
