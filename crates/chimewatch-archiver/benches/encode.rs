//! Benchmarks of the archiver's hot path: 20,000 meeting-event rows spooled and written as one file, Parquet (ZSTD)
//! and gzip NDJSON, against the baseline of writing the same rows' JSON lines uncompressed to a file.

use std::hint::black_box;
use std::io::Write;

use chimewatch_archiver::encode::write_entries;
use chimewatch_archiver::rows::{MeetingEventRow, Row, Source};
use chimewatch_archiver::spool::Spool;
use chimewatch_archiver::{Format, Table};
use chimewatch_model::{Ingest, MeetingEvent, MeetingEventRecord};
use chimewatch_stream::SequenceNumber;
use chimewatch_stream::consumer::Position;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const ROWS: u64 = 20_000;
const T0: i64 = 1_763_712_000_000;

fn row(i: u64) -> Row {
    let versions = ["3.31.0", "3.32.0"];
    let browsers = ["chrome", "firefox", "safari"];
    let attributes = serde_json::json!({
        "meetingId": format!("m-{}", i / 30), "attendeeId": format!("a-{i}"), "sdkName": "amazon-chime-sdk-js",
        "sdkVersion": versions[(i % 2) as usize], "browserName": browsers[(i % 3) as usize], "osName": "Mac OS",
        "timestampMs": T0 + (i as i64 * 7_919) % 3_600_000, "meetingStartDurationMs": 1_500 + i % 900,
        "signalingOpenDurationMs": 200 + i % 50,
    });
    let record = MeetingEventRecord {
        v: 1,
        received_at_ms: T0 + 3_600_000,
        ingest: Ingest::Batch,
        event: MeetingEvent {
            name: "meetingStartSucceeded".into(),
            attributes: attributes.as_object().cloned().unwrap_or_default(),
        },
        original: Default::default(),
        truncation: Default::default(),
        delivery: None,
    };
    let source = Source {
        shard_id: "shardId-000000000001".into(),
        sequence_number: (49_000_000_000 + i).to_string(),
        sub_sequence_number: 0,
        log_event_index: 0,
    };
    Row::Meeting(MeetingEventRow::new(&record.into(), source))
}

fn encode(c: &mut Criterion) {
    let rows: Vec<Row> = (0..ROWS).map(row).collect();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir.path().join("out");
    let mut g = c.benchmark_group("20k rows into one file");
    g.sample_size(20).throughput(Throughput::Elements(ROWS));
    g.bench_function("baseline: JSON lines, uncompressed", |b| {
        b.iter(|| {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&out).expect("create"));
            for r in &rows {
                serde_json::to_writer(&mut f, black_box(r)).expect("write");
                f.write_all(b"\n").expect("write");
            }
            f.into_inner().expect("flush").sync_all().expect("sync")
        })
    });
    for (name, format) in [("spool + Parquet (ZSTD)", Format::Parquet), ("spool + NDJSON (gzip)", Format::NdjsonGzip)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut spool = Spool::new(dir.path()).expect("spool");
                for (i, r) in rows.iter().enumerate() {
                    let p = Position::new(SequenceNumber::from(49_000_000_000 + i as u64), 0);
                    spool.append(r, p, T0).expect("append");
                }
                let through = Position::new(SequenceNumber::from(49_000_000_000 + ROWS), 0);
                let part = spool.take_through(&through).pop().expect("one partition");
                write_entries(&mut spool, &part.entries, Table::MeetingEvents, format, &out).expect("write")
            })
        });
    }
    g.finish();
    for format in [Format::Parquet, Format::NdjsonGzip] {
        let mut spool = Spool::new(dir.path()).expect("spool");
        for (i, r) in rows.iter().enumerate() {
            spool.append(r, Position::new(SequenceNumber::from(i as u64), 0), T0).expect("append");
        }
        let spooled = spool.bytes();
        let part = spool.take_through(&Position::new(SequenceNumber::from(ROWS), 0)).pop().expect("part");
        write_entries(&mut spool, &part.entries, Table::MeetingEvents, format, &out).expect("write");
        let size = std::fs::metadata(&out).expect("metadata").len();
        println!(
            "{format:?}: {size} bytes for {spooled} bytes of spooled rows ({:.3} of it)",
            size as f64 / spooled as f64
        );
    }
}

criterion_group!(benches, encode);
criterion_main!(benches);
