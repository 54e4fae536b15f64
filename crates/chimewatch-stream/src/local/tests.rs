//! Tests of the embedded log: durability, recovery, rolling, retention, locking and concurrent readers.

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
    let writer = writer::ShardWriter::open(dir.path(), small(1)).unwrap();
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
