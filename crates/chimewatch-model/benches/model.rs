//! Criterion benches of the model's hot paths, each against a baseline measured in the same run:
//! strict parse + normalize + validate vs a plain `serde_json` parse, record encode, the fast path to the same
//! records, a batch body parsed in one pass vs
//! split then parsed per element, and KPL aggregation vs a copy.

use std::hint::black_box;

use chimewatch_model::event::{Limits, normalize};
use chimewatch_model::json::{parse_strict, parse_strict_batch, split_batch};
use chimewatch_model::kpl::{self, Aggregator};
use chimewatch_model::transcode::transcode;
use chimewatch_model::{Ingest, Record};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const NOW: i64 = 1_795_300_000_000;

#[allow(clippy::disallowed_methods)] // Benchmarks read their fixtures; the code under test reads nothing.
fn fixture(rel: &str) -> String {
    std::fs::read_to_string(format!("{}/../../fixtures/{rel}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

/// The events of the real JS SDK blog capture: full attribute sets with long histories, as clients send them.
fn blog_events() -> Vec<String> {
    let capture: serde_json::Value = serde_json::from_str(&fixture("real-sdk-js/0004-blog.json")).expect("capture");
    capture["body"].as_array().expect("array").iter().map(|e| e.to_string()).collect()
}

fn normalize_bench(c: &mut Criterion) {
    let events = blog_events();
    let bytes: usize = events.iter().map(String::len).sum();
    let limits = Limits::default();
    let mut g = c.benchmark_group("event");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("baseline: serde_json::from_str::<Value>", |b| {
        b.iter(|| {
            for e in &events {
                black_box(serde_json::from_str::<serde_json::Value>(e).expect("json"));
            }
        })
    });
    g.bench_function("parse_strict + normalize + validate", |b| {
        b.iter(|| {
            for e in &events {
                black_box(normalize(parse_strict(e).expect("json"), &limits, NOW).expect("valid"));
            }
        })
    });
    g.bench_function("parse_strict + normalize + encode record", |b| {
        b.iter(|| {
            for e in &events {
                let n = normalize(parse_strict(e).expect("json"), &limits, NOW).expect("valid");
                black_box(Record::meeting_event(n, Ingest::Batch, NOW).encode());
            }
        })
    });
    g.bench_function("transcode (the fast path to the same records)", |b| {
        b.iter(|| {
            for e in &events {
                black_box(transcode(e, &limits, NOW, 1 << 20).expect("plain"));
            }
        })
    });
    g.finish();

    let body = fixture("meeting-events/js-mixed-meetings.json");
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("split_batch (5 events)", |b| b.iter(|| black_box(split_batch(&body, 10_000).expect("array"))));
    g.bench_function("baseline: split_batch, then parse_strict each", |b| {
        b.iter(|| {
            for raw in split_batch(&body, 10_000).expect("array") {
                black_box(parse_strict(raw.get()).expect("json"));
            }
        })
    });
    g.bench_function("parse_strict_batch (one pass)", |b| {
        b.iter(|| black_box(parse_strict_batch(&body, 10_000).expect("parses")))
    });
    g.finish();
}

fn kpl_bench(c: &mut Criterion) {
    // 100 records of ~300 bytes: a typical aggregate (the KPL aggregates up to 50 KiB).
    let records: Vec<(String, Vec<u8>)> =
        (0..100).map(|i| (format!("meeting-{}/attendee-{i}", i % 7), vec![b'x'; 300])).collect();
    let bytes: usize = records.iter().map(|(k, d)| k.len() + d.len()).sum();
    let mut g = c.benchmark_group("kpl");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("baseline: copy into one buffer", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(bytes);
            for (k, d) in &records {
                out.extend_from_slice(k.as_bytes());
                out.extend_from_slice(d);
            }
            black_box(out)
        })
    });
    g.bench_function("aggregate (protobuf + md5)", |b| {
        b.iter(|| {
            let mut agg = Aggregator::new();
            for (k, d) in &records {
                agg.push(k, d.clone());
            }
            black_box(agg.finish())
        })
    });
    let mut agg = Aggregator::new();
    for (k, d) in &records {
        agg.push(k, d.clone());
    }
    let aggregate = agg.finish();
    g.bench_function("deaggregate", |b| b.iter(|| black_box(kpl::deaggregate(&aggregate, "pk").expect("valid"))));
    g.finish();
}

criterion_group!(benches, normalize_bench, kpl_bench);
criterion_main!(benches);
