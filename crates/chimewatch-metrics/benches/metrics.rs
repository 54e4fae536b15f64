//! Benchmarks of the aggregator's hot paths: recording into a distribution (against a plain Vec push as the
//! baseline) and turning one event into facts and windows (against encoding its log line).

use chimewatch_metrics::{Aggregator, AggregatorConfig, Catalogue, CatalogueConfig, Distribution};
use chimewatch_model::MeetingEvent;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn record(c: &mut Criterion) {
    let values: Vec<u64> = (0..10_000u64).map(|i| (i * 7919) % 60_000).collect();
    let mut g = c.benchmark_group("record 10k values");
    g.bench_function("baseline: Vec push", |b| {
        b.iter(|| {
            let mut v = Vec::with_capacity(values.len());
            values.iter().for_each(|x| v.push(black_box(*x)));
            v
        })
    });
    g.bench_function("distribution", |b| {
        b.iter(|| {
            let mut d = Distribution::new();
            values.iter().for_each(|x| d.record(black_box(*x)));
            d
        })
    });
    g.finish();
}

fn aggregate(c: &mut Criterion) {
    let attributes = serde_json::json!({
        "meetingId": "m-1", "attendeeId": "a-1", "sdkName": "amazon-chime-sdk-js", "osName": "Mac OS",
        "timestampMs": 1_763_712_000_000i64, "meetingStartDurationMs": 1834, "signalingOpenDurationMs": 211,
        "iceGatheringDurationMs": 95,
    });
    let event = MeetingEvent {
        name: "meetingStartSucceeded".into(),
        attributes: attributes.as_object().cloned().unwrap_or_default(),
    };
    let mut g = c.benchmark_group("one meetingStartSucceeded");
    // The baseline: encoding the event as the log line the aggregator writes for it anyway.
    g.bench_function("baseline: its log line (serde_json)", |b| {
        b.iter(|| serde_json::json!({ "name": event.name, "attributes": black_box(&event).attributes }).to_string())
    });
    g.bench_function("catalogue + aggregator", |b| {
        let mut catalogue = Catalogue::new(CatalogueConfig::default());
        let mut agg = Aggregator::new(AggregatorConfig::default());
        b.iter(|| {
            let facts = catalogue.facts(black_box(&event), true);
            agg.add("s1", 1_763_712_000_000, facts, 1_763_712_000_000)
        })
    });
    g.finish();
}

criterion_group!(benches, record, aggregate);
criterion_main!(benches);
