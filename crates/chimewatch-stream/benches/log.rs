//! Criterion benches of the embedded log: appending a batch through group commit (write + fdatasync), against a
//! baseline of the same bytes written and synced with plain `std::fs` in the same run.

use std::hint::black_box;
use std::io::Write;

use chimewatch_stream::local::{LocalLog, LocalLogConfig};
use chimewatch_stream::{OutRecord, Producer, ProducerTelemetry};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn records(n: usize) -> Vec<OutRecord> {
    (0..n)
        .map(|i| OutRecord { partition_key: format!("meeting-{}/attendee-{i}", i % 7), data: vec![b'x'; 600] })
        .collect()
}

fn append_bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let batch = records(100);
    let bytes: usize = batch.iter().map(OutRecord::cost).sum();
    let mut g = c.benchmark_group("embedded log, 100 records of 600 B");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.sample_size(30);

    let dir = tempfile::tempdir().expect("tempdir");
    let mut file = std::fs::File::create(dir.path().join("baseline")).expect("file");
    let payload: Vec<u8> = batch.iter().flat_map(|r| r.data.iter().copied()).collect();
    g.bench_function("baseline: write_all + sync_data", |b| {
        b.iter(|| {
            file.write_all(&payload).expect("write");
            file.sync_data().expect("sync");
        })
    });

    let log_dir = tempfile::tempdir().expect("tempdir");
    let config = LocalLogConfig { shards: 1, ..LocalLogConfig::default() };
    let log = LocalLog::open(log_dir.path(), &config, ProducerTelemetry::default()).expect("log");
    g.bench_function("LocalLog::put (frames, crc32c, group commit)", |b| {
        b.iter(|| rt.block_on(log.put(black_box(batch.clone()))).expect("put"))
    });
    g.finish();
    rt.block_on(log.close());
}

criterion_group!(benches, append_bench);
criterion_main!(benches);
